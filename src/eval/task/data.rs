//! Task data: local `json`, `jsonl` or `csv` files, one document (a JSON object) per item.
//!
//! Where a split's file is looked up, in order: `dataset_kwargs.data_files[split]`; the
//! file `dataset_path` (every split reads it); the folder `dataset_path` (or its
//! `dataset_name` subfolder) holding `<split>.jsonl`, `<split>.json` or `<split>.csv`.
//! Paths are relative to the task file.
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::TaskSpec;
use crate::eval::{Error, Result};

/// The documents of `split`, in file order.
pub fn load_split(task: &TaskSpec, split: &str) -> Result<Vec<Value>> {
    let file = split_file(task, split)?;
    let docs = read_docs(&file)?;
    if let Some(Value::Object(by_split)) = docs.first().filter(|_| docs.len() == 1) {
        // A JSON object of split → list of documents.
        if let Some(Value::Array(items)) = by_split.get(split) {
            return Ok(items.clone());
        }
    }
    Ok(docs)
}

/// The file that holds `split`; the error lists every place tried.
pub fn split_file(task: &TaskSpec, split: &str) -> Result<PathBuf> {
    let base = task.file.parent().unwrap_or(Path::new("."));
    let missing = |path: PathBuf, what: String| Error::Data {
        path,
        message: format!("{what} (task `{}` in {})", task.name, task.file.display()),
    };
    if !task.data_files.is_empty() {
        let Some(rel) = task.data_files.get(split) else {
            return Err(missing(
                task.file.clone(),
                format!(
                    "split `{split}` is not in dataset_kwargs.data_files (it has: {})",
                    task.data_files
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let path = base.join(rel);
        if !path.is_file() {
            return Err(missing(
                path,
                format!("data file for split `{split}` does not exist"),
            ));
        }
        return Ok(path);
    }
    let root = base.join(&task.dataset_path);
    if root.is_file() {
        return Ok(root);
    }
    let mut folders = Vec::new();
    if let Some(name) = &task.dataset_name {
        folders.push(root.join(name));
    }
    folders.push(root.clone());
    let mut tried = Vec::new();
    for folder in folders.iter().filter(|f| f.is_dir()) {
        for ext in ["jsonl", "json", "csv"] {
            let p = folder.join(format!("{split}.{ext}"));
            if p.is_file() {
                return Ok(p);
            }
            tried.push(p.display().to_string());
        }
    }
    if tried.is_empty() {
        return Err(missing(
            root,
            "dataset_path is neither a data file nor a folder; lamarck reads local json/jsonl/csv \
             files (download Hub datasets first, e.g. tools/eval/fetch_tinybenchmarks.py)"
                .into(),
        ));
    }
    Err(missing(
        root,
        format!(
            "no data file for split `{split}`; tried {}",
            tried.join(", ")
        ),
    ))
}

/// Read every document of a json (array, or object of split → array), jsonl or csv file.
pub fn read_docs(path: &Path) -> Result<Vec<Value>> {
    let bad = |message: String| Error::Data {
        path: path.to_path_buf(),
        message,
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let docs = match ext {
        "jsonl" => {
            let mut docs = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| bad(format!("line {}: not valid JSON: {e}", i + 1)))?;
                docs.push(v);
            }
            docs
        }
        "json" => {
            match serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))? {
                Value::Array(items) => items,
                obj @ Value::Object(_) => vec![obj],
                _ => return Err(bad("expected a JSON array of documents".into())),
            }
        }
        "csv" => {
            let mut reader = csv::Reader::from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| bad(format!("CSV header: {e}")))?
                .clone();
            let mut docs = Vec::new();
            for (i, rec) in reader.records().enumerate() {
                let rec = rec.map_err(|e| bad(format!("CSV row {}: {e}", i + 2)))?;
                let obj: Map<String, Value> = headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect();
                docs.push(Value::Object(obj));
            }
            docs
        }
        _ => return Err(bad("unknown data format: use .jsonl, .json or .csv".into())),
    };
    for (i, d) in docs.iter().enumerate() {
        if !d.is_object() {
            return Err(bad(format!("document {i} is not a JSON object")));
        }
    }
    Ok(docs)
}
