//! The files of the disk stage cache ([`super::stage_cache`]): one `<hash>.safetensors` per
//! stage output, its header recording the stage hash (`__metadata__.lamarck_stage`) and
//! the folder of its tokenizer files.
//!
//! Two ways in, both complete-or-absent (hidden temporary name, fsync, rename):
//! [`write_file`] writes a stage held in memory (an LRU spill), and [`StageFileSink`]
//! streams a stage to its file as it is merged, through the model layer's streaming writer
//! ([`crate::model::stream_writer`]), for a stage larger than `--cache-mem` that must never
//! be whole in memory. Either file is read back by [`open_file`] as a memory map.
#![allow(clippy::result_large_err)]
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{Error, Result};
use crate::merge::run::{Error as MergeError, MemorySink, Result as MergeResult, Sink};
use crate::model::safetensors::{dtype_code, read_header};
use crate::model::stream_writer::Streaming;
use crate::model::{Announced, DType};

/// Metadata key holding the stage hash.
const META_KEY: &str = "lamarck_stage";
/// Metadata key holding the folder of the stage's tokenizer files.
const META_TOKENIZER: &str = "lamarck_tokenizer_dir";

/// One `<hash>.safetensors` file of the disk cache, mapped.
pub struct Mapped {
    pub path: PathBuf,
    pub(super) mmap: Mmap,
    /// name → (shape, dtype, byte range in the file).
    pub(super) tensors: BTreeMap<String, (Vec<usize>, DType, std::ops::Range<usize>)>,
    pub(super) tokenizer_dir: PathBuf,
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// The file's header for tensors stored in this order (name, dtype, shape, byte length):
/// the 8-byte length, then the JSON padded with spaces to a multiple of 8 bytes.
fn header(key: &str, tokenizer_dir: &Path, tensors: &[(&str, DType, &[usize], u64)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({
            "format": "pt",
            META_KEY: key,
            META_TOKENIZER: tokenizer_dir.to_string_lossy(),
        }),
    );
    let mut offset = 0u64;
    for (name, dtype, shape, len) in tensors {
        header.insert(
            name.to_string(),
            serde_json::json!({
                "dtype": dtype_code(*dtype),
                "shape": shape,
                "data_offsets": [offset, offset + len],
            }),
        );
        offset += len;
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out
}

/// The hidden temporary name of `key`'s file (or folder) while it is written.
fn temp_name(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!(".{key}.lamarck-tmp-{}", std::process::id()))
}

/// Rename a complete, fsynced `tmp` to `dir/<key>.safetensors` and sync the folder.
fn publish(dir: &Path, key: &str, tmp: &Path) -> Result<PathBuf> {
    let path = dir.join(format!("{key}.safetensors"));
    std::fs::rename(tmp, &path).map_err(|e| Error::io(&path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Write `sink` as `dir/<key>.safetensors`: temporary name, fsync, rename.
pub(super) fn write_file(
    dir: &Path,
    key: &str,
    sink: &MemorySink,
    tokenizer_dir: &Path,
) -> Result<PathBuf> {
    let tmp = temp_name(dir, key);
    let entries: Vec<(&str, DType, &[usize], u64)> = sink
        .tensors
        .iter()
        .map(|(name, (shape, dtype, bytes))| {
            (name.as_str(), *dtype, shape.as_slice(), bytes.len() as u64)
        })
        .collect();
    let head = header(key, tokenizer_dir, &entries);
    let io = |e| Error::io(&tmp, e);
    let file = File::create(&tmp).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&head).map_err(io)?;
    for (_, _, bytes) in sink.tensors.values() {
        w.write_all(bytes).map_err(io)?;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    publish(dir, key, &tmp)
}

/// Open and verify a cache file: a valid header naming `key`, data covering the file.
pub(super) fn open_file(path: &Path, key: &str) -> Result<Mapped> {
    let header = read_header(path, true)?;
    let bad = |message: String| Error::Records {
        path: path.to_path_buf(),
        message,
    };
    if header.metadata.get(META_KEY).map(String::as_str) != Some(key) {
        return Err(bad(format!(
            "does not record stage hash {key} in `__metadata__.{META_KEY}`"
        )));
    }
    let data: u64 = header.tensors.values().map(|t| t.len).sum();
    if header.data_start + data != header.file_len {
        return Err(bad(format!(
            "{} bytes, the header describes {}: incomplete",
            header.file_len,
            header.data_start + data
        )));
    }
    let tokenizer_dir = PathBuf::from(
        header
            .metadata
            .get(META_TOKENIZER)
            .cloned()
            .unwrap_or_default(),
    );
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: cache files are written completely under a temporary name and renamed; lamarck
    // never writes to a file after the rename (only removes it, which keeps the mapping
    // valid), and the run folder is locked against a second lamarck process.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let tensors = header
        .tensors
        .into_iter()
        .map(|(name, t)| {
            let r = t.start as usize..(t.start + t.len) as usize;
            (name, (t.info.shape, t.info.dtype, r))
        })
        .collect();
    Ok(Mapped {
        path: path.to_path_buf(),
        mmap,
        tensors,
        tokenizer_dir,
    })
}

/// A merge [`Sink`] that streams a stage straight into `dir/<key>.safetensors`: every
/// tensor is announced from the plan, so the header is written first and each part goes
/// to its final offset on the streaming writer's thread (at most `queue_bytes` waiting).
/// The file is written inside a hidden temporary folder (`.<key>.lamarck-tmp-<pid>/`),
/// removed if the sink is dropped unfinished.
pub struct StageFileSink {
    dir: PathBuf,
    key: String,
    /// `<dir>/<key>.safetensors`, the file's final name (what errors name).
    out: PathBuf,
    temp: PathBuf,
    /// `None` once finished (or failed to start).
    streaming: Option<Streaming>,
    /// name → (bytes received, bytes expected).
    received: HashMap<String, (u64, u64)>,
}

impl StageFileSink {
    /// Start writing `tensors` (the plan's outputs, in plan order) as `key`'s cache file.
    pub fn create(
        dir: &Path,
        key: &str,
        tokenizer_dir: &Path,
        tensors: &[Announced],
        queue_bytes: u64,
    ) -> Result<StageFileSink> {
        let temp = temp_name(dir, key);
        if temp.exists() {
            std::fs::remove_dir_all(&temp).map_err(|e| Error::io(&temp, e))?;
        }
        std::fs::create_dir(&temp).map_err(|e| Error::io(&temp, e))?;
        let mut sink = StageFileSink {
            dir: dir.to_path_buf(),
            key: key.to_string(),
            out: dir.join(format!("{key}.safetensors")),
            temp,
            streaming: None,
            received: tensors
                .iter()
                .map(|t| (t.name.clone(), (0, t.byte_len())))
                .collect(),
        };
        // One shard: the size limit is never reached.
        let mut streaming = Streaming::start(&sink.temp, tensors, u64::MAX, |_, entries| {
            Ok(header(key, tokenizer_dir, entries))
        })?;
        streaming.set_queue_bytes(queue_bytes);
        sink.streaming = Some(streaming);
        Ok(sink)
    }

    /// Wait for the writes, fsync, rename the file into place and map it.
    pub fn finish(mut self) -> Result<Mapped> {
        let mut streaming = self.streaming.take().ok_or_else(|| {
            Error::Invalid(format!("stage cache file {}: already finished", self.key))
        })?;
        let done = self
            .received
            .values()
            .filter(|(got, want)| got == want)
            .count();
        let out = &self.out;
        streaming.finish(out, done)?;
        let shard = match streaming.shards.as_slice() {
            [(path, _)] => path.clone(),
            shards => {
                return Err(Error::Invalid(format!(
                    "{}: the streaming writer made {} files, expected one",
                    out.display(),
                    shards.len()
                )))
            }
        };
        drop(streaming);
        let path = publish(&self.dir, &self.key, &shard)?;
        open_file(&path, &self.key)
    }
}

impl Sink for StageFileSink {
    fn add_part(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        start: usize,
        bytes: Vec<u8>,
    ) -> MergeResult<()> {
        let invalid = |message: String| MergeError::Invalid {
            tensor: name.to_string(),
            message,
        };
        let Some(streaming) = &mut self.streaming else {
            return Err(invalid("the stage cache file was already finished".into()));
        };
        let (got, want) = self
            .received
            .get_mut(name)
            .ok_or_else(|| invalid("not among the stage's planned tensors".into()))?;
        let offset = (start * dtype.size()) as u64;
        let len = bytes.len() as u64;
        if offset + len > *want || *got + len > *want {
            return Err(invalid(format!(
                "part of {len} bytes at byte {offset} does not fit shape {shape:?}"
            )));
        }
        streaming.add_part(&self.out, name, dtype, shape, offset, bytes)?;
        *got += len;
        Ok(())
    }
}

impl Drop for StageFileSink {
    fn drop(&mut self) {
        // Stop the writer thread before its file is removed.
        drop(self.streaming.take());
        if self.temp.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.temp) {
                tracing::warn!("stage cache: could not remove {}: {e}", self.temp.display());
            }
        }
    }
}
