//! Task data from the Hugging Face hub cache, offline: a fake cache built here from Parquet
//! files this test writes (ARC's nested `choices: {text: [...], label: [...]}` column,
//! snapshots as symlinks to blobs, a dataset card with `configs:`, split names from file
//! names), scored through `lamarck eval --responses`, and the Lamarck-v0.3 search's
//! `--dry-run` reporting its tasks ready on that cache.
use std::path::Path;

use parquet::basic::Compression;
use serde_json::{json, Value};

use crate::support::cmd::run_in;
use crate::support::hub::{
    arc, arc_json, fake_cache, write_arc_parquet, write_flat_parquet, Arc4, Col,
};
use crate::support::merge::lamarck_v03_headers;
use crate::support::repo;

#[test]
fn nested_parquet_columns_read_as_datasets_gives_them() {
    let tmp = tempfile::tempdir().unwrap();
    let rows: Vec<Arc4> = (0..6).map(arc).collect();
    for (name, c) in [
        ("snappy", Compression::SNAPPY),
        ("zstd", Compression::ZSTD(Default::default())),
        ("gzip", Compression::GZIP(Default::default())),
        ("plain", Compression::UNCOMPRESSED),
    ] {
        let file = tmp.path().join(format!("{name}.parquet"));
        write_arc_parquet(&file, &rows, c);
        let got = lamarck::eval::task::data::read_docs(&file).unwrap();
        let want: Vec<Value> = rows.iter().map(arc_json).collect();
        assert_eq!(got, want, "{name}");
    }
    // ints stay ints, nulls are null, column order is kept
    let file = tmp.path().join("flat.parquet");
    write_flat_parquet(
        &file,
        &[
            Col::Str("q", vec!["x".into(), "y".into()]),
            Col::Int("answer", vec![Some(3), None]),
        ],
    );
    let got = lamarck::eval::task::data::read_docs(&file).unwrap();
    assert_eq!(
        got,
        [
            json!({"q": "x", "answer": 3}),
            json!({"q": "y", "answer": null})
        ]
    );
    assert_eq!(
        got[0].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["q", "answer"]
    );
    // not Parquet: the error names the file
    let bad = tmp.path().join("bad.parquet");
    std::fs::write(&bad, "PAR1 not really").unwrap();
    let e = lamarck::eval::task::data::read_docs(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.parquet") && e.contains("Parquet"), "{e}");
}

/// Write `tasks` (name → YAML) into `dir` and return their paths joined by commas.
fn task_files(dir: &Path, tasks: &[(&str, String)]) -> String {
    tasks
        .iter()
        .map(|(name, text)| {
            let p = dir.join(format!("{name}.yaml"));
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn hub_cache_parquet_scores_saved_responses() {
    let tmp = tempfile::tempdir().unwrap();
    fake_cache(&tmp.path().join(".hf/hub"));
    let arc_task = std::fs::read_to_string(repo().join("evals/lamarck-v0.3/tinyArc.yaml")).unwrap();
    let mmlu_task =
        std::fs::read_to_string(repo().join("evals/lamarck-v0.3/tinyMMLU.yaml")).unwrap();
    let gsm_task =
        std::fs::read_to_string(repo().join("evals/lamarck-v0.3/tinyGSM8k.yaml")).unwrap();
    let tasks = task_files(
        tmp.path(),
        &[
            ("tinyArc", arc_task),
            ("tinyMMLU", mmlu_task),
            ("tinyGSM8k", gsm_task),
        ],
    );
    // ARC test rows are arc(50..55): log-likelihoods that pick the gold choice for the
    // first three and choice 0 (wrong unless gold) for the others; the responses file
    // lists them out of order.
    let mut lines = Vec::new();
    let mut want_correct = 0;
    for (doc_id, i) in (50..55).enumerate().rev() {
        let a = arc(i);
        let gold = a.labels.iter().position(|l| *l == a.answer).unwrap();
        let pick = if doc_id < 3 { gold } else { 0 };
        want_correct += usize::from(pick == gold);
        let ll: Vec<f64> = (0..a.texts.len())
            .map(|k| if k == pick { -1.0 } else { -5.0 })
            .collect();
        lines.push(json!({"task": "tinyArc", "doc_id": doc_id, "loglikelihoods": ll}).to_string());
    }
    // MMLU test: answer = i % 4; pick A for all → docs 0 (answer 0) correct only
    for doc_id in 0..4 {
        lines.push(
            json!({"task": "tinyMMLU", "doc_id": doc_id, "loglikelihoods": [-1.0, -2.0, -2.0, -2.0]})
                .to_string(),
        );
    }
    // GSM8k test: What is 1000 + 1 → 1001; doc 1 wrong, doc 2 only flexible-extract
    lines.push(
        json!({"task": "tinyGSM8k", "doc_id": 0, "generated": "1000 plus one.\n#### 1001"})
            .to_string(),
    );
    lines.push(json!({"task": "tinyGSM8k", "doc_id": 1, "generated": "#### 7"}).to_string());
    lines.push(
        json!({"task": "tinyGSM8k", "doc_id": 2, "generated": "It is 1003.\n\nQuestion: next"})
            .to_string(),
    );
    let responses = tmp.path().join("responses.jsonl");
    std::fs::write(&responses, lines.join("\n") + "\n").unwrap();
    let items = tmp.path().join("items.jsonl");
    let out = tmp.path().join("out.json");
    let r = run_in(
        &[
            "eval",
            "--responses",
            responses.to_str().unwrap(),
            "--tasks",
            &tasks,
            "--split",
            "test",
            "--items",
            items.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(r.code == Some(0), "{}", r.stderr);
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let res = |task: &str, metric: &str| -> f64 {
        results["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == task)
            .unwrap_or_else(|| panic!("no {task}: {results}"))["metrics"][metric]["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(res("tinyArc", "acc_norm"), want_correct as f64 / 5.0);
    assert_eq!(res("tinyMMLU", "acc_norm"), 0.25);
    assert!((res("tinyGSM8k", "exact_match,strict-match") - 1.0 / 3.0).abs() < 1e-12);
    assert!((res("tinyGSM8k", "exact_match,flexible-extract") - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(results["responses"], responses.display().to_string());
    // the re-scored items carry the Parquet-borne choices and targets
    let recs: Vec<Value> = std::fs::read_to_string(&items)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = recs
        .iter()
        .find(|r| r["task"] == "tinyArc" && r["doc_id"] == 0)
        .unwrap();
    let a = arc(50);
    assert_eq!(first["choices"], json!(a.texts));
    let gold = a.labels.iter().position(|l| *l == a.answer).unwrap();
    assert_eq!(first["target"], a.texts[gold]);
    assert_eq!(recs.len(), 5 + 4 + 3);
    // re-scoring the items file gives the same results
    let out2 = tmp.path().join("out2.json");
    let r = run_in(
        &[
            "eval",
            "--responses",
            items.to_str().unwrap(),
            "--tasks",
            &tasks,
            "--split",
            "test",
            "--out",
            out2.to_str().unwrap(),
        ],
        tmp.path(),
    );
    assert!(r.code == Some(0), "{}", r.stderr);
    let again: Value = serde_json::from_str(&std::fs::read_to_string(&out2).unwrap()).unwrap();
    assert_eq!(again["results"].as_array().unwrap().len(), 3);
    for (x, y) in again["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(results["results"].as_array().unwrap())
    {
        assert_eq!(x["metrics"], y["metrics"]);
    }
}

#[test]
fn saved_responses_errors_name_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    fake_cache(&tmp.path().join(".hf/hub"));
    let tasks = task_files(
        tmp.path(),
        &[(
            "tinyGSM8k",
            std::fs::read_to_string(repo().join("evals/lamarck-v0.3/tinyGSM8k.yaml")).unwrap(),
        )],
    );
    let cases: &[(&str, &[&str])] = &[
        (
            "{\"task\": \"tinyGSM8k\", \"doc_id\": 0, \"generated\": \"1\"}\n{\"task\": \"tinyGSM8k\", \"doc_id\": 3, \"generated\": \"1\"}\n",
            &["line 2", "doc_id 3", "has 3 document(s)"],
        ),
        (
            "{\"task\": \"tinyGSM8k\", \"doc_id\": 0, \"generated\": \"1\"}\n\n{\"task\": \"gsm8k\", \"doc_id\": 0, \"generated\": \"1\"}\n",
            &["line 3", "task `gsm8k` is not among --tasks (tinyGSM8k)"],
        ),
        ("{\"task\": \"tinyGSM8k\", \"generated\": \"1\"}\n", &["line 1", "no `doc_id`"]),
        (
            "{\"task\": \"tinyGSM8k\", \"doc_id\": 0, \"generated\": \"1\"}\n{\"task\": \"tinyGSM8k\", \"doc_id\": 0, \"generated\": \"2\"}\n",
            &["line 2", "again (first on line 1)"],
        ),
        (
            "{\"task\": \"tinyGSM8k\", \"doc_id\": 0, \"loglikelihoods\": [1.0]}\n",
            &["line 1", "needs `generated`"],
        ),
    ];
    for (text, needles) in cases {
        let f = tmp.path().join("r.jsonl");
        std::fs::write(&f, text).unwrap();
        let r = run_in(
            &[
                "eval",
                "--responses",
                f.to_str().unwrap(),
                "--tasks",
                &tasks,
                "--split",
                "test",
            ],
            tmp.path(),
        );
        assert!(r.code != Some(0), "{text}");
        for n in *needles {
            assert!(r.stderr.contains(n), "{text}: lacks {n:?}:\n{}", r.stderr);
        }
        assert!(r.stderr.contains("r.jsonl"), "{}", r.stderr);
    }
    // a model is not needed with --responses, and one of the two is required
    let r = run_in(&["eval", "--tasks", &tasks], tmp.path());
    assert!(
        r.code != Some(0) && r.stderr.contains("<MODEL>"),
        "{}",
        r.stderr
    );
}

#[test]
fn splits_resolve_by_role_slice_and_file_names() {
    // the snapshots as local dataset folders (`dataset_path: /abs/folder` reads them the
    // same way; the hub-cache lookup itself is tested through the CLI below)
    let tmp = tempfile::tempdir().unwrap();
    let snapshots = fake_cache(&tmp.path().join(".hf/hub"));
    let spec = |name: &str, strip_hooks: bool| -> lamarck::eval::task::TaskSpec {
        let file = repo().join(format!("evals/lamarck-v0.3/{name}.yaml"));
        let mut text = std::fs::read_to_string(&file).unwrap();
        for (id, dir) in &snapshots {
            text = text.replace(
                &format!("dataset_path: {id}\n"),
                &format!("dataset_path: {}\n", dir.display()),
            );
        }
        if strip_hooks {
            // IFEval's `process_results` checkers are another module's: keep its dataset
            // and split keys, score by exact match
            let cut = text.find("process_results:").unwrap();
            text = format!("{}metric_list:\n  - metric: exact_match\n", &text[..cut]);
        }
        lamarck::eval::task::TaskSpec::from_yaml(&text, &tmp.path().join(format!("{name}.yaml")))
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let load = |t: &lamarck::eval::task::TaskSpec, split: &str| -> Vec<Value> {
        let split = t.eval_split(Some(split)).unwrap();
        lamarck::eval::task::data::load_split(t, &split).unwrap()
    };
    // tinyGSM8k: validation = train[:200] over two shards, in order; few-shot from the rest
    let gsm = spec("tinyGSM8k", false);
    let val = load(&gsm, "validation");
    assert_eq!(val.len(), 200);
    assert_eq!(val[0]["question"], "What is 0 + 1?");
    assert_eq!(val[199]["question"], "What is 199 + 1?");
    assert_eq!(load(&gsm, "test").len(), 3);
    let shots = load(&gsm, &gsm.fewshot_source().unwrap());
    assert_eq!(shots.len(), 60);
    assert_eq!(shots[0]["question"], "What is 200 + 1?");
    assert_eq!(load(&gsm, "train").len(), 260);
    // tinyMMLU: validation is the card's `dev`
    let mmlu = spec("tinyMMLU", false);
    let dev = load(&mmlu, "validation");
    assert_eq!(dev.len(), 9);
    assert_eq!(dev[1]["answer"], 1);
    assert!(dev[0]["input_formatted"]
        .as_str()
        .unwrap()
        .starts_with("dev question 0"));
    // tinyArc: only the ARC-Challenge config is read; nested values intact
    let arc_task = spec("tinyArc", false);
    assert_eq!(load(&arc_task, "validation").len(), 7);
    let test = load(&arc_task, "test");
    assert_eq!(
        test,
        (50..55).map(|i| arc_json(&arc(i))).collect::<Vec<_>>()
    );
    // a split the dataset lacks: the error lists the splits it has
    let e = lamarck::eval::task::data::load_split(&arc_task, "dev")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no split `dev`") && e.contains("`train` (1 file(s))"),
        "{e}"
    );
    // no card: `dev-*.parquet` is the Hub's `validation`, and `dev` reaches it too
    let plain = tmp.path().join("plain-mmlu");
    write_flat_parquet(
        &plain.join("all/dev-00000-of-00001.parquet"),
        &[Col::Int("answer", vec![Some(2); 5])],
    );
    for split in ["dev", "validation"] {
        let t = lamarck::eval::task::TaskSpec::from_yaml(
            &format!(
                "task: m\ndataset_path: plain-mmlu\ndataset_name: all\ntest_split: {split}\n\
                 output_type: multiple_choice\ndoc_to_text: x\ndoc_to_choice: [A, B, C, D]\n\
                 doc_to_target: answer\n"
            ),
            &tmp.path().join("m.yaml"),
        )
        .unwrap();
        assert_eq!(load(&t, "test").len(), 5, "{split}");
    }
    // IFEval: one file, so one `train` split; the search and held-out parts partition it
    let ifeval = spec("ifeval", true);
    let search = load(&ifeval, "validation");
    let held = load(&ifeval, "test");
    assert_eq!((search.len(), held.len()), (270, 30));
    assert_eq!(search[0]["key"], 1000);
    assert_eq!(held[0]["key"], 1270);
}

#[test]
fn lamarck_v0_3_search_dry_run_finds_its_tasks_in_the_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let map = lamarck_v03_headers(&tmp.path().join("models"), &tmp.path().join("map.yaml"));
    let search = repo().join("searches/lamarck-v0.3.yaml");
    let args = [
        "evolve",
        search.to_str().unwrap(),
        "--dry-run",
        "--model-map",
        map.to_str().unwrap(),
    ];
    // without the datasets: each task says what is missing and how to get it
    let r = run_in(&args, tmp.path());
    assert!(r.code == Some(0), "{}", r.stderr);
    if std::env::var_os("LAMARCK_SHOW").is_some() {
        eprintln!("{}", r.stdout);
    }
    for repo_id in [
        "tinyBenchmarks/tinyAI2_arc",
        "tinyBenchmarks/tinyMMLU",
        "tinyBenchmarks/tinyGSM8k",
    ] {
        assert!(
            r.stdout.contains(&format!(
                "huggingface-cli download --repo-type dataset {repo_id}"
            )),
            "{}",
            r.stdout
        );
    }
    fake_cache(&tmp.path().join(".hf/hub"));
    let r = run_in(&args, tmp.path());
    assert!(r.code == Some(0), "{}", r.stderr);
    if std::env::var_os("LAMARCK_SHOW").is_some() {
        eprintln!("{}", r.stdout);
    }
    let line = |task: &str| -> String {
        r.stdout
            .lines()
            .find(|l| l.contains(&format!("lamarck-v0.3/{task}.yaml")))
            .unwrap_or_else(|| panic!("no objective {task}:\n{}", r.stdout))
            .to_string()
    };
    assert!(
        line("tinyArc").ends_with("split `validation`, 7 item(s)"),
        "{}",
        r.stdout
    );
    assert!(
        line("tinyMMLU").ends_with("split `dev`, 9 item(s)"),
        "{}",
        r.stdout
    );
    assert!(
        line("tinyGSM8k").ends_with("split `train[:200]`, 100 item(s)"),
        "{}",
        r.stdout
    );
    // IFEval's checkers are built in (`utils.process_results`)
    assert!(
        line("ifeval").ends_with("split `train[:270]`, 100 item(s)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("not found"), "{}", r.stdout);
}
