//! An opened model folder: config plus every tensor of every shard, validated and mmapped.
//!
//! Opening reads `config.json`, then either `model.safetensors` or the shards named by
//! `model.safetensors.index.json`. Every shard's header is validated (see
//! [`super::safetensors`]) before any tensor is handed out, and every index entry must
//! exist in the shard it names. Data is memory-mapped, so opening a 30 GB model costs
//! only its headers.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value;

use super::safetensors::{bytes_to_f32, read_header, Header};
use super::{DType, Error, HfConfig, Result};

/// Files that travel with the weights (tokenizer, chat template, generation config), in
/// the order mergekit copies them.
pub const TAG_ALONG_FILES: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer.model",
    "added_tokens.json",
    "merges.txt",
    "vocab.json",
    "chat_template.jinja",
    "generation_config.json",
    "chat_template.json",
];

/// The index file of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The single-file checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";

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
    /// Bytes on disk.
    pub fn byte_len(&self) -> u64 {
        self.numel() as u64 * self.dtype.size() as u64
    }
}

struct Shard {
    path: PathBuf,
    /// None when opened header-only.
    mmap: Option<Mmap>,
}

struct Located {
    info: TensorInfo,
    shard: usize,
    start: u64,
    len: u64,
}

/// A model folder opened for reading. Every safetensors header is validated on open.
pub struct ModelDir {
    pub path: PathBuf,
    pub config: HfConfig,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, Located>,
    tag_along: Vec<String>,
}

