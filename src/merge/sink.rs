//! Where a merge reads its inputs ([`TensorSource`]: a model folder, or an earlier stage
//! held in memory) and where it puts its output ([`Sink`]: a folder being written, or
//! memory).
#![allow(clippy::result_large_err)]
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

use super::run::{Error, Result};
use crate::model::safetensors::bytes_to_f32;
use crate::model::{DType, ModelDir, ModelWriter};

/// Where input tensors come from (a model folder, or an in-memory stage output).
pub trait TensorSource: Sync {
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, crate::model::Error>;

    /// Elements `range` (row-major) of a tensor. The default reads the whole tensor.
    fn read_f32_range(
        &self,
        name: &str,
        range: Range<usize>,
    ) -> Result<Vec<f32>, crate::model::Error> {
        let all = self.read_f32(name)?;
        all.get(range.clone())
            .map(<[f32]>::to_vec)
            .ok_or_else(|| crate::model::Error::Invalid {
                path: PathBuf::from("<memory>"),
                message: format!("tensor `{name}`: elements {range:?} out of range"),
            })
    }

    /// Hint that elements `range` of a tensor will be read soon.
    fn prefetch(&self, _name: &str, _range: Range<usize>) {}
}

impl TensorSource for ModelDir {
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, crate::model::Error> {
        ModelDir::read_f32(self, name)
    }
    fn read_f32_range(
        &self,
        name: &str,
        range: Range<usize>,
    ) -> Result<Vec<f32>, crate::model::Error> {
        ModelDir::read_f32_range(self, name, range)
    }
    fn prefetch(&self, name: &str, range: Range<usize>) {
        ModelDir::prefetch(self, name, range)
    }
}

/// Where merged tensors go, in plan order, already encoded in their output dtype (the
/// runner's workers encode them with [`crate::model::writer::f32_to_bytes`], in parallel).
pub trait Sink {
    /// A whole tensor: `bytes` hold its elements as little-endian `dtype`.
    fn add(&mut self, name: &str, shape: &[usize], dtype: DType, bytes: Vec<u8>) -> Result<()> {
        self.add_part(name, shape, dtype, 0, bytes)
    }

    /// Elements `start..` of a tensor, `bytes` as in [`Sink::add`]; a large tensor arrives
    /// as consecutive parts, in order.
    fn add_part(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        start: usize,
        bytes: Vec<u8>,
    ) -> Result<()>;
}

/// Writes a model folder through [`ModelWriter`].
pub struct DirSink {
    pub writer: ModelWriter,
}

impl Sink for DirSink {
    fn add(&mut self, name: &str, shape: &[usize], dtype: DType, bytes: Vec<u8>) -> Result<()> {
        Ok(self.writer.add_tensor(name, dtype, shape, bytes)?)
    }
    fn add_part(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        start: usize,
        bytes: Vec<u8>,
    ) -> Result<()> {
        Ok(self
            .writer
            .add_tensor_part(name, dtype, shape, start, bytes)?)
    }
}

/// Keeps tensors in memory in their output dtype, as the little-endian bytes a
/// [`DirSink`] would have written (a bf16 stage holds 2 bytes per element, not 4).
#[derive(Debug, Default)]
pub struct MemorySink {
    /// name → (shape, dtype, bytes).
    pub tensors: BTreeMap<String, (Vec<usize>, DType, Vec<u8>)>,
}

impl MemorySink {
    /// A tensor converted to f32 (exactly what was stored, after rounding to its dtype).
    pub fn f32(&self, name: &str) -> Option<Vec<f32>> {
        self.tensors
            .get(name)
            .map(|(_, dtype, bytes)| bytes_to_f32(bytes, *dtype))
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.tensors.values().map(|t| t.2.len() as u64).sum()
    }
}

impl Sink for MemorySink {
    fn add_part(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        start: usize,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let n: usize = shape.iter().product();
        let size = dtype.size();
        if start == 0 && bytes.len() == n * size {
            // a whole tensor: keep its buffer
            self.tensors
                .insert(name.to_string(), (shape.to_vec(), dtype, bytes));
            return Ok(());
        }
        let entry = self
            .tensors
            .entry(name.to_string())
            .or_insert_with(|| (shape.to_vec(), dtype, vec![0u8; n * size]));
        let slot = entry
            .2
            .get_mut(start * size..start * size + bytes.len())
            .ok_or_else(|| Error::Invalid {
                tensor: name.to_string(),
                message: format!("part at {start} does not fit shape {shape:?}"),
            })?;
        slot.copy_from_slice(&bytes);
        Ok(())
    }
}

/// A stage kept in memory can feed the next stage.
impl TensorSource for MemorySink {
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, crate::model::Error> {
        let n = self.tensors.get(name).map_or(0, |t| t.2.len() / t.1.size());
        self.read_f32_range(name, 0..n)
    }
    fn read_f32_range(
        &self,
        name: &str,
        range: Range<usize>,
    ) -> Result<Vec<f32>, crate::model::Error> {
        let invalid = |message: String| crate::model::Error::Invalid {
            path: PathBuf::from("<memory>"),
            message,
        };
        let (_, dtype, data) = self
            .tensors
            .get(name)
            .ok_or_else(|| invalid(format!("no tensor named `{name}`")))?;
        let size = dtype.size();
        data.get(range.start * size..range.end * size)
            .map(|b| bytes_to_f32(b, *dtype))
            .ok_or_else(|| invalid(format!("tensor `{name}`: elements {range:?} out of range")))
    }
}

/// A shared output (the search's stage cache) reads like the output itself.
impl<T: TensorSource + Send> TensorSource for std::sync::Arc<T> {
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, crate::model::Error> {
        (**self).read_f32(name)
    }
    fn read_f32_range(
        &self,
        name: &str,
        range: Range<usize>,
    ) -> Result<Vec<f32>, crate::model::Error> {
        (**self).read_f32_range(name, range)
    }
    fn prefetch(&self, name: &str, range: Range<usize>) {
        (**self).prefetch(name, range)
    }
}
