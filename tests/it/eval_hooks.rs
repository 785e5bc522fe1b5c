//! lamarck's built-in lm-eval hooks against lm-eval's own output, and lm-eval's task files
//! unedited. Goldens in `tests/fixtures/lm-eval/` were made once by
//! `tools/lm-eval/make_hook_goldens.py` calling lm-eval 0.4.13's (and tinyBenchmarks')
//! functions on fixture documents, log-likelihoods, responses and item scores.
use std::path::{Path, PathBuf};

use lamarck::eval::score::{apply_filters, exact_match};
use lamarck::eval::task::hooks::gpirt::{estimate, IrtFile};
use lamarck::eval::task::hooks::{lookup, Hook, Results, Score};
use lamarck::eval::task::{OutputType, TaskSpec};
use serde_json::{json, Value};

use crate::support::cmd::run_in;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn golden(name: &str) -> Value {
    let p = root().join("tests/fixtures/lm-eval").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn lm_eval_task(rel: &str) -> PathBuf {
    root().join("evals/lm-eval").join(rel)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn jsonl(docs: &[Value]) -> String {
    docs.iter().map(|d| format!("{d}\n")).collect()
}

#[test]
fn hellaswag_process_docs_matches_lm_eval() {
    let g = golden("hellaswag_process_docs.json");
    let Hook::ProcessDocs(f) = lookup("utils_hellaswag.process_docs", "process_docs").unwrap()
    else {
        panic!("not a process_docs hook")
    };
    let docs = g["docs"].as_array().unwrap();
    let want = g["processed"].as_array().unwrap();
    assert_eq!(docs.len(), want.len());
    for (doc, want) in docs.iter().zip(want) {
        assert_eq!(&f(doc).unwrap(), want, "document {doc}");
    }
}

#[test]
fn winogrande_hooks_match_lm_eval() {
    let g = golden("winogrande.json");
    let (Hook::DocToText(text), Hook::DocToTarget(target), Hook::DocToChoice(choice)) = (
        lookup("utils_winogrande.doc_to_text", "doc_to_text").unwrap(),
        lookup("utils_winogrande.doc_to_target", "doc_to_target").unwrap(),
        lookup("utils_winogrande.doc_to_choice", "doc_to_choice").unwrap(),
    ) else {
        panic!("wrong hook kinds")
    };
    for case in g["cases"].as_array().unwrap() {
        let doc = &case["doc"];
        assert_eq!(text(doc).unwrap(), case["text"], "{doc}");
        assert_eq!(target(doc).unwrap(), case["target"], "{doc}");
        assert_eq!(json!(choice(doc).unwrap()), case["choices"], "{doc}");
    }
}

#[test]
fn truthfulqa_mc2_matches_lm_eval() {
    let g = golden("truthfulqa_mc2.json");
    let Hook::ProcessResults(f) =
        lookup("utils_truthfulqa.process_results_mc2", "process_results").unwrap()
    else {
        panic!("not a process_results hook")
    };
    for case in g["cases"].as_array().unwrap() {
        let lls: Vec<f64> = serde_json::from_value(case["loglikelihoods"].clone()).unwrap();
        let got = f(&case["doc"], Results::Loglikelihoods(&lls)).unwrap();
        let want = case["acc"].as_f64().unwrap();
        let Score::One(acc) = got["acc"] else {
            panic!("acc is one number")
        };
        assert!(
            (acc - want).abs() <= 1e-12 * want.abs().max(1e-300),
            "{acc} vs lm-eval {want}"
        );
    }
}

#[test]
fn gsm8k_filters_and_exact_match_match_lm_eval_on_the_unedited_task_file() {
    let g = golden("gsm8k_filters.json");
    let task = TaskSpec::from_file(&lm_eval_task("tinyBenchmarks/tinyGSM8k.yaml")).unwrap();
    assert_eq!(task.num_fewshot, 5);
    assert!(matches!(task.output_type, OutputType::GenerateUntil { .. }));
    let names: Vec<&str> = task.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["strict-match", "flexible-extract"]);
    let target = g["target"].as_str().unwrap();
    let opts = &task.metrics[0].exact_match;
    for case in g["cases"].as_array().unwrap() {
        let response = case["response"].as_str().unwrap();
        for f in &task.filters {
            let filtered = apply_filters(&f.steps, response).unwrap();
            assert_eq!(
                filtered, case["filtered"][&f.name],
                "{} on {response:?}",
                f.name
            );
            let em = exact_match(opts, &filtered, target).unwrap();
            assert_eq!(
                em, case["exact_match"][&f.name],
                "{} on {response:?}",
                f.name
            );
        }
    }
}

#[test]
fn gpirt_matches_tiny_benchmarks() {
    let g = golden("gpirt.json");
    let path = root()
        .join("tests/fixtures/lm-eval")
        .join(g["irt_file"].as_str().unwrap());
    let file = IrtFile::from_json(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut worst: f64 = 0.0;
    for case in g["cases"].as_array().unwrap() {
        let bench = case["bench"].as_str().unwrap();
        let y: Vec<f64> = serde_json::from_value(case["y"].clone()).unwrap();
        let got = estimate(&file, bench, &y).unwrap();
        for (i, key) in ["irt", "pirt", "gpirt"].iter().enumerate() {
            let want = case[key].as_f64().unwrap();
            worst = worst.max((got[i] - want).abs());
            // irt is exact arithmetic; p-IRT/gp-IRT go through θ, which scipy's BFGS
            // finds only to its gradient tolerance (1e-5).
            let tol = if i == 0 { 1e-12 } else { 1e-4 };
            assert!(
                (got[i] - want).abs() < tol,
                "{bench} {key}: {} vs tinyBenchmarks {want}",
                got[i]
            );
        }
    }
    eprintln!("gp-IRT: largest difference from tinyBenchmarks {worst:.2e}");
}

#[test]
fn the_unedited_tiny_benchmarks_files_parse_with_their_hooks() {
    for (file, task, agg) in [
        ("tinyArc.yaml", "tinyArc", "agg_functions.agg_gpirt_arc"),
        (
            "tinyGSM8k.yaml",
            "tinyGSM8k",
            "agg_functions.agg_gpirt_gsm8k",
        ),
        (
            "tinyHellaswag.yaml",
            "tinyHellaswag",
            "agg_functions.agg_gpirt_hellaswag",
        ),
        ("tinyMMLU.yaml", "tinyMMLU", "agg_functions.agg_gpirt_mmlu"),
        (
            "tinyTruthfulQA_mc2.yaml",
            "tinyTruthfulQA",
            "agg_functions.agg_gpirt_truthfulqa",
        ),
        (
            "tinyWinogrande.yaml",
            "tinyWinogrande",
            "agg_functions.agg_gpirt_winogrande",
        ),
    ] {
        let spec = TaskSpec::from_file(&lm_eval_task(&format!("tinyBenchmarks/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(spec.name, task);
        assert_eq!(spec.metrics[0].aggregation.as_deref(), Some(agg), "{file}");
    }
    let hs = TaskSpec::from_file(&lm_eval_task("tinyBenchmarks/tinyHellaswag.yaml")).unwrap();
    assert_eq!(
        hs.process_docs.as_deref(),
        Some("utils_hellaswag.process_docs")
    );
    // mc2 includes mc1: its keys win (task, choices, process_results, metric), mc1's rest.
    let mc2 = TaskSpec::from_file(&lm_eval_task("tinyBenchmarks/tinyTruthfulQA_mc2.yaml")).unwrap();
    let mc1 = TaskSpec::from_file(&lm_eval_task("tinyBenchmarks/tinyTruthfulQA_mc1.yaml")).unwrap();
    assert_eq!(mc2.dataset_path, "tinyBenchmarks/tinyTruthfulQA");
    assert_eq!(mc2.validation_split.as_deref(), Some("validation"));
    assert_eq!(mc2.doc_to_text, mc1.doc_to_text);
    assert_eq!(mc2.doc_to_choice, Some("{{mc2_targets.choices}}".into()));
    assert_eq!(mc1.doc_to_choice, Some("{{mc1_targets.choices}}".into()));
    assert_eq!(
        mc2.process_results.as_deref(),
        Some("utils_truthfulqa.process_results_mc2")
    );
    assert_eq!(mc1.process_results, None);
    assert_eq!(mc1.metrics[0].aggregation, None);
}

#[test]
fn include_overrides_and_refuses_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("base");
    std::fs::create_dir(&sub).unwrap();
    write(
        &sub,
        "base.yaml",
        "task: base\ndataset_path: d.jsonl\ntest_split: test\ndoc_to_text: \"{{q}}\"\n\
         doc_to_target: a\nnum_fewshot: 3\nnum_fewshot: 0\n",
    );
    let top = write(
        dir.path(),
        "top.yaml",
        "include: base/base.yaml\ntask: top\n",
    );
    let spec = TaskSpec::from_file(&top).unwrap();
    assert_eq!(spec.name, "top");
    assert_eq!(spec.dataset_path, "d.jsonl");
    // A top-level key written twice keeps the last value, as PyYAML does.
    assert_eq!(spec.num_fewshot, 0);
    write(dir.path(), "a.yaml", "include: b.yaml\ntask: a\n");
    let b = write(dir.path(), "b.yaml", "include: a.yaml\ntask: b\n");
    let e = TaskSpec::from_file(&b).unwrap_err().to_string();
    assert!(e.contains("`include`") && e.contains("cycle"), "{e}");
    let c = write(dir.path(), "c.yaml", "include: missing.yaml\ntask: c\n");
    let e = TaskSpec::from_file(&c).unwrap_err().to_string();
    assert!(e.contains("c.yaml") && e.contains("missing.yaml"), "{e}");
}

#[test]
fn an_unknown_function_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = "task: t\ndataset_path: d.jsonl\ntest_split: test\noutput_type: multiple_choice\n\
                doc_to_choice: c\ndoc_to_target: a\n";
    for (extra, key, name) in [
        (
            "doc_to_text: !function utils.doc_to_text\n",
            "doc_to_text",
            "utils.doc_to_text",
        ),
        (
            "doc_to_text: q\nprocess_results: !function utils.mystery\n",
            "process_results",
            "utils.mystery",
        ),
        (
            "doc_to_text: q\nmetric_list:\n  - metric: acc\n    aggregation: !function agg.nope\n",
            "metric_list[0].aggregation",
            "agg.nope",
        ),
        (
            // Registered, but for another key.
            "doc_to_text: !function utils_winogrande.doc_to_choice\n",
            "doc_to_text",
            "utils_winogrande.doc_to_choice",
        ),
    ] {
        let p = write(dir.path(), "t.yaml", &format!("{base}{extra}"));
        let e = TaskSpec::from_file(&p).unwrap_err().to_string();
        assert!(
            e.contains(&format!("`{key}` is unsupported"))
                && e.contains(&format!("!function {name}`")),
            "{e}"
        );
    }
}

/// A winogrande task over local documents that includes lm-eval's file unedited.
fn winogrande_task(dir: &Path) -> PathBuf {
    let docs = golden("winogrande.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["doc"].clone())
        .collect::<Vec<_>>();
    write(dir, "train.jsonl", &jsonl(&docs));
    write(dir, "validation.jsonl", &jsonl(&docs[..4]));
    write(
        dir,
        "wino.yaml",
        &format!(
            "include: {}\ndataset_path: json\n\
             dataset_kwargs: {{data_files: {{train: train.jsonl, validation: validation.jsonl}}}}\n",
            lm_eval_task("tinyBenchmarks/tinyWinogrande.yaml").display()
        ),
    )
}

fn items(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn winogrande_scores_contexts_and_notes_the_missing_irt_once() {
    let dir = tempfile::tempdir().unwrap();
    let task = winogrande_task(dir.path());
    let model = root().join("tests/fixtures/eval/tiny-tied");
    let m = model.to_str().unwrap();
    let t = task.to_str().unwrap();
    let run = run_in(
        &[
            "eval",
            m,
            "--tasks",
            t,
            "--num-fewshot",
            "2",
            "--items",
            "i.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("gp-IRT"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", run.stderr);
    assert!(
        notes[0].contains("plain mean of 4 items") && notes[0].contains("tinyWinogrande"),
        "{}",
        notes[0]
    );
    let recs = items(&dir.path().join("i.jsonl"));
    assert_eq!(recs.len(), 4);
    let cases = golden("winogrande.json");
    for (rec, case) in recs.iter().zip(cases["cases"].as_array().unwrap()) {
        // The choices are the contexts (sentence up to the blank + option)...
        assert_eq!(rec["choices"], case["choices"]);
        // ...the gold is doc_to_text's index, and the prompt is only the shared few-shot
        // prefix: 2 examples, each its gold context + " " + its continuation.
        let gold = case["text"].as_u64().unwrap() as usize;
        assert_eq!(rec["target"], case["choices"][gold]);
        let prompt = rec["prompt"].as_str().unwrap();
        let shots: Vec<&str> = prompt.strip_suffix("\n\n").unwrap().split("\n\n").collect();
        assert_eq!(shots.len(), 2, "{prompt:?}");
        for shot in shots {
            let known = cases["cases"].as_array().unwrap().iter().any(|c| {
                let g = c["text"].as_u64().unwrap() as usize;
                shot == format!(
                    "{} {}",
                    c["choices"][g].as_str().unwrap(),
                    c["target"].as_str().unwrap()
                )
            });
            assert!(
                known,
                "few-shot example {shot:?} is not a gold context + continuation"
            );
        }
        // acc_norm divides by the contexts' lengths, as lm-eval does for multiple input.
        let ll: Vec<f64> = serde_json::from_value(rec["loglikelihoods"].clone()).unwrap();
        let norm: Vec<f64> = ll
            .iter()
            .zip(case["choices"].as_array().unwrap())
            .map(|(l, c)| l / c.as_str().unwrap().chars().count() as f64)
            .collect();
        let pred = if norm[1] > norm[0] { 1 } else { 0 };
        assert_eq!(
            rec["metrics"]["acc_norm"],
            json!(if pred == gold { 1.0 } else { 0.0 })
        );
    }
    // --num-fewshot 0 leaves an empty prefix.
    let run = run_in(
        &[
            "eval",
            m,
            "--tasks",
            t,
            "--num-fewshot",
            "0",
            "--items",
            "j.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for rec in items(&dir.path().join("j.jsonl")) {
        assert_eq!(rec["prompt"], "");
    }
}

#[test]
fn truthfulqa_mc2_end_to_end_is_the_mean_of_the_hook_over_item_loglikelihoods() {
    let dir = tempfile::tempdir().unwrap();
    let docs: Vec<Value> = (0..3)
        .map(|i| {
            json!({
                "question": format!("Is {i} a number?"),
                "mc1_targets": {"choices": ["Yes.", "No."], "labels": [1, 0]},
                "mc2_targets": {"choices": ["Yes.", "It is.", "No."], "labels": [1, 1, 0]},
            })
        })
        .collect();
    write(dir.path(), "v.jsonl", &jsonl(&docs));
    let task = write(
        dir.path(),
        "tqa.yaml",
        &format!(
            "include: {}\ndataset_path: json\ndataset_kwargs: {{data_files: {{validation: v.jsonl}}}}\n",
            lm_eval_task("tinyBenchmarks/tinyTruthfulQA_mc2.yaml").display()
        ),
    );
    let model = root().join("tests/fixtures/eval/tiny-tied");
    let run = run_in(
        &[
            "eval",
            model.to_str().unwrap(),
            "--tasks",
            task.to_str().unwrap(),
            "--items",
            "i.jsonl",
            "--out",
            "r.json",
        ],
        dir.path(),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let recs = items(&dir.path().join("i.jsonl"));
    let mut want = 0.0;
    for rec in &recs {
        let ll: Vec<f64> = serde_json::from_value(rec["loglikelihoods"].clone()).unwrap();
        let p: Vec<f64> = ll.iter().map(|l| l.exp()).collect();
        let acc = (p[0] + p[1]) / p.iter().sum::<f64>();
        assert!((rec["metrics"]["acc"].as_f64().unwrap() - acc).abs() < 1e-12);
        assert!(rec["prompt"]
            .as_str()
            .unwrap()
            .starts_with("Q: What is human life expectancy"));
        want += acc / recs.len() as f64;
    }
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    let got = r["results"][0]["metrics"]["acc"]["value"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn hellaswag_end_to_end_prompts_are_the_processed_queries() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("hellaswag_process_docs.json");
    let docs = g["docs"].as_array().unwrap();
    write(dir.path(), "train.jsonl", &jsonl(docs));
    write(dir.path(), "validation.jsonl", &jsonl(docs));
    let task = write(
        dir.path(),
        "hs.yaml",
        &format!(
            "include: {}\ndataset_path: json\n\
             dataset_kwargs: {{data_files: {{train: train.jsonl, validation: validation.jsonl}}}}\n",
            lm_eval_task("tinyBenchmarks/tinyHellaswag.yaml").display()
        ),
    );
    let model = root().join("tests/fixtures/eval/tiny-tied");
    let run = run_in(
        &[
            "eval",
            model.to_str().unwrap(),
            "--tasks",
            task.to_str().unwrap(),
            "--num-fewshot",
            "0",
            "--items",
            "i.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for (rec, want) in items(&dir.path().join("i.jsonl"))
        .iter()
        .zip(g["processed"].as_array().unwrap())
    {
        assert_eq!(rec["prompt"], want["query"]);
        assert_eq!(rec["choices"], want["choices"]);
        assert_eq!(
            rec["target"],
            want["choices"][want["gold"].as_u64().unwrap() as usize]
        );
    }
}

#[test]
fn gpirt_is_used_when_the_irt_file_is_beside_the_task() {
    // 100 items of a synthetic tiny task, IRT file copied beside the task: the aggregate is
    // tinyBenchmarks' estimate for those item scores, with no note.
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/lm-eval/tinyBenchmarks_synthetic.json");
    std::fs::copy(&src, dir.path().join("tinyBenchmarks.json")).unwrap();
    let docs: Vec<Value> = (0..100)
        .map(|i| json!({"sentence": format!("Item {i} is _ good."), "option1": "very", "option2": "not", "answer": if i % 3 == 0 {"2"} else {"1"}}))
        .collect();
    write(dir.path(), "train.jsonl", &jsonl(&docs[..5]));
    write(dir.path(), "validation.jsonl", &jsonl(&docs));
    let task = write(
        dir.path(),
        "wino.yaml",
        &format!(
            "include: {}\ndataset_path: json\n\
             dataset_kwargs: {{data_files: {{train: train.jsonl, validation: validation.jsonl}}}}\n",
            lm_eval_task("tinyBenchmarks/tinyWinogrande.yaml").display()
        ),
    );
    let model = root().join("tests/fixtures/eval/tiny-tied");
    let run = run_in(
        &[
            "eval",
            model.to_str().unwrap(),
            "--tasks",
            task.to_str().unwrap(),
            "--num-fewshot",
            "0",
            "--items",
            "i.jsonl",
            "--out",
            "r.json",
        ],
        dir.path(),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("gp-IRT"), "{}", run.stderr);
    let y: Vec<f64> = items(&dir.path().join("i.jsonl"))
        .iter()
        .map(|r| r["metrics"]["acc_norm"].as_f64().unwrap())
        .collect();
    let file = IrtFile::from_json(&src, &std::fs::read_to_string(&src).unwrap()).unwrap();
    let want = estimate(&file, "winogrande", &y).unwrap()[2];
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r.json")).unwrap()).unwrap();
    let m = &r["results"][0]["metrics"]["acc_norm"];
    assert_eq!(m["value"].as_f64().unwrap(), want);
    assert_eq!(m["stderr"], Value::Null);
    let mean = y.iter().sum::<f64>() / 100.0;
    assert_ne!(want, mean);
}
