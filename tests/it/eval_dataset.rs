//! Task data from the Hugging Face hub cache, offline: a fake cache built here from Parquet
//! files this test writes (ARC's nested `choices: {text: [...], label: [...]}` column,
//! snapshots as symlinks to blobs, a dataset card with `configs:`, split names from file
//! names), scored through `lamarck eval --responses`, and the Lamarck-v0.3 search's
//! `--dry-run` reporting its tasks ready on that cache.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::{json, Value};

use crate::support::cmd::run_in;
use crate::support::merge::{write_header_only, write_model_map, Shape};
use crate::support::repo;

/// One ARC question: id, question, choice texts, choice labels, answer key.
struct Arc4 {
    id: String,
    question: String,
    texts: Vec<String>,
    labels: Vec<String>,
    answer: String,
}

fn arc(i: usize) -> Arc4 {
    // a varying number of choices (ARC has 3 to 5), labels A.. or 1..
    let n = 3 + i % 3;
    let labels: Vec<String> = if i % 4 == 3 {
        (1..=n).map(|k| k.to_string()).collect()
    } else {
        (0..n)
            .map(|k| ((b'A' + k as u8) as char).to_string())
            .collect()
    };
    Arc4 {
        id: format!("Mercury_{i}"),
        question: format!("Which value is number {i}?"),
        texts: (0..n).map(|k| format!("value {}", i * 10 + k)).collect(),
        answer: labels[i % n].clone(),
        labels,
    }
}

/// The JSON `datasets` hands lm-eval for an ARC row.
fn arc_json(a: &Arc4) -> Value {
    json!({"id": a.id, "question": a.question,
           "choices": {"text": a.texts, "label": a.labels}, "answerKey": a.answer})
}

fn bytes(xs: &[&str]) -> Vec<ByteArray> {
    xs.iter().map(|s| ByteArray::from(*s)).collect()
}

/// ARC rows as pyarrow writes them: every field optional, lists in the 3-level layout.
fn write_arc_parquet(path: &Path, rows: &[Arc4], compression: Compression) {
    let schema = "message schema {
        optional binary id (STRING);
        optional binary question (STRING);
        optional group choices {
          optional group text (LIST) { repeated group list { optional binary element (STRING); } }
          optional group label (LIST) { repeated group list { optional binary element (STRING); } }
        }
        optional binary answerKey (STRING);
    }";
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(
        file,
        Arc::new(parse_message_type(schema).unwrap()),
        Arc::new(props),
    )
    .unwrap();
    let mut group = writer.next_row_group().unwrap();
    let mut column = 0;
    while let Some(mut col) = group.next_column().unwrap() {
        let w = col.typed::<ByteArrayType>();
        match column {
            0 | 1 | 4 => {
                let vals: Vec<&str> = rows
                    .iter()
                    .map(|r| match column {
                        0 => r.id.as_str(),
                        1 => r.question.as_str(),
                        _ => r.answer.as_str(),
                    })
                    .collect();
                w.write_batch(&bytes(&vals), Some(&vec![1; rows.len()]), None)
                    .unwrap();
            }
            _ => {
                // choices.{text,label}.list.element: definition level 4 = value present,
                // repetition level 0 starts a row's list, 1 continues it
                let (mut vals, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
                for r in rows {
                    let xs = if column == 2 { &r.texts } else { &r.labels };
                    for (k, x) in xs.iter().enumerate() {
                        vals.push(ByteArray::from(x.as_str()));
                        def.push(4);
                        rep.push(i16::from(k > 0));
                    }
                }
                w.write_batch(&vals, Some(&def), Some(&rep)).unwrap();
            }
        }
        col.close().unwrap();
        column += 1;
    }
    group.close().unwrap();
    writer.close().unwrap();
}

