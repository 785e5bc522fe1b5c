//! An opened model folder: config plus every tensor of every shard, validated and mmapped.
use std::path::{Path, PathBuf};

use super::{DType, HfConfig, Result};

/// Where one tensor lives.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A model folder opened for reading. Every safetensors header is validated on open.
pub struct ModelDir {
    pub path: PathBuf,
    pub config: HfConfig,
}

impl ModelDir {
    pub fn open(_path: &Path) -> Result<ModelDir> {
        todo!("model helper")
    }
    /// Tensor names in sorted order.
    pub fn tensor_names(&self) -> Vec<&str> {
        todo!("model helper")
    }
    pub fn info(&self, _name: &str) -> Option<&TensorInfo> {
        todo!("model helper")
    }
    /// The tensor's little-endian bytes, as stored.
    pub fn raw(&self, _name: &str) -> Result<&[u8]> {
        todo!("model helper")
    }
    /// The tensor converted to f32.
    pub fn read_f32(&self, _name: &str) -> Result<Vec<f32>> {
        todo!("model helper")
    }
    /// Total bytes of tensor data.
    pub fn total_bytes(&self) -> u64 {
        todo!("model helper")
    }
}
