//! Checkpoint tensors → one in-memory map, the single door every model goes through.
//!
//! A folder is opened by the model layer ([`ModelDir`]: validated headers, the shard rule
//! of `model.safetensors.index.json` or the single `model.safetensors`, memory-mapped data)
//! and each tensor is made from its mapped bytes directly on the device; the search hands
//! its merged tensors over in the same form, so both take the same `Qwen2Lm::from_tensors`
//! path.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::{Error, Result};
use crate::model::{self, ModelDir};

/// candle's dtype for a stored one.
pub fn candle_dtype(dtype: model::DType) -> DType {
    match dtype {
        model::DType::F32 => DType::F32,
        model::DType::F16 => DType::F16,
        model::DType::BF16 => DType::BF16,
    }
}

/// Every tensor of an opened folder, converted to `dtype`, on `device`.
pub fn load_tensors(
    dir: &ModelDir,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let mut tensors = HashMap::new();
    for name in dir.tensor_names() {
        let info = dir
            .info(name)
            .ok_or_else(|| Error::model(&dir.path, format!("tensor `{name}` vanished")))?;
        let bytes = dir.raw(name).map_err(|e| Error::Invalid(e.to_string()))?;
        let t = Tensor::from_raw_buffer(bytes, candle_dtype(info.dtype), &info.shape, device)
            .map_err(|e| Error::model(&dir.path, format!("tensor `{name}`: {e}")))?;
        let t = if t.dtype() == dtype {
            t
        } else {
            t.to_dtype(dtype)?
        };
        tensors.insert(name.to_string(), t);
    }
    Ok(tensors)
}

/// Open a folder and read every tensor of it (see [`load_tensors`]).
pub fn load_dir_tensors(
    dir: &Path,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let opened = ModelDir::open(dir).map_err(|e| Error::Invalid(e.to_string()))?;
    load_tensors(&opened, dtype, device)
}
