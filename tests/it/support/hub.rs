//! A fake Hugging Face hub cache for dataset tests: Parquet files written with the
//! `parquet` crate's writer as pyarrow lays them out (ARC's nested `choices` struct of
//! lists, flat string/int columns), stored as `huggingface-cli download --repo-type dataset`
//! leaves them (blobs, snapshot symlinks, `refs/main`), and the four datasets of the
//! Lamarck-v0.3 search in small.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::{json, Value};

/// One ARC question: id, question, choice texts, choice labels, answer key.
pub struct Arc4 {
    pub id: String,
    pub question: String,
    pub texts: Vec<String>,
    pub labels: Vec<String>,
    pub answer: String,
}

pub fn arc(i: usize) -> Arc4 {
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
pub fn arc_json(a: &Arc4) -> Value {
    json!({"id": a.id, "question": a.question,
           "choices": {"text": a.texts, "label": a.labels}, "answerKey": a.answer})
}

fn bytes(xs: &[&str]) -> Vec<ByteArray> {
    xs.iter().map(|s| ByteArray::from(*s)).collect()
}

/// ARC rows as pyarrow writes them: every field optional, lists in the 3-level layout.
pub fn write_arc_parquet(path: &Path, rows: &[Arc4], compression: Compression) {
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
pub enum Col {
    Str(&'static str, Vec<String>),
    Int(&'static str, Vec<Option<i64>>),
}

pub fn write_flat_parquet(path: &Path, cols: &[Col]) {
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
pub fn cache_dataset(cache: &Path, repo: &str, write: impl FnOnce(&Path)) -> PathBuf {
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
pub fn fake_cache(cache: &Path) -> Vec<(&'static str, PathBuf)> {
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
