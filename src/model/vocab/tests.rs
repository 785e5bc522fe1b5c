use std::path::Path;

use super::strip::strip_json;
use super::*;
use crate::model::{DType, ModelDir};

fn vocab(tokens: &[&str]) -> Vocabulary {
    Vocabulary::from_pairs(
        "test",
        tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i)),
    )
}

fn model<'a>(name: &'a str, v: &'a Vocabulary, size: usize) -> VocabModel<'a> {
    VocabModel {
        name,
        vocab: Some(v),
        vocab_size: Some(size),
    }
}

#[test]
fn base_source_drops_padding_rows_and_strips_ids_beyond_vocab_size() {
    // Qwen-style: 3 tokens, 5 rows → 3 rows, nothing to strip in the files
    let b = vocab(&["a", "b", "c"]);
    let out = build_output(&[model("base", &b, 5)], 0, OutputSource::Base, None).unwrap();
    assert_eq!(out.tokens, ["a", "b", "c"]);
    assert_eq!((out.rows, out.strip_at), (3, None));
    assert_eq!(out.permutations, vec![vec![Some(0), Some(1), Some(2)]]);
    // 4 tokens, 3 rows → `d` (id 3) is stripped and the files must be rewritten
    let b = vocab(&["a", "b", "c", "d"]);
    let out = build_output(&[model("base", &b, 3)], 0, OutputSource::Base, None).unwrap();
    assert_eq!(out.tokens, ["a", "b", "c"]);
    assert_eq!((out.rows, out.strip_at), (3, Some(3)));
}

#[test]
fn model_source_is_used_as_is_and_permutations_go_by_token_string() {
    let b = vocab(&["a", "b", "c", "d"]);
    let m = vocab(&["d", "x", "a"]);
    let src = vocab(&["x", "a", "b", "d", "y"]);
    let models = [model("base", &b, 4), model("m", &m, 3)];
    let out = build_output(&models, 0, OutputSource::Tokenizer(&src), Some(4)).unwrap();
    assert_eq!(out.tokens, ["x", "a", "b", "d", "y"]);
    assert_eq!((out.rows, out.strip_at), (8, None));
    assert_eq!(
        out.permutations,
        vec![
            vec![None, Some(0), Some(1), Some(3), None],
            vec![Some(1), Some(2), None, Some(0), None],
        ]
    );
    // a token at an id beyond the model's vocab_size counts as absent
    let models = [model("base", &b, 4), model("m", &m, 2)];
    let out = build_output(&models, 0, OutputSource::Tokenizer(&src), None).unwrap();
    assert_eq!(
        out.permutations[1],
        vec![Some(1), None, None, Some(0), None]
    );
}

#[test]
fn a_model_without_tokenizer_is_assumed_to_share_the_base_one() {
    let b = vocab(&["a", "b"]);
    let models = [
        model("base", &b, 2),
        VocabModel {
            name: "m",
            vocab: None,
            vocab_size: Some(2),
        },
    ];
    let out = build_output(&models, 0, OutputSource::Base, None).unwrap();
    assert_eq!(out.permutations[1], vec![Some(0), Some(1)]);
    // …but the base itself must have one
    let err = build_output(&models, 1, OutputSource::Base, None).unwrap_err();
    assert!(
        err.to_string().contains("model `m` has no tokenizer.json"),
        "{err}"
    );
}

#[test]
fn output_vocabulary_with_gaps_or_zero_padding_is_refused() {
    let gap = Vocabulary::from_pairs("tok.json", [("a", 0), ("b", 2)]);
    let b = vocab(&["a", "b"]);
    let models = [model("base", &b, 2)];
    let err = build_output(&models, 0, OutputSource::Tokenizer(&gap), None).unwrap_err();
    assert!(
        err.to_string().contains("tok.json: token \"b\" has id 2"),
        "{err}"
    );
    assert!(build_output(&models, 0, OutputSource::Base, Some(0)).is_err());
}

