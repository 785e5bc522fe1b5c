//! Text data files: JSON (an array, or an object of split → array), JSON Lines, CSV
//! (every value a string: unlike `datasets`, no number inference).
use std::path::Path;

use serde_json::{Map, Value};

use crate::eval::{Error, Result};

/// Every document of a json, jsonl or csv file.
pub fn read_text_docs(path: &Path) -> Result<Vec<Value>> {
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
        _ => {
            return Err(bad(
                "unknown data format: use .parquet, .jsonl, .json or .csv".into(),
            ))
        }
    };
    for (i, d) in docs.iter().enumerate() {
        if !d.is_object() {
            return Err(bad(format!("document {i} is not a JSON object")));
        }
    }
    Ok(docs)
}
