//! Checkpoint tensors → one in-memory map, the single door every model goes through.
//!
//! A folder is read shard by shard (the shard list comes from
//! `model.safetensors.index.json`, in its sorted order, or the single `model.safetensors`)
//! into `HashMap<String, Tensor>`; the search hands its merged tensors over in the same
//! form, so both take the same `Qwen2Lm::from_tensors` path.
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::{Error, Result};

/// The safetensors files of a model folder, in a stable order.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::model(&index, format!("not valid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::model(&index, "no `weight_map` object"))?;
        let mut files = BTreeSet::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::model(&index, format!("weight_map[{name}] is not a file name"))
            })?;
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(Error::model(
                    &index,
                    format!("weight_map[{name}] = `{file}` must be a file name inside the folder"),
                ));
            }
            files.insert(file.to_string());
        }
        let paths: Vec<PathBuf> = files.into_iter().map(|f| dir.join(f)).collect();
        for p in &paths {
            if !p.is_file() {
                return Err(Error::model(
                    p,
                    "shard listed in model.safetensors.index.json is missing",
                ));
            }
        }
        return Ok(paths);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(Error::model(
        dir,
        "no model.safetensors or model.safetensors.index.json in this folder",
    ))
}

/// Read every tensor of the folder's shards, converted to `dtype`, onto `device`.
pub fn load_dir_tensors(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    for path in shard_files(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let loaded = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| Error::model(&path, format!("invalid safetensors file: {e}")))?;
        drop(bytes);
        for (name, t) in loaded {
            let t = if t.dtype() == dtype {
                t
            } else {
                t.to_dtype(dtype)?
            };
            if tensors.insert(name.clone(), t).is_some() {
                return Err(Error::model(
                    &path,
                    format!("tensor `{name}` appears in two shards"),
                ));
            }
        }
    }
    Ok(tensors)
}