/// Three models, 2 columns; every fill rule once (values worked out by hand).
fn fill_case(base: Option<usize>, pad: Option<usize>) -> Vec<Vec<f32>> {
    let out = vocab(&["x", "y", "z", "w", "v"]);
    let m0 = vocab(&["x", "y", "z"]);
    let m1 = vocab(&["y", "w", "x"]);
    let m2 = vocab(&["w", "y"]);
    let models = [
        model("m0", &m0, 3),
        model("m1", &m1, 3),
        model("m2", &m2, 2),
    ];
    let ov = build_output(&models, 0, OutputSource::Tokenizer(&out), pad).unwrap();
    let rows = vec![
        Rows {
            model: 0,
            name: "m0",
            data: vec![1., 1., 2., 2., 3., 3.],
        },
        Rows {
            model: 1,
            name: "m1",
            data: vec![10., 10., 20., 20., 30., 30.],
        },
        Rows {
            model: 2,
            name: "m2",
            data: vec![100., 100., 200., 200.],
        },
    ];
    relayout(&ov, rows, base, 2, DType::F32, "embed").unwrap()
}

#[test]
fn fill_rules_follow_mergekit() {
    let r = fill_case(Some(0), None);
    // x: m2 lacks it, the base (m0) has it → base row; y: everyone has it; z: only m0 → its
    // row; w: m1 and m2, not the base → their mean; v: nobody → zeros
    assert_eq!(r[0], [1., 1., 2., 2., 3., 3., 60., 60., 0., 0.]);
    assert_eq!(r[1], [30., 30., 10., 10., 3., 3., 20., 20., 0., 0.]);
    assert_eq!(r[2], [1., 1., 200., 200., 3., 3., 100., 100., 0., 0.]);
    // without a base, x (in m0 and m1) is their mean for m2
    let r = fill_case(None, None);
    assert_eq!(&r[2][..2], [15.5, 15.5]);
    assert_eq!(r[0], [1., 1., 2., 2., 3., 3., 60., 60., 0., 0.]);
}

#[test]
fn padding_rows_are_the_mean_of_the_real_rows() {
    let r = fill_case(Some(0), Some(4));
    assert_eq!(r[0].len(), 8 * 2);
    // m0's real rows: 1, 2, 3, 60, 0 → mean 13.2
    for x in &r[0][10..] {
        assert!((x - 13.2).abs() < 1e-6, "{x}");
    }
}

#[test]
fn a_tokenizer_that_does_not_fit_the_weights_is_an_error() {
    let v = vocab(&["a", "b", "c"]);
    let ov = build_output(&[model("m", &v, 3)], 0, OutputSource::Base, None).unwrap();
    // 2 rows of 2, but the tokenizer has ids up to 2
    let rows = vec![Rows {
        model: 0,
        name: "m",
        data: vec![0f32; 4],
    }];
    let err = relayout(&ov, rows, None, 2, DType::F32, "lm_head.weight").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`lm_head.weight` of model `m` has 2 rows"),
        "{msg}"
    );
    assert!(msg.contains("token \"c\" at id 2"), "{msg}");
}

#[test]
fn stripping_removes_added_tokens_vocab_entries_and_their_merges() {
    let mut tok = serde_json::json!({
        "added_tokens": [
            {"id": 4, "content": "<s>", "special": true},
            {"id": 6, "content": "<extra>", "special": true}
        ],
        "model": {
            "type": "BPE",
            "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 5},
            "merges": [["a", "b"], "b c"]
        }
    });
    assert_eq!(strip_json(&mut tok, 5).unwrap(), 2);
    assert_eq!(tok["added_tokens"].as_array().unwrap().len(), 1);
    assert_eq!(
        tok["model"]["vocab"],
        serde_json::json!({"a": 0, "b": 1, "c": 2, "ab": 3})
    );
    // `b c` produced the stripped `bc`: dropped too (mergekit 0.1.5 keeps it and fails)
    assert_eq!(tok["model"]["merges"], serde_json::json!([["a", "b"]]));
    let mut unigram = serde_json::json!({"model": {"type": "Unigram", "vocab": []}});
    assert!(strip_json(&mut unigram, 5)
        .unwrap_err()
        .contains("`Unigram`"));
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vocab")
        .join(format!("{name}-f32"))
}

#[test]
fn reading_a_tokenizer_includes_added_tokens() {
    let v = Vocabulary::read(&fixture("alt2")).unwrap().unwrap();
    assert_eq!(v.len(), 14);
    assert_eq!(v.ids["<|im_start|>"], 12);
    assert_eq!(v.ids["gh"], 10);
    assert!(Vocabulary::read(Path::new("/nonexistent"))
        .unwrap()
        .is_none());
}

