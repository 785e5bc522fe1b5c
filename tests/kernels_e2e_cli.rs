//! `lamarck merge` on every end-to-end golden recipe (`tests/golden/e2e/`), compared tensor
//! by tensor with mergekit 0.1.5's output: f32 |a−b| ≤ 1e-6 + 1e-5·|b|, bf16 ≥ 99.9% of each
//! tensor's elements within 2 ulps. Covers the whole pipeline: recipe parsing, gradients,
//! filters, slices, layer renumbering, multi-document stages, kernels and writing.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use safetensors::SafeTensors;

type Tensors = BTreeMap<String, Vec<f32>>;

fn read_file(path: &Path, into: &mut Tensors) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
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
            other => panic!("{name}: unexpected dtype {other:?}"),
        };
        into.insert(name, data);
    }
}

/// Every tensor of a model folder (single file or shards).
fn read_dir(dir: &Path) -> Tensors {
    let mut t = Tensors::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            read_file(&path, &mut t);
        }
    }
    t
}

fn bf16_ulps(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let bits = half::bf16::from_f32(x).to_bits() as i32;
        if bits & 0x8000 != 0 {
            -(bits & 0x7fff)
        } else {
            bits
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// Mismatch descriptions for one case (empty when it matches).
fn check(case: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/golden/e2e").join(case);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let res = Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .current_dir(root)
        .args(["merge", "--threads", "2"])
        .arg(dir.join("recipe.yaml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    if !res.status.success() {
        return vec![format!(
            "{case}: lamarck merge failed:\n{}",
            String::from_utf8_lossy(&res.stderr)
        )];
    }
    let ours = read_dir(&out);
    let mut want = Tensors::new();
    read_file(&dir.join("expected.safetensors"), &mut want);
    let bf16 = case.ends_with("bf16");
    let mut problems = Vec::new();
    // Qwen2, 4 layers × 12 tensors + embed, norm, lm_head.
    assert_eq!(
        want.len(),
        51,
        "{case}: golden holds {} tensors",
        want.len()
    );
    for name in want.keys().filter(|k| !ours.contains_key(*k)) {
        problems.push(format!("{case}: {name} missing from lamarck's output"));
    }
    for name in ours.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("{case}: {name} not in mergekit's output"));
    }
    for (name, w) in &want {
        let Some(o) = ours.get(name) else { continue };
        if o.len() != w.len() {
            problems.push(format!(
                "{case}: {name} has {} elements, mergekit {}",
                o.len(),
                w.len()
            ));
            continue;
        }
        let bad: Vec<usize> = (0..w.len())
            .filter(|&i| {
                if bf16 {
                    bf16_ulps(o[i], w[i]) > 2
                } else {
                    (o[i] - w[i]).abs() > 1e-6 + 1e-5 * w[i].abs()
                }
            })
            .collect();
        let allowed = if bf16 { w.len() / 1000 } else { 0 };
        if bad.len() > allowed {
            let i = bad[0];
            problems.push(format!(
                "{case}: {name}: {}/{} elements off (first [{i}]: lamarck {} vs mergekit {})",
                bad.len(),
                w.len(),
                o[i],
                w[i]
            ));
        }
    }
    problems
}

#[test]
fn lamarck_merge_matches_mergekit_on_every_e2e_recipe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/golden/e2e/cases.json")).unwrap(),
    )
    .unwrap();
    let mut problems = Vec::new();
    for case in cases["cases"].as_array().unwrap() {
        problems.extend(check(case.as_str().unwrap()));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
