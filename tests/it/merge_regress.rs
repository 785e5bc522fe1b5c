//! Regressions found by the differential tester (tools/difftest): `lamarck merge` against
//! mergekit 0.1.5 goldens in tests/golden/regress/<case>/ (fixtures and goldens written by
//! `HF_HUB_OFFLINE=1 /work/pyenv/bin/python tools/difftest/regress.py`).
use std::path::{Path, PathBuf};

use crate::support::cmd::lamarck;
use crate::support::tensors::read_tensors_typed;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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
    let got = read_tensors_typed(out);
    let want = read_tensors_typed(&Path::new("tests/golden/regress").join(case));
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

fn config_key(dir: &Path, file: &str, key: &str) -> serde_json::Value {
    json(&dir.join(file))[key].clone()
}

#[test]
fn tokenizer_source_base_drops_padding_rows_and_sets_vocab_size() {
    let tmp = tempfile::tempdir().unwrap();
    let out = merge("tokenizer_base_linear", tmp.path());
    assert_matches_golden("tokenizer_base_linear", &out);
    let gold = Path::new("tests/golden/regress/tokenizer_base_linear");
    assert_eq!(
        config_key(&out, "config.json", "vocab_size"),
        config_key(gold, "expected-config.json", "vocab_size")
    );
    assert_eq!(config_key(&out, "config.json", "vocab_size"), 13);
}

#[test]
fn tokenizer_source_model_moves_rows_by_token() {
    let tmp = tempfile::tempdir().unwrap();
    for case in ["tokenizer_model_ties", "tokenizer_model_slerp"] {
        let out = merge(case, tmp.path());
        assert_matches_golden(case, &out);
        let gold = Path::new("tests/golden/regress").join(case);
        assert_eq!(
            config_key(&out, "config.json", "vocab_size"),
            config_key(&gold, "expected-config.json", "vocab_size"),
            "{case}"
        );
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

#[test]
fn output_without_lm_head_is_marked_tied() {
    let tmp = tempfile::tempdir().unwrap();
    let out = merge("tied_last_slice", tmp.path());
    assert_matches_golden("tied_last_slice", &out);
    // mergekit copies the donor's `false` (transformers then initialises a random lm_head);
    // lamarck marks the head as tied to the embedding it wrote
    assert_eq!(config_key(&out, "config.json", "tie_word_embeddings"), true);
}

#[test]
fn error_messages_do_not_repeat_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("r.yaml");
    let fix = "tests/golden/regress/fixtures";
    std::fs::write(
        &recipe,
        format!("merge_method: slerp\nbase_model: {fix}/base\nmodels:\n  - model: {fix}/base\n  - model: {fix}/ft-a\n  - model: {fix}/ft-shifted\nparameters: {{t: 0.5}}\n"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let (ok, _, err) = lamarck(&[
        "merge",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert_eq!(err.matches("exactly 1 other model").count(), 1, "{err}");
    assert!(!out.exists());
}