/// A flat Parquet file of string and int64 columns (`None` marks a null).
enum Col {
    Str(&'static str, Vec<String>),
    Int(&'static str, Vec<Option<i64>>),
}

fn write_flat_parquet(path: &Path, cols: &[Col]) {
    let fields: String = cols
        .iter()
        .map(|c| match c {
            Col::Str(n, _) => format!("optional binary {n} (STRING);\n"),
            Col::Int(n, _) => format!("optional int64 {n};\n"),
        })
        .collect();
    let schema = parse_message_type(&format!("message schema {{\n{fields}}}")).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props)).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for c in cols {
        let mut col = group.next_column().unwrap().unwrap();
        match c {
            Col::Str(_, xs) => {
                let vals: Vec<ByteArray> = xs.iter().map(|s| ByteArray::from(s.as_str())).collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&vec![1; xs.len()]), None)
                    .unwrap();
            }
            Col::Int(_, xs) => {
                let vals: Vec<i64> = xs.iter().flatten().copied().collect();
                let def: Vec<i16> = xs.iter().map(|x| i16::from(x.is_some())).collect();
                col.typed::<Int64Type>()
                    .write_batch(&vals, Some(&def), None)
                    .unwrap();
            }
        }
        col.close().unwrap();
    }
    group.close().unwrap();
    writer.close().unwrap();
}

/// A dataset repo in the hub cache as `huggingface-cli download --repo-type dataset`
/// leaves it: files in `blobs/`, `snapshots/<commit>/<path>` symlinks to them,
/// `refs/main` naming the commit. `write` puts the files into a staging folder first.
fn cache_dataset(cache: &Path, repo: &str, write: impl FnOnce(&Path)) -> PathBuf {
    let folder = cache.join(format!("datasets--{}", repo.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let staging = folder.join("staging");
    write(&staging);
    let snapshot = folder.join("snapshots").join(commit);
    let mut stack = vec![staging.clone()];
    let mut n = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&staging).unwrap();
            let blob = folder.join("blobs").join(format!("blob{n}"));
            n += 1;
            std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
            std::fs::rename(&p, &blob).unwrap();
            let link = snapshot.join(rel);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(&blob, &link).unwrap();
        }
    }
    std::fs::remove_dir_all(&staging).unwrap();
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), commit).unwrap();
    snapshot
}

const ARC_CARD: &str = "---\nconfigs:\n- config_name: ARC-Challenge\n  data_files:\n  - split: train\n    path: ARC-Challenge/train-*\n  - split: validation\n    path: ARC-Challenge/validation-*\n  - split: test\n    path: ARC-Challenge/test-*\n- config_name: ARC-Easy\n  data_files:\n  - split: test\n    path: ARC-Easy/test-*\n---\n# tinyAI2_arc\n";

const MMLU_CARD: &str = "---\nconfigs:\n- config_name: all\n  data_files:\n  - split: test\n    path: all/test-*\n  - split: dev\n    path: all/dev-*\n---\n";

