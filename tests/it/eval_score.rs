//! lm-eval's scoring rules on hand-worked examples: filters (Python `re.findall`
//! semantics), exact match options, acc_norm's length rule, list literals, shipped tasks.
use std::path::Path;

use candle_core::{DType, Device};
use lamarck::eval::run::{evaluate_task, EvalOptions};
use lamarck::eval::score::{
    acc_norm_prediction, apply_filters, cut_at_stops, exact_match, mean_stderr,
};
use lamarck::eval::task::template::parse_list_literal;
use lamarck::eval::task::{ExactMatchOptions, FilterStep, TaskSpec};
use lamarck::eval::{Qwen2Lm, TextTokenizer};

fn regex(pattern: &str, group_select: i64) -> Vec<FilterStep> {
    vec![
        FilterStep::Regex {
            pattern: pattern.into(),
            group_select,
            fallback: "[invalid]".into(),
        },
        FilterStep::TakeFirst,
    ]
}

#[test]
fn gsm8k_filters_follow_python_findall() {
    let text = "She pays $1,200 then 30. #### 1,230\n\nQuestion: next";
    // One group: the group's text.
    assert_eq!(
        apply_filters(&regex(r"#### (\-?[0-9\.\,]+)", 0), text).unwrap(),
        "1,230"
    );
    // Two groups: per match the first non-empty group; group_select -1 = last match.
    let flexible = regex(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1);
    assert_eq!(apply_filters(&flexible, text).unwrap(), "1,230");
    assert_eq!(
        apply_filters(&regex(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", 0), text).unwrap(),
        "$1,200"
    );
    assert_eq!(
        apply_filters(&regex(r"#### (\d+)", 0), "no answer").unwrap(),
        "[invalid]"
    );
}

#[test]
fn exact_match_options_as_hf_evaluate() {
    let opts = ExactMatchOptions {
        ignore_case: true,
        ignore_punctuation: false,
        regexes_to_ignore: vec![
            ",".into(),
            r"\$".into(),
            "(?s).*#### ".into(),
            r"\.$".into(),
        ],
    };
    assert_eq!(
        exact_match(&opts, "$1,230.", "Reasoning...\n#### 1230").unwrap(),
        1.0
    );
    assert_eq!(exact_match(&opts, "1231", "#### 1230").unwrap(), 0.0);
    let plain = ExactMatchOptions::default();
    assert_eq!(exact_match(&plain, "Paris", "paris").unwrap(), 0.0);
    let punct = ExactMatchOptions {
        ignore_punctuation: true,
        ..Default::default()
    };
    assert_eq!(exact_match(&punct, "Paris!", "Paris").unwrap(), 1.0);
}

#[test]
fn acc_norm_divides_by_characters_and_ties_go_first() {
    // -6/2 = -3 beats -8/2... by hand: normalized = [-3.0, -2.0, -2.0] → index 1 (first tie).
    let choices = vec!["ab".to_string(), "abcd".to_string(), "abcdef".to_string()];
    assert_eq!(acc_norm_prediction(&[-6.0, -8.0, -12.0], &choices), 1);
    // Characters, not bytes: "é" is one character (two bytes).
    let accented = vec!["éé".to_string(), "abc".to_string()];
    assert_eq!(acc_norm_prediction(&[-2.0, -3.3], &accented), 0);
    let (mean, se) = mean_stderr(&[1.0, 0.0, 1.0, 1.0]);
    assert_eq!(mean, 0.75);
    assert!((se.unwrap() - (0.25f64 / 4.0).sqrt()).abs() < 1e-12);
    assert_eq!(mean_stderr(&[1.0]).1, None);
}

#[test]
fn stop_strings_and_list_literals() {
    let stops = vec!["Question:".to_string(), "\n\n".to_string()];
    assert_eq!(cut_at_stops(" 42\n\nQuestion: x", &stops), " 42");
    assert_eq!(
        parse_list_literal("['a', \"b c\", 'it\\'s']").unwrap(),
        vec!["a", "b c", "it's"]
    );
    assert_eq!(parse_list_literal("[1, 2]").unwrap(), vec!["1", "2"]);
    assert!(parse_list_literal("not a list").is_none());
}

#[test]
fn shipped_task_files_parse_and_examples_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["evals/examples", "evals/tinybenchmarks"] {
        for entry in std::fs::read_dir(root.join(sub)).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                TaskSpec::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }
    let dir = root.join("tests/fixtures/eval/tiny-tied");
    let mut lm = Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap();
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    for (file, metric) in [
        ("capitals.yaml", "acc_norm"),
        ("arithmetic.yaml", "exact_match,strict-match"),
    ] {
        let task = TaskSpec::from_file(&root.join("evals/examples").join(file)).unwrap();
        let opts = EvalOptions {
            limit: Some(3),
            ..Default::default()
        };
        let (result, items) = evaluate_task(&mut lm, &tok, &task, &opts).unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            result.metrics.contains_key(metric),
            "{file}: {:?}",
            result.metrics.keys()
        );
    }
}

#[test]
fn chat_template_wraps_the_prompt_in_one_user_turn() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval/tiny-tied");
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    let got = lamarck::eval::prompt::apply_chat_template(&tok, "Question: 2+2?\nAnswer:").unwrap();
    assert_eq!(
        got,
        "<|im_start|>user\nQuestion: 2+2?\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
    );
}
