//! Parquet files (the Hub's format) → one JSON object per row, for the templates.
//!
//! Nested columns become JSON-like values, as `datasets` hands them to lm-eval: a struct
//! is an object, a list is an array (ARC's `choices: {text: [...], label: [...]}` →
//! `{"text": [...], "label": [...]}`), a map is an object. Integers stay integers;
//! floats are f64 (a 32-bit float widens: `0.1f32` reads 0.10000000149011612); binary
//! columns are base64 text; dates and timestamps are ISO text. Compression: snappy, zstd,
//! gzip (what pyarrow and `datasets` write); anything else is an error naming the file.
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::Value;

use crate::eval::{Error, Result};

/// Every row of `path`, in file order.
pub fn read_rows(path: &Path) -> Result<Vec<Value>> {
    let bad = |message: String| Error::Data {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let n = reader.metadata().file_metadata().num_rows().max(0) as usize;
    let mut rows = Vec::with_capacity(n);
    for (i, row) in reader.into_iter().enumerate() {
        let row = row.map_err(|e| {
            bad(format!(
                "row {i}: {e} (lamarck reads snappy, zstd and gzip compressed Parquet)"
            ))
        })?;
        rows.push(row.to_json_value());
    }
    Ok(rows)
}
