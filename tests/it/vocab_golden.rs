//! `lamarck merge` with `tokenizer_source` against mergekit 0.1.5 (`tests/golden/vocab/`,
//! made by `tools/golden/vocab.py` on `tests/fixtures/vocab/`, whose tokenizers differ in
//! token order, token set and padding rows): every tensor (f32 |a−b| ≤ 1e-6 + 1e-5·|b|;
//! bf16 within 2 ulps), the embedding row count, `vocab_size` in config.json and the
//! written tokenizer's vocabulary (stripped for `strip_ties_f32`).
use std::collections::HashMap;
use std::path::Path;

use crate::support::cmd::merge_from_repo;
use crate::support::repo;
use crate::support::tensors::{bf16_ulps, read_file};

fn vocab_of(path: &Path) -> HashMap<String, u32> {
    tokenizers::Tokenizer::from_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .get_vocab(true)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Mismatch descriptions for one case (empty when it matches).
fn check(case: &str) -> Vec<String> {
    let dir = repo().join("tests/golden/vocab").join(case);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    if let Err(e) = merge_from_repo(&dir.join("recipe.yaml"), &["--threads", "2"], &out) {
        return vec![format!("{case}: {e}")];
    }
    let mut bad = Vec::new();
    let ours = read_file(&out.join("model.safetensors"));
    let want = read_file(&dir.join("expected.safetensors"));
    if ours.keys().ne(want.keys()) {
        bad.push(format!("{case}: tensor names differ"));
    }
    let bf16 = case.ends_with("bf16");
    for (name, (shape, w)) in &want {
        let Some((s, o)) = ours.get(name) else {
            continue;
        };
        if s != shape {
            bad.push(format!("{case}: {name}: shape {s:?}, mergekit {shape:?}"));
            continue;
        }
        for (i, (a, b)) in o.iter().zip(w).enumerate() {
            let ok = if bf16 {
                bf16_ulps(*a, *b) <= 2
            } else {
                (a - b).abs() <= 1e-6 + 1e-5 * b.abs()
            };
            if !ok {
                bad.push(format!("{case}: {name}[{i}]: {a} vs mergekit {b}"));
                break;
            }
        }
    }
    let (cfg, want_cfg) = (
        json(&out.join("config.json")),
        json(&dir.join("expected-config.json")),
    );
    if cfg["vocab_size"] != want_cfg["vocab_size"] {
        bad.push(format!(
            "{case}: vocab_size {} vs mergekit {}",
            cfg["vocab_size"], want_cfg["vocab_size"]
        ));
    }
    if vocab_of(&out.join("tokenizer.json")) != vocab_of(&dir.join("expected-tokenizer.json")) {
        bad.push(format!(
            "{case}: the written tokenizer's vocabulary differs"
        ));
    }
    bad
}

#[test]
fn tokenizer_source_merges_match_mergekit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let index = json(&root.join("tests/golden/vocab/cases.json"));
    let cases: Vec<&str> = index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(cases.len() >= 6, "{cases:?}");
    let bad: Vec<String> = cases.iter().flat_map(|c| check(c)).collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
