//! Writing a model folder: sharded safetensors under a temporary name, renamed when complete.
use std::path::{Path, PathBuf};

use super::{DType, Result};

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Maximum shard size in bytes.
    pub shard_size: u64,
    /// Replace an existing output folder.
    pub force: bool,
}

pub struct ModelWriter {}

impl ModelWriter {
    /// Refuses an existing `out` unless `force`; creates a temporary folder beside it.
    pub fn create(_out: &Path, _opts: WriteOptions) -> Result<ModelWriter> {
        todo!("model helper")
    }
    /// The temporary folder (for config.json, tokenizer files, README.md...).
    pub fn temp_path(&self) -> &Path {
        todo!("model helper")
    }
    /// Add one tensor (little-endian bytes of `dtype`).
    pub fn add_tensor(
        &mut self,
        _name: &str,
        _dtype: DType,
        _shape: &[usize],
        _data: Vec<u8>,
    ) -> Result<()> {
        todo!("model helper")
    }
    /// Flush, write the index, fsync, rename into place. Returns the final path.
    pub fn finish(self) -> Result<PathBuf> {
        todo!("model helper")
    }
}

/// Convert f32 values to `dtype` little-endian bytes (round to nearest even).
pub fn f32_to_bytes(_data: &[f32], _dtype: DType) -> Vec<u8> {
    todo!("model helper")
}
