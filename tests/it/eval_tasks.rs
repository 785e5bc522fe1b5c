//! Task files end to end on the tiny fixture: multiple choice against transformers'
//! goldens with acc / acc_norm computed here by hand, lm-eval Jinja (tinyArc), generation
//! with stop strings and regex filters, the CLI outputs, and clear errors for bad input.
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use lamarck::eval::run::{evaluate_task, EvalOptions};
use lamarck::eval::task::TaskSpec;
use lamarck::eval::{Qwen2Lm, TextTokenizer};
use serde_json::{json, Value};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn golden() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("golden.json")).unwrap()).unwrap()
}

fn model(name: &str) -> (Qwen2Lm, TextTokenizer) {
    let dir = fixtures().join(name);
    (
        Qwen2Lm::from_dir(&dir, DType::F32, &Device::Cpu).unwrap(),
        TextTokenizer::from_dir(&dir).unwrap(),
    )
}

fn first_max(xs: &[f64]) -> usize {
    (0..xs.len()).fold(0, |b, i| if xs[i] > xs[b] { i } else { b })
}

#[test]
fn multiple_choice_matches_transformers_and_hand_computed_metrics() {
    let g = golden();
    let gold_lls: Vec<Vec<f64>> =
        serde_json::from_value(g["models"]["tiny-tied"]["mc"].clone()).unwrap();
    let task = TaskSpec::from_file(&fixtures().join("tasks/mc.yaml")).unwrap();
    let (mut lm, tok) = model("tiny-tied");
    let (result, items) = evaluate_task(
        &mut lm,
        &tok,
        &task,
        &EvalOptions {
            batch_size: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let docs: Vec<Value> = std::fs::read_to_string(fixtures().join("tasks/mc/test.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (mut acc, mut acc_norm) = (0.0, 0.0);
    for ((item, want), doc) in items.iter().zip(&gold_lls).zip(&docs) {
        let got = item.loglikelihoods.as_ref().unwrap();
        for (a, b) in got.iter().zip(want) {
            assert!(
                (a - b).abs() < 1e-4,
                "choice log-likelihood {a} vs transformers {b}"
            );
        }
        // By hand: lm-eval divides by len(choice) (characters, no leading delimiter).
        let choices: Vec<String> = serde_json::from_value(doc["choices"].clone()).unwrap();
        let normed: Vec<f64> = want
            .iter()
            .zip(&choices)
            .map(|(l, c)| l / c.len() as f64)
            .collect();
        let gold = doc["answer"].as_u64().unwrap() as usize;
        acc += f64::from(u8::from(first_max(want) == gold)) / 4.0;
        acc_norm += f64::from(u8::from(first_max(&normed) == gold)) / 4.0;
        assert_eq!(item.target, choices[gold]);
        assert_eq!(
            item.prompt,
            format!("Question: {}\nAnswer:", doc["question"].as_str().unwrap())
        );
    }
    // The fixture is built so that the two metrics disagree (0.25 vs 0.5).
    assert_eq!((acc, acc_norm), (0.25, 0.5));
    assert_eq!(result.metrics["acc"].value, acc);
    assert_eq!(result.metrics["acc_norm"].value, acc_norm);
    assert_eq!(result.items, 4);
    // stderr = sample std / sqrt(n): for acc = [1,0,0,0], sqrt(0.25 / 4)
    assert!((result.metrics["acc"].stderr.unwrap() - 0.25).abs() < 1e-12);
}

const TINY_ARC: &str = r#"
task: tinyArc
dataset_path: tinyBenchmarks/tinyAI2_arc
dataset_name: ARC-Challenge
output_type: multiple_choice
training_split: train
validation_split: validation
test_split: test
num_fewshot: 2
doc_to_text: "Question: {{question}}\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
should_decontaminate: true
doc_to_decontamination_query: "Question: {{question}}\nAnswer:"
metric_list:
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.0
"#;

fn arc_doc(i: usize) -> Value {
    let labels = ["A", "B", "C", "D"];
    json!({
        "id": format!("q{i}"),
        "question": format!("Which number is {i}?"),
        "choices": {"text": [format!("{i}"), format!("{}", i + 1), "none", "all"], "label": labels},
        "answerKey": labels[i % 4],
    })
}

#[test]
fn tinybenchmarks_style_arc_file_with_lm_eval_jinja() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tinyBenchmarks/tinyAI2_arc/ARC-Challenge");
    std::fs::create_dir_all(&data).unwrap();
    let lines =
        |r: std::ops::Range<usize>| r.map(|i| arc_doc(i).to_string() + "\n").collect::<String>();
    std::fs::write(data.join("test.jsonl"), lines(0..100)).unwrap();
    std::fs::write(data.join("train.jsonl"), lines(100..110)).unwrap();
    let file = tmp.path().join("tinyArc.yaml");
    std::fs::write(&file, TINY_ARC).unwrap();
    let task = TaskSpec::from_file(&file).unwrap();
    let (mut lm, tok) = model("tiny-tied");
    let (result, items) = evaluate_task(
        &mut lm,
        &tok,
        &task,
        &EvalOptions {
            batch_size: 16,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(result.items, 100);
    assert_eq!(result.metric_order, vec!["acc_norm".to_string()]);
    for (i, item) in items.iter().enumerate() {
        let doc = arc_doc(i);
        let gold = ["A", "B", "C", "D"]
            .iter()
            .position(|l| *l == doc["answerKey"])
            .unwrap();
        assert_eq!(item.target, doc["choices"]["text"][gold].as_str().unwrap());
        assert_eq!(item.choices.as_ref().unwrap().len(), 4);
        // Two shots from the train split, each "question + delimiter + gold text", then the doc.
        assert_eq!(
            item.prompt.matches("Question: ").count(),
            3,
            "{}",
            item.prompt
        );
        assert!(item
            .prompt
            .ends_with(&format!("Question: Which number is {i}?\nAnswer:")));
        let ll = item.loglikelihoods.as_ref().unwrap();
        let normed: Vec<f64> = ll
            .iter()
            .zip(item.choices.as_ref().unwrap())
            .map(|(l, c)| l / c.len() as f64)
            .collect();
        assert_eq!(item.correct, first_max(&normed) == gold);
    }
    let want = items.iter().filter(|i| i.correct).count() as f64 / 100.0;
    assert!((result.metrics["acc_norm"].value - want).abs() < 1e-12);
}

#[test]
fn generation_stops_filters_and_exact_match() {
    let g = golden();
    let gen = &g["models"]["tiny-sharded"]["generations"][1];
    let prompt = gen["prompt"].as_str().unwrap();
    let text = gen["generated_text"].as_str().unwrap();
    // Stop at the first "?" of transformers' own greedy continuation.
    let cut = &text[..text.find('?').expect("golden text has a '?'")];
    let tmp = tempfile::tempdir().unwrap();
    let docs = [
        json!({"p": prompt, "a": cut}),
        json!({"p": prompt, "a": "something else"}),
    ];
    let body: String = docs.iter().map(|d| d.to_string() + "\n").collect();
    std::fs::write(tmp.path().join("gen.jsonl"), body).unwrap();
    let file = tmp.path().join("gen.yaml");
    std::fs::write(
        &file,
        r#"
task: gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: gen.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{p}}"
doc_to_target: a
generation_kwargs:
  until: ["?"]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
filter_list:
  - name: whole
    filter:
      - function: take_first
  - name: word
    filter:
      - function: regex
        regex_pattern: "([a-z]+)"
      - function: take_first
"#,
    )
    .unwrap();
    let task = TaskSpec::from_file(&file).unwrap();
    let (mut lm, tok) = model("tiny-sharded");
    let (result, items) = evaluate_task(&mut lm, &tok, &task, &EvalOptions::default()).unwrap();
    assert_eq!(items[0].generated.as_deref(), Some(cut));
    assert_eq!(items[0].metrics["exact_match,whole"], 1.0);
    assert!(items[0].correct);
    assert_eq!(items[1].metrics["exact_match,whole"], 0.0);
    // The regex keeps the first lowercase word: not the whole target.
    let word: String = cut
        .chars()
        .skip_while(|c| !c.is_ascii_lowercase())
        .take_while(|c| c.is_ascii_lowercase())
        .collect();
    assert_eq!(
        items[0].metrics["exact_match,word"],
        f64::from(u8::from(word == cut))
    );
    assert_eq!(result.metrics["exact_match,whole"].value, 0.5);
}

fn task_error(yaml: &str, files: &[(&str, &str)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(tmp.path().join(name), body).unwrap();
    }
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, yaml).unwrap();
    let task = match TaskSpec::from_file(&file) {
        Err(e) => return e.to_string(),
        Ok(t) => t,
    };
    let (mut lm, tok) = model("tiny-tied");
    match evaluate_task(&mut lm, &tok, &task, &EvalOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("task was accepted:\n{yaml}"),
    }
}

const GOOD: &str = "task: t\ndataset_path: d.jsonl\ntest_split: test\noutput_type: multiple_choice\ndoc_to_text: \"{{q}}\"\ndoc_to_choice: c\ndoc_to_target: a\n";
const DOC: &str = "{\"q\": \"x\", \"c\": [\"a\", \"b\"], \"a\": 0}\n";

#[test]
fn the_good_task_runs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("d.jsonl"), DOC).unwrap();
    std::fs::write(tmp.path().join("t.yaml"), GOOD).unwrap();
    let task = TaskSpec::from_file(&tmp.path().join("t.yaml")).unwrap();
    let (mut lm, tok) = model("tiny-tied");
    assert!(evaluate_task(&mut lm, &tok, &task, &EvalOptions::default()).is_ok());
}

#[test]
fn malformed_task_files_get_clear_errors() {
    let e = task_error("task: [unclosed", &[]);
    assert!(
        e.contains("bad.yaml") && e.contains("not valid YAML"),
        "{e}"
    );
    let e = task_error(&format!("{GOOD}num_shots: 3\n"), &[("d.jsonl", DOC)]);
    assert!(
        e.contains("`num_shots`") && e.contains("unknown key"),
        "{e}"
    );
    let e = task_error(
        &GOOD.replace(
            "doc_to_text: \"{{q}}\"",
            "doc_to_text: !function utils.doc_to_text",
        ),
        &[],
    );
    assert!(
        e.contains("`doc_to_text` is unsupported") && e.contains("!function"),
        "{e}"
    );
    let e = task_error(
        &format!("{GOOD}process_docs: !function utils.process_docs\n"),
        &[],
    );
    assert!(e.contains("`process_docs` is unsupported"), "{e}");
    let e = task_error(&format!("{GOOD}metric_list:\n  - metric: bleu\n"), &[]);
    assert!(
        e.contains("metric_list[0].metric") && e.contains("bleu"),
        "{e}"
    );
    let e = task_error(
        &GOOD.replace("multiple_choice", "loglikelihood_rolling"),
        &[],
    );
    assert!(e.contains("`output_type`"), "{e}");
}

#[test]
fn missing_data_file_names_the_path() {
    let e = task_error(GOOD, &[]);
    assert!(e.contains("d.jsonl") && e.contains("task `t`"), "{e}");
    let e = task_error(
        &GOOD.replace(
            "dataset_path: d.jsonl",
            "dataset_path: json\ndataset_kwargs:\n  data_files:\n    train: d.jsonl",
        ),
        &[("d.jsonl", DOC)],
    );
    assert!(
        e.contains("split `test` is not in dataset_kwargs.data_files"),
        "{e}"
    );
    let e = task_error(GOOD, &[("d.jsonl", "{not json\n")]);
    assert!(e.contains("d.jsonl") && e.contains("line 1"), "{e}");
}

#[test]
fn template_field_missing_in_data_is_an_error() {
    let e = task_error(&GOOD.replace("{{q}}", "{{question}}"), &[("d.jsonl", DOC)]);
    assert!(
        e.contains("doc_to_text") && e.contains("document 0") && e.contains("fields: q, c, a"),
        "{e}"
    );
    let e = task_error(
        &GOOD.replace("doc_to_target: a", "doc_to_target: \"{{answer}}\""),
        &[("d.jsonl", DOC)],
    );
    assert!(
        e.contains("doc_to_target") && e.contains("{{answer}}"),
        "{e}"
    );
}

#[test]
fn cli_writes_table_json_and_items() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.json");
    let items = tmp.path().join("i.jsonl");
    let res = std::process::Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .arg("eval")
        .arg(fixtures().join("tiny-tied"))
        .arg("--tasks")
        .arg(fixtures().join("tasks"))
        .args(["--batch-size", "2", "--out"])
        .arg(&out)
        .arg("--items")
        .arg(&items)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        stdout.contains("fixture_mc") && stdout.contains("acc_norm") && stdout.contains("0.5000"),
        "{stdout}"
    );
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["results"][0]["metrics"]["acc"]["value"], 0.25);
    let lines: Vec<Value> = std::fs::read_to_string(&items)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for key in [
        "task",
        "doc_id",
        "prompt",
        "target",
        "correct",
        "loglikelihoods",
    ] {
        assert!(lines[0].get(key).is_some(), "{key} missing in {}", lines[0]);
    }
}