/// The four datasets of the Lamarck-v0.3 search, small, in `cache`: tinyAI2_arc and
/// tinyMMLU with dataset cards, tinyGSM8k and IFEval without (split names from file names).
/// Returns (repo id, snapshot folder) pairs.
fn fake_cache(cache: &Path) -> Vec<(&'static str, PathBuf)> {
    let mut out = Vec::new();
    let arc_dir = cache_dataset(cache, "tinyBenchmarks/tinyAI2_arc", |d| {
        let rows = |r: std::ops::Range<usize>| r.map(arc).collect::<Vec<_>>();
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("README.md"), ARC_CARD).unwrap();
        write_arc_parquet(
            &d.join("ARC-Challenge/train-00000-of-00001.parquet"),
            &rows(100..130),
            Compression::SNAPPY,
        );
        write_arc_parquet(
            &d.join("ARC-Challenge/validation-00000-of-00001.parquet"),
            &rows(0..7),
            Compression::ZSTD(Default::default()),
        );
        write_arc_parquet(
            &d.join("ARC-Challenge/test-00000-of-00001.parquet"),
            &rows(50..55),
            Compression::GZIP(Default::default()),
        );
        // another config that must not be read
        write_arc_parquet(
            &d.join("ARC-Easy/test-00000-of-00001.parquet"),
            &rows(200..290),
            Compression::SNAPPY,
        );
    });
    out.push(("tinyBenchmarks/tinyAI2_arc", arc_dir));
    let mmlu_dir = cache_dataset(cache, "tinyBenchmarks/tinyMMLU", |d| {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("README.md"), MMLU_CARD).unwrap();
        let mmlu = |n: usize, tag: &str| {
            vec![
                Col::Str(
                    "input_formatted",
                    (0..n)
                        .map(|i| format!("{tag} question {i}\nA. a\nB. b\nC. c\nD. d\nAnswer:"))
                        .collect(),
                ),
                Col::Int("answer", (0..n).map(|i| Some((i % 4) as i64)).collect()),
            ]
        };
        write_flat_parquet(&d.join("all/test-00000-of-00001.parquet"), &mmlu(4, "test"));
        write_flat_parquet(&d.join("all/dev-00000-of-00001.parquet"), &mmlu(9, "dev"));
    });
    out.push(("tinyBenchmarks/tinyMMLU", mmlu_dir));
    let gsm_dir = cache_dataset(cache, "tinyBenchmarks/tinyGSM8k", |d| {
        let gsm = |n: usize, off: usize| {
            vec![
                Col::Str(
                    "question",
                    (0..n)
                        .map(|i| format!("What is {} + 1?", i + off))
                        .collect(),
                ),
                Col::Str(
                    "answer",
                    (0..n)
                        .map(|i| format!("Add one.\n#### {}", i + off + 1))
                        .collect(),
                ),
            ]
        };
        // train in two shards: both are read, in order
        write_flat_parquet(&d.join("main/train-00000-of-00002.parquet"), &gsm(150, 0));
        write_flat_parquet(&d.join("main/train-00001-of-00002.parquet"), &gsm(110, 150));
        write_flat_parquet(&d.join("main/test-00000-of-00001.parquet"), &gsm(3, 1000));
    });
    out.push(("tinyBenchmarks/tinyGSM8k", gsm_dir));
    let ifeval_dir = cache_dataset(cache, "google/IFEval", |d| {
        std::fs::create_dir_all(d).unwrap();
        let lines: String = (0..300)
            .map(|i| {
                json!({"key": 1000 + i, "prompt": format!("Write {i} words."),
                       "instruction_id_list": ["length_constraints:number_words"],
                       "kwargs": [{"relation": "at least", "num_words": i}]})
                .to_string()
                    + "\n"
            })
            .collect();
        std::fs::write(d.join("ifeval_input_data.jsonl"), lines).unwrap();
    });
    out.push(("google/IFEval", ifeval_dir));
    out
}

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
    // IFEval: one file, so one `train` split; the search and held-out parts partition it
    let ifeval = spec("ifeval", true);
    let search = load(&ifeval, "validation");
    let held = load(&ifeval, "test");
    assert_eq!((search.len(), held.len()), (270, 30));
    assert_eq!(search[0]["key"], 1000);
    assert_eq!(held[0]["key"], 1270);
}

const SEARCH_MODELS: &[&str] = &[
    "Qwen/Qwen2.5-14B",
    "arcee-ai/Virtuoso-Small",
    "CultriX/SeQwence-14B-EvolMerge",
    "sometimesanotion/lamarck-14b-reason-model_stock",
    "CultriX/Qwen2.5-14B-Wernicke",
    "sthenno-com/miscii-14b-1028",
    "sometimesanotion/lamarck-14b-prose-model_stock",
    "underwoods/medius-erebus-magnum-14b",
    "Qwen/Qwen2.5-14B-Instruct",
];

#[test]
fn lamarck_v0_3_search_dry_run_finds_its_tasks_in_the_hub_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries = Vec::new();
    for id in SEARCH_MODELS {
        let dir = tmp.path().join("models").join(id.replace('/', "--"));
        write_header_only(&dir, Shape::qwen14b());
        entries.push((*id, dir));
    }
    let map = tmp.path().join("map.yaml");
    write_model_map(&map, &entries);
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
    // IFEval is ready once its checkers (`process_results`) are built in; until then the
    // only thing missing may be that hook, never the data
    let ifeval = line("ifeval");
    assert!(
        ifeval.ends_with("split `train[:270]`, 100 item(s)")
            || (ifeval.contains("NOT READY") && ifeval.contains("!function")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("not found"), "{}", r.stdout);
}