#[test]
fn strip_tokenizer_files_matches_mergekit_output_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("wide").join(f), dir.path().join(f)).unwrap();
    }
    strip_tokenizer_files(dir.path(), 13).unwrap();
    let ours = Vocabulary::read(dir.path()).unwrap().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/vocab/strip_ties_f32");
    let text = std::fs::read_to_string(golden.join("expected-tokenizer.json")).unwrap();
    let theirs = text
        .parse::<tokenizers::Tokenizer>()
        .unwrap()
        .get_vocab(true);
    let theirs: std::collections::HashMap<String, usize> =
        theirs.into_iter().map(|(t, i)| (t, i as usize)).collect();
    assert_eq!(ours.ids, theirs);
    assert_eq!(ours.len(), 13);
}

/// mergekit 0.1.5's `PermutedVocabulary` output for the fixture model sets
/// (tests/golden/vocab/relayout.*, tools/golden/vocab.py).
#[test]
fn relayout_matches_mergekit_golden() {
    let gold = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/vocab");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gold.join("relayout.json")).unwrap())
            .unwrap();
    let bytes = std::fs::read(gold.join("relayout.safetensors")).unwrap();
    let expected = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for (set, spec) in index.as_object().unwrap() {
        let names: Vec<&str> = spec["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        let base = spec["base"].as_str();
        let source = spec["tokenizer_source"].as_str().unwrap();
        let pad = spec["pad_to_multiple_of"].as_u64().map(|p| p as usize);
        let dirs: Vec<ModelDir> = names
            .iter()
            .map(|n| ModelDir::open(&fixture(n)).unwrap())
            .collect();
        let vocabs: Vec<Vocabulary> = dirs
            .iter()
            .map(|d| Vocabulary::read(&d.path).unwrap().unwrap())
            .collect();
        let models: Vec<VocabModel> = names
            .iter()
            .zip(&dirs)
            .zip(&vocabs)
            .map(|((n, d), v)| VocabModel {
                name: n,
                vocab: Some(v),
                vocab_size: d.config.vocab_size(),
            })
            .collect();
        let base_pos = base.map(|b| names.iter().position(|n| *n == b).unwrap());
        let src_vocab;
        let out_source = if source == "base" {
            OutputSource::Base
        } else {
            src_vocab = Vocabulary::read(&fixture(source)).unwrap().unwrap();
            OutputSource::Tokenizer(&src_vocab)
        };
        let ov = build_output(&models, base_pos.unwrap_or(0), out_source, pad).unwrap();
        let golden_vocab = spec["vocab"].as_object().unwrap();
        assert_eq!(ov.tokens.len(), golden_vocab.len(), "{set}");
        for (t, id) in golden_vocab {
            assert_eq!(ov.tokens[id.as_u64().unwrap() as usize], *t, "{set}");
        }
        for tensor in ["model.embed_tokens.weight", "lm_head.weight"] {
            let data: Vec<Vec<f32>> = dirs.iter().map(|d| d.read_f32(tensor).unwrap()).collect();
            let rows: Vec<Rows> = names
                .iter()
                .zip(data)
                .enumerate()
                .map(|(i, (n, data))| Rows {
                    model: i,
                    name: n,
                    data,
                })
                .collect();
            let got = relayout(&ov, rows, base_pos, 8, DType::F32, tensor).unwrap();
            for (n, g) in names.iter().zip(&got) {
                let key = format!("{set}/{n}/{tensor}");
                let view = expected.tensor(&key).unwrap();
                assert_eq!(view.shape(), [ov.rows, 8], "{key}");
                let want: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                for (i, (a, b)) in g.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                        "{key}[{i}]: {a} vs {b}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "{checked}");
}

#[test]
fn a_matrix_reused_in_place_gets_fills_over_rows_no_token_reads() {
    // m0 keeps its ids (reused in place); its row 1 (`q`, not in the output) becomes `y`
    let out = vocab(&["x", "y", "z"]);
    let m0 = vocab(&["x", "q", "z"]);
    let m1 = vocab(&["y"]);
    let models = [model("m0", &m0, 3), model("m1", &m1, 1)];
    let ov = build_output(&models, 0, OutputSource::Tokenizer(&out), None).unwrap();
    let rows = vec![
        Rows {
            model: 0,
            name: "m0",
            data: vec![1., 2., 3.],
        },
        Rows {
            model: 1,
            name: "m1",
            data: vec![7.],
        },
    ];
    let r = relayout(&ov, rows, None, 1, DType::F32, "embed").unwrap();
    assert_eq!(r, vec![vec![1., 7., 3.], vec![1., 7., 3.]]);
}
