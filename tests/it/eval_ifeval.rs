//! IFEval checkers against lm-eval's own verdicts.
//!
//! `tests/fixtures/ifeval/cases.jsonl` was made once by `tools/lm-eval/ifeval_golden.py`
//! with lm-eval 0.4.9's checkers (nltk 3.10.4, langdetect 1.0.9): every registered
//! instruction id, responses that pass, fail, and pass only loosely. Each case must give
//! lm-eval's strict and loose verdict, instruction by instruction, except the documented
//! differences in `KNOWN_DIFFERENCES` (evals/README.md, "## IFEval"), which must still
//! differ so the list cannot go stale.
use lamarck::eval::ifeval::{self, registry::INSTRUCTIONS, Scores, Verdicts};
use serde_json::{json, Value};

const CASES: &str = include_str!("../fixtures/ifeval/cases.jsonl");

/// `(case key, why lamarck's verdict differs)`.
const KNOWN_DIFFERENCES: &[(i64, &str)] = &[
    (
        378,
        "\"Dear [name],\": langdetect says en, whatlang another language (three words)",
    ),
    (
        444,
        "loose variant \"1. numbered item\": langdetect en, whatlang not",
    ),
    (
        450,
        "trailing \"1. numbered item\" line tips whatlang off English",
    ),
    (456, "\"1. numbered item\": langdetect en, whatlang not"),
    (462, "\"*italic*\\nSECTION 2\": langdetect it, whatlang en"),
];

fn cases() -> Vec<Value> {
    CASES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array()
        .expect("list of verdicts")
        .iter()
        .map(|b| b.as_bool().expect("bool"))
        .collect()
}

#[test]
fn verdicts_match_lm_eval_case_by_case() {
    let cases = cases();
    assert!(cases.len() >= 300, "fixture has {} cases", cases.len());
    let (mut agree, mut total) = (0, 0);
    let mut unexplained = Vec::new();
    let mut differing_keys = Vec::new();
    for c in &cases {
        let response = c["response"].as_str().expect("response");
        let got = ifeval::check(c, response).unwrap_or_else(|e| panic!("{e}"));
        let want = Verdicts {
            strict: bools(&c["strict"]),
            loose: bools(&c["loose"]),
        };
        let ids = c["instruction_id_list"].as_array().expect("ids");
        total += 2 * ids.len();
        for i in 0..ids.len() {
            agree += usize::from(got.strict[i] == want.strict[i]);
            agree += usize::from(got.loose[i] == want.loose[i]);
        }
        if got != want {
            let key = c["key"].as_i64().expect("key");
            differing_keys.push(key);
            if !KNOWN_DIFFERENCES.iter().any(|(k, _)| *k == key) {
                unexplained.push(format!(
                    "case {key} {ids:?}: lamarck {got:?}, lm-eval {want:?}, response {response:?}",
                    ids = ids
                ));
            }
        }
    }
    eprintln!(
        "IFEval parity: {agree}/{total} verdicts agree over {} cases",
        cases.len()
    );
    assert!(
        unexplained.is_empty(),
        "unexplained differences:\n{}",
        unexplained.join("\n")
    );
    for (key, why) in KNOWN_DIFFERENCES {
        assert!(
            differing_keys.contains(key),
            "case {key} now agrees; drop it from KNOWN_DIFFERENCES ({why})"
        );
    }
}

#[test]
fn fixture_covers_every_registered_id_passing_and_failing() {
    let cases = cases();
    for (id, _) in INSTRUCTIONS {
        let mut seen = [false; 2];
        for c in &cases {
            let ids = c["instruction_id_list"].as_array().expect("ids");
            for (i, x) in ids.iter().enumerate() {
                if x == id {
                    seen[usize::from(bools(&c["strict"])[i])] = true;
                }
            }
        }
        assert_eq!(
            seen,
            [true, true],
            "{id}: fixture lacks a failing or a passing case"
        );
    }
    assert_eq!(INSTRUCTIONS.len(), 25);
    let loose_only = cases
        .iter()
        .flat_map(|c| bools(&c["strict"]).into_iter().zip(bools(&c["loose"])))
        .filter(|&(s, l)| !s && l)
        .count();
    assert!(loose_only >= 10, "only {loose_only} loose-only passes");
}

#[test]
fn metrics_aggregate_as_lm_eval() {
    // Two documents: [followed, not followed] and [followed].
    let v = [
        Verdicts {
            strict: vec![true, false],
            loose: vec![true, true],
        },
        Verdicts {
            strict: vec![true],
            loose: vec![true],
        },
    ];
    let s = Scores::from_verdicts(&v).expect("scores");
    assert_eq!(s.prompt_level_strict_acc, 0.5);
    assert_eq!(s.inst_level_strict_acc, 2.0 / 3.0);
    assert_eq!(s.prompt_level_loose_acc, 1.0);
    assert_eq!(s.inst_level_loose_acc, 1.0);
    assert_eq!(ifeval::agg_inst_level_acc(&[]), None);

    let doc = json!({"key": 7, "prompt": "p", "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
                     "kwargs": [{}, null]});
    let r = ifeval::process_results(&doc, "Intro, line\n<<T>> body").expect("results");
    assert_eq!(r["prompt_level_strict_acc"], json!(false));
    assert_eq!(r["inst_level_strict_acc"], json!([false, true]));
    assert_eq!(r["prompt_level_loose_acc"], json!(true));
    assert_eq!(r["inst_level_loose_acc"], json!([true, true]));
}

#[test]
fn unusable_documents_are_clear_errors() {
    let doc = |id: &str, kw: Value| json!({"key": 3, "prompt": "p", "instruction_id_list": [id], "kwargs": [kw]});
    let err = |d: Value| {
        ifeval::check(&d, "text")
            .expect_err("should fail")
            .to_string()
    };
    let e = err(doc("keywords:nonsense", json!({})));
    assert!(
        e.contains("key 3") && e.contains("keywords:nonsense") && e.contains("keywords:existence"),
        "{e}"
    );
    let e = err(doc(
        "length_constraints:number_words",
        json!({"num_words": 0, "relation": "at least"}),
    ));
    assert!(e.contains("num_words") && e.contains("random"), "{e}");
    let e = err(doc(
        "length_constraints:number_words",
        json!({"num_words": 5, "relation": "at most"}),
    ));
    assert!(e.contains("at most") && e.contains("less than"), "{e}");
    let e = err(
        json!({"key": 4, "prompt": "p", "instruction_id_list": ["punctuation:no_comma"], "kwargs": []}),
    );
    assert!(e.contains("one object"), "{e}");
}
