//! Regressions found by the differential tester (tools/difftest): `lamarck merge` against
//! mergekit 0.1.5 goldens in tests/golden/regress/<case>/ (fixtures and goldens written by
//! `HF_HUB_OFFLINE=1 /work/pyenv/bin/python tools/difftest/regress.py`).
mod merge_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use merge_support::lamarck;

struct Tensor {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn read(dir: &Path) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "safetensors") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for (name, v) in st.tensors() {
            let data = match v.dtype() {
                safetensors::Dtype::F32 => v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                safetensors::Dtype::BF16 => v
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                safetensors::Dtype::F16 => v
                    .data()
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                d => panic!("{name}: unexpected dtype {d:?}"),
            };
            out.insert(
                name,
                Tensor {
                    dtype: v.dtype(),
                    shape: v.shape().to_vec(),
                    data,
                },
            );
        }
    }
    out
}

/// Run the case's recipe; return the output folder (inside `tmp`).
fn merge(case: &str, tmp: &Path) -> PathBuf {
    let recipe = format!("tests/golden/regress/{case}/recipe.yaml");
    let out = tmp.join(case);
    let (ok, _, err) = lamarck(&["merge", &recipe, "--out", out.to_str().unwrap()]);
    assert!(ok, "{case}: lamarck merge failed:\n{err}");
    out
}

/// Every tensor equal to mergekit's (f32: |a−b| ≤ 1e-6 + 1e-5·|b|), same names, shapes, dtypes.
fn assert_matches_golden(case: &str, out: &Path) {
    let got = read(out);
    let want = read(&Path::new("tests/golden/regress").join(case));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{case}: tensor names"
    );
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(g.shape, w.shape, "{case}: {name} shape");
        assert_eq!(g.dtype, w.dtype, "{case}: {name} dtype");
        for (i, (a, b)) in g.data.iter().zip(&w.data).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                "{case}: {name}[{i}]: lamarck {a}, mergekit {b}"
            );
        }
    }
}

#[test]
fn mixed_input_dtypes_without_dtype_compute_and_write_float32() {
    let tmp = tempfile::tempdir().unwrap();
    for case in ["mixed_dtype_linear", "mixed_dtype_ties"] {
        let out = merge(case, tmp.path());
        assert_matches_golden(case, &out);
    }
}