impl std::fmt::Debug for ModelDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelDir")
            .field("path", &self.path)
            .field("shards", &self.shards.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl ModelDir {
    /// Open a folder: validate every header of every shard, then mmap the shards.
    pub fn open(path: &Path) -> Result<ModelDir> {
        ModelDir::open_impl(path, true)
    }

    /// Open a folder for a dry run: config and header structure are validated (the data
    /// may be absent, as in folders of truncated safetensors); reading data is an error.
    pub fn open_headers(path: &Path) -> Result<ModelDir> {
        ModelDir::open_impl(path, false)
    }

    fn open_impl(path: &Path, with_data: bool) -> Result<ModelDir> {
        if !path.is_dir() {
            return Err(Error::invalid(path, "not a directory"));
        }
        let config = HfConfig::from_file(&path.join("config.json"))?;
        let shard_files = shard_files(path)?;
        let mut shards = Vec::with_capacity(shard_files.len());
        let mut tensors = BTreeMap::new();
        for (index, (file, expected)) in shard_files.into_iter().enumerate() {
            let header = read_header(&file, with_data)?;
            let shard_tensors = select_tensors(&header, expected.as_deref(), path)?;
            for (name, entry) in shard_tensors {
                let located = Located {
                    info: entry.info.clone(),
                    shard: index,
                    start: entry.start,
                    len: entry.len,
                };
                if tensors.insert(name.clone(), located).is_some() {
                    return Err(Error::BadTensor {
                        path: file.clone(),
                        tensor: name,
                        message: "appears in more than one shard".into(),
                    });
                }
            }
            shards.push(Shard {
                path: file,
                mmap: None,
            });
        }
        // Map only after every header passed.
        if with_data {
            for shard in &mut shards {
                let file =
                    std::fs::File::open(&shard.path).map_err(|e| Error::io(&shard.path, e))?;
                // SAFETY: the map is read-only; a file truncated by another process while
                // mapped would fault (SIGBUS), the usual caveat of memory-mapped readers,
                // accepted here as by safetensors/candle. Every range was checked against the
                // file length at open.
                let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&shard.path, e))?;
                shard.mmap = Some(mmap);
            }
        }
        let tag_along = TAG_ALONG_FILES
            .iter()
            .filter(|f| path.join(f).is_file())
            .map(|f| f.to_string())
            .collect();
        Ok(ModelDir {
            path: path.to_path_buf(),
            config,
            shards,
            tensors,
            tag_along,
        })
    }

    /// Tensor names in sorted order.
    pub fn tensor_names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name).map(|l| &l.info)
    }
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    /// The shard files, in index order.
    pub fn shard_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }
    /// Tokenizer and other tag-along files present in the folder (names, mergekit's order).
    pub fn tag_along_files(&self) -> &[String] {
        &self.tag_along
    }
    /// Whether tensor data can be read (false for `open_headers`).
    pub fn has_data(&self) -> bool {
        self.shards.iter().all(|s| s.mmap.is_some())
    }

    /// The tensor's little-endian bytes, as stored.
    pub fn raw(&self, name: &str) -> Result<&[u8]> {
        let located = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
        })?;
        let shard = &self.shards[located.shard];
        let mmap = shard.mmap.as_ref().ok_or_else(|| Error::HeaderOnly {
            path: shard.path.clone(),
            tensor: name.to_string(),
        })?;
        // Ranges were validated against the file length at open.
        let start = located.start as usize;
        Ok(&mmap[start..start + located.len as usize])
    }
    /// The tensor converted to f32 (one bulk pass over the mapped bytes).
    ///
    /// The tensor's pages are first announced to the kernel (`MADV_WILLNEED`: a cold read
    /// becomes one large readahead instead of a fault per 128 KiB), and afterwards dropped
    /// from this process's mapping (`MADV_DONTNEED`; they stay in the page cache), so the
    /// resident set holds only the tensors in flight, not every input byte read so far.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let n = self.info(name).map_or(0, |i| i.numel());
        self.read_f32_range(name, 0..n)
    }

    /// Elements `range` of a tensor (row-major order) converted to f32, with the same page
    /// handling as [`ModelDir::read_f32`] for just those bytes: large tensors are read in
    /// blocks without ever holding them whole.
    pub fn read_f32_range(&self, name: &str, range: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let bytes = self.raw(name)?;
        let located = &self.tensors[name];
        let dtype = located.info.dtype;
        let size = dtype.size();
        if range.start > range.end || range.end * size > bytes.len() {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "tensor `{name}`: elements {range:?} outside its {} elements",
                    bytes.len() / size
                ),
            ));
        }
        let bytes = &bytes[range.start * size..range.end * size];
        let first = located.start + (range.start * size) as u64;
        let span = bytes.len() as u64;
        // Small tensors skip the advice: two system calls and re-faulting the pages on the
        // next read cost more than the few pages they would release (a search re-reads
        // the same small models thousands of times). Blocks of large tensors get it.
        let advise = |f: &dyn Fn(&Mmap, usize, usize)| {
            if located.len < ADVISE_MIN {
                return;
            }
            if let Some(mmap) = &self.shards[located.shard].mmap {
                let (start, len) = page_range(first, span, mmap.len());
                if len > 0 {
                    f(mmap, start, len);
                }
            }
        };
        advise(&|m, start, len| {
            // Advice only: a failure costs speed, never correctness.
            let _ = m.advise_range(memmap2::Advice::WillNeed, start, len);
        });
        let out = bytes_to_f32(bytes, dtype);
        advise(&|m, start, len| {
            // SAFETY: the mapping is a read-only private map of a file that is never written
            // through it, so MADV_DONTNEED only unmaps the pages: a later access (this or a
            // neighbouring tensor sharing an edge page, from any thread) faults them in again
            // with the same file contents. No reference into the map is invalidated.
            let _ =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
        });
        Ok(out)
    }
    /// Ask the kernel to start reading elements `range` of a tensor in the background
    /// (`MADV_WILLNEED`), so that a cold read overlaps with the work before it. Advice only.
    pub fn prefetch(&self, name: &str, range: std::ops::Range<usize>) {
        let Some(located) = self.tensors.get(name) else {
            return;
        };
        let size = located.info.dtype.size() as u64;
        let first = located.start + range.start as u64 * size;
        let span = (range.end.saturating_sub(range.start) as u64 * size)
            .min(located.len.saturating_sub(range.start as u64 * size));
        if located.len < ADVISE_MIN {
            return;
        }
        if let Some(mmap) = &self.shards[located.shard].mmap {
            let (start, len) = page_range(first, span, mmap.len());
            if len > 0 {
                let _ = mmap.advise_range(memmap2::Advice::WillNeed, start, len);
            }
        }
    }

    /// Total bytes of tensor data.
    pub fn total_bytes(&self) -> u64 {
        self.tensors.values().map(|l| l.len).sum()
    }
}

/// Tensors smaller than this (bytes) are read without page cache advice.
const ADVISE_MIN: u64 = 1 << 20;

/// The page-aligned span (start, len) covering bytes `start..start + len` of a map of
/// `map_len` bytes.
fn page_range(start: u64, len: u64, map_len: usize) -> (usize, usize) {
    const PAGE: u64 = 4096;
    let first = start / PAGE * PAGE;
    let end = (start + len).div_ceil(PAGE) * PAGE;
    let end = end.min(map_len as u64);
    (first as usize, end.saturating_sub(first) as usize)
}

/// The shard files of `dir`, each with the tensor names the index assigns to it (None for
/// a single-file checkpoint).
fn shard_files(dir: &Path) -> Result<Vec<(PathBuf, Option<Vec<String>>)>> {
    let index_path = dir.join(INDEX_FILE);
    if index_path.is_file() {
        return read_index(dir, &index_path);
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        return Ok(vec![(single, None)]);
    }
    let hint = if dir.join("pytorch_model.bin").exists()
        || dir.join("pytorch_model.bin.index.json").exists()
    {
        " (found pytorch_model.bin: lamarck reads only safetensors; convert the checkpoint)"
    } else {
        ""
    };
    Err(Error::invalid(
        dir,
        format!("no {SINGLE_FILE} or {INDEX_FILE} in this folder{hint}"),
    ))
}

fn read_index(dir: &Path, index_path: &Path) -> Result<Vec<(PathBuf, Option<Vec<String>>)>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(index_path, format!("not valid JSON: {e}")))?;
    let map = root
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::invalid(index_path, "missing `weight_map` object"))?;
    // Shards in order of first appearance of their file name.
    let mut order: Vec<String> = Vec::new();
    let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::invalid(
                index_path,
                format!("weight_map entry for `{tensor}` is not a file name"),
            )
        })?;
        let plain = Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain || file.is_empty() {
            return Err(Error::invalid(
                index_path,
                format!("weight_map names `{file}` for `{tensor}`: shard names must be plain file names inside the folder"),
            ));
        }
        if !by_shard.contains_key(file) {
            order.push(file.to_string());
        }
        by_shard
            .entry(file.to_string())
            .or_default()
            .push(tensor.clone());
    }
    if order.is_empty() {
        return Err(Error::invalid(index_path, "`weight_map` is empty"));
    }
    order.sort();
    let mut out = Vec::with_capacity(order.len());
    for file in order {
        let shard_path = dir.join(&file);
        if !shard_path.is_file() {
            let first = by_shard[&file].first().cloned().unwrap_or_default();
            return Err(Error::invalid(
                index_path,
                format!(
                    "names shard `{file}` (for `{first}` and others) which does not exist in {}",
                    dir.display()
                ),
            ));
        }
        let names = by_shard.remove(&file).unwrap_or_default();
        out.push((shard_path, Some(names)));
    }
    Ok(out)
}

/// The tensors of one shard that belong to the model: all of them for a single file; for
/// an indexed shard, the ones the index assigns to it (each must be present).
fn select_tensors(
    header: &Header,
    expected: Option<&[String]>,
    dir: &Path,
) -> Result<Vec<(String, super::safetensors::TensorEntry)>> {
    let Some(expected) = expected else {
        return Ok(header
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect());
    };
    let mut out = Vec::with_capacity(expected.len());
    for name in expected {
        let entry = header.tensors.get(name).ok_or_else(|| {
            Error::invalid(
                dir.join(INDEX_FILE),
                format!(
                    "maps tensor `{name}` to {}, which does not contain it",
                    header.path.display()
                ),
            )
        })?;
        out.push((name.clone(), entry.clone()));
    }
    let extra = header.tensors.len() - expected.len();
    if extra > 0 {
        tracing::warn!(
            "{}: {extra} tensor(s) not listed in {INDEX_FILE}; ignored",
            header.path.display()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    /// The runner reads one folder from many threads.
    #[test]
    fn page_range_covers_the_tensor_and_stays_inside_the_map() {
        assert_eq!(super::page_range(0, 10, 100_000), (0, 4096));
        assert_eq!(super::page_range(4000, 200, 100_000), (0, 8192));
        assert_eq!(super::page_range(8192, 4096, 100_000), (8192, 4096));
        assert_eq!(super::page_range(8192, 100, 8292), (8192, 100));
    }

    #[test]
    fn model_dir_is_shareable_across_threads() {
        fn assert_sync_send<T: Sync + Send>() {}
        assert_sync_send::<super::ModelDir>();
    }
}
