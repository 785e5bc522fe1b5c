//! Writing a model folder: sharded safetensors under a temporary name, renamed when complete.
//!
//! A merge that fails halfway must leave nothing that looks like a model, and an existing
//! output must survive until its replacement is complete. So everything is written into a
//! hidden folder beside `out` (`.NAME.lamarck-tmp-PID`), files are fsynced and given
//! ordinary permissions (0644; the `safetensors`/candle writers produce 0600), and
//! [`ModelWriter::finish`] renames the folder into place. Dropping an unfinished writer
//! removes the temporary folder.
//!
//! Shards follow mergekit: tensors are buffered until the next one would push the shard
//! past `shard_size` bytes (a tensor larger than the limit gets a shard of its own), so
//! peak memory includes one shard's worth of data. One shard is written as
//! `model.safetensors`; several as `model-0000i-of-0000N.safetensors` plus
//! `model.safetensors.index.json` (`metadata.total_size`, `weight_map`).
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::hf_dir::{INDEX_FILE, SINGLE_FILE};
use super::safetensors::dtype_code;
/// The conversion lives beside its inverse (`safetensors::bytes_to_f32`); writers import it
/// from here.
pub use super::safetensors::f32_to_bytes;
use super::stream_writer::{sort_for_shard, Announced, Streaming};
use super::{DType, Error, Result};

/// mergekit's default `--out-shard-size` (bytes).
pub const DEFAULT_SHARD_SIZE: u64 = 5_000_000_000;

#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Maximum shard size in bytes.
    pub shard_size: u64,
    /// Replace an existing output folder.
    pub force: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            shard_size: DEFAULT_SHARD_SIZE,
            force: false,
        }
    }
}

struct Pending {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

pub struct ModelWriter {
    out: PathBuf,
    temp: PathBuf,
    opts: WriteOptions,
    pending: Vec<Pending>,
    pending_bytes: u64,
    /// Written shards: temporary file name and the tensors in it.
    shards: Vec<(PathBuf, Vec<String>)>,
    names: HashSet<String>,
    total_size: u64,
    finished: bool,
    /// Set by [`ModelWriter::expect_tensors`]: tensors stream to disk as they arrive.
    streaming: Option<Streaming>,
    /// Bytes received so far of tensors added in parts.
    received: std::collections::HashMap<String, u64>,
}

impl std::fmt::Debug for ModelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelWriter")
            .field("out", &self.out)
            .field("temp", &self.temp)
            .field("shards", &self.shards.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl ModelWriter {
    /// Refuses an existing `out` unless `force`; creates a temporary folder beside it.
    pub fn create(out: &Path, opts: WriteOptions) -> Result<ModelWriter> {
        if out.exists() && !opts.force {
            return Err(Error::OutputExists {
                path: out.to_path_buf(),
            });
        }
        if opts.shard_size == 0 {
            return Err(Error::invalid(out, "shard size must be at least 1 byte"));
        }
        let file_name = out
            .file_name()
            .ok_or_else(|| Error::invalid(out, "output path has no folder name"))?
            .to_string_lossy()
            .into_owned();
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        // pid + a per-process counter: unique even for several writers in one process.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = parent.join(format!(
            ".{file_name}.lamarck-tmp-{}-{n}",
            std::process::id()
        ));
        if temp.exists() {
            std::fs::remove_dir_all(&temp).map_err(|e| Error::io(&temp, e))?;
        }
        std::fs::create_dir(&temp).map_err(|e| Error::io(&temp, e))?;
        Ok(ModelWriter {
            out: out.to_path_buf(),
            temp,
            opts,
            pending: Vec::new(),
            pending_bytes: 0,
            shards: Vec::new(),
            names: HashSet::new(),
            total_size: 0,
            finished: false,
            streaming: None,
            received: std::collections::HashMap::new(),
        })
    }

    /// Announce every tensor that will be added (name, dtype, shape, in the order they
    /// will arrive; call before the first [`ModelWriter::add_tensor`]). The writer then
    /// streams each tensor to its final place in its shard on a background thread instead
    /// of buffering whole shards in memory; the files are byte-identical to the buffered
    /// ones. Adding a tensor that was not announced, or finishing with one missing, is an
    /// error.
    pub fn expect_tensors(&mut self, tensors: &[Announced]) -> Result<()> {
        if !self.names.is_empty() || self.streaming.is_some() {
            return Err(Error::invalid(
                &self.out,
                "expect_tensors must be called once, before any tensor is added",
            ));
        }
        self.streaming = Some(Streaming::start(
            &self.temp,
            tensors,
            self.opts.shard_size,
            |path, entries| header_bytes(path, entries),
        )?);
        Ok(())
    }

    /// Bound the bytes of tensors waiting for the writer thread (streaming only; default
    /// [`super::stream_writer::DEFAULT_QUEUE_BYTES`]).
    pub fn set_queue_bytes(&mut self, bytes: u64) {
        if let Some(s) = &mut self.streaming {
            s.set_queue_bytes(bytes);
        }
    }

    /// The temporary folder (for config.json, tokenizer files, README.md...).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The final output path.
    pub fn out_path(&self) -> &Path {
        &self.out
    }

    /// Add one tensor (little-endian bytes of `dtype`).
    pub fn add_tensor(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        data: Vec<u8>,
    ) -> Result<()> {
        let expected = shape.iter().product::<usize>() * dtype.size();
        if data.len() != expected {
            return Err(Error::BadTensor {
                path: self.out.clone(),
                tensor: name.to_string(),
                message: format!(
                    "{} bytes given for shape {shape:?} {}, which needs {expected}",
                    data.len(),
                    dtype.hf_name()
                ),
            });
        }
        if !self.names.insert(name.to_string()) {
            return Err(Error::BadTensor {
                path: self.out.clone(),
                tensor: name.to_string(),
                message: "added twice".into(),
            });
        }
        let len = data.len() as u64;
        if let Some(streaming) = &mut self.streaming {
            streaming.add(&self.out, name, dtype, shape, data)?;
            self.total_size += len;
            return Ok(());
        }
        if !self.pending.is_empty() && self.pending_bytes + len > self.opts.shard_size {
            self.flush_shard()?;
        }
        self.pending_bytes += len;
        self.total_size += len;
        self.pending.push(Pending {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data,
        });
        Ok(())
    }

    /// Add elements `start..start + data.len() / dtype.size()` of a tensor announced with
    /// [`ModelWriter::expect_tensors`] (streaming only): large tensors go to disk in parts
    /// as they are merged. Parts may come in any order; each element must come once, and a
    /// tensor counts as added when all its bytes have arrived.
    pub fn add_tensor_part(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[usize],
        start: usize,
        data: Vec<u8>,
    ) -> Result<()> {
        let total = (shape.iter().product::<usize>() * dtype.size()) as u64;
        let offset = (start * dtype.size()) as u64;
        let len = data.len() as u64;
        let bad = |message: String| Error::BadTensor {
            path: self.out.clone(),
            tensor: name.to_string(),
            message,
        };
        if offset + len > total || len % dtype.size() as u64 != 0 {
            return Err(bad(format!(
                "part of {len} bytes at byte {offset} does not fit shape {shape:?} {}",
                dtype.hf_name()
            )));
        }
        let Some(streaming) = &mut self.streaming else {
            return Err(bad(
                "tensor parts need announced tensors (expect_tensors)".into()
            ));
        };
        let received = self.received.entry(name.to_string()).or_insert(0);
        if *received + len > total || (*received == total && self.names.contains(name)) {
            return Err(bad("added twice".into()));
        }
        streaming.add_part(&self.out, name, dtype, shape, offset, data)?;
        *received += len;
        self.total_size += len;
        if *received == total && !self.names.insert(name.to_string()) {
            return Err(bad("added twice".into()));
        }
        Ok(())
    }

    /// Write the pending tensors as one shard file (temporary name).
    fn flush_shard(&mut self) -> Result<()> {
        let mut tensors = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        // Larger elements first keeps every tensor aligned to its element size (as the
        // safetensors crate does); then by name, so the file does not depend on add order.
        sort_for_shard(&mut tensors, |t| (t.dtype, t.name.as_str()));
        let path = self
            .temp
            .join(format!("shard-{}.tmp", self.shards.len() + 1));
        write_safetensors(&path, &tensors)?;
        self.shards
            .push((path, tensors.into_iter().map(|t| t.name).collect()));
        Ok(())
    }

    /// Flush, write the index, fsync, rename into place. Returns the final path.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(mut streaming) = self.streaming.take() {
            streaming.finish(&self.out, self.names.len())?;
            self.shards = std::mem::take(&mut streaming.shards);
        }
        if !self.pending.is_empty() {
            self.flush_shard()?;
        }
        if self.shards.is_empty() {
            return Err(Error::invalid(&self.out, "no tensors were written"));
        }
        let n = self.shards.len();
        let mut weight_map = BTreeMap::new();
        for (i, (temp_file, names)) in self.shards.iter().enumerate() {
            let final_name = if n == 1 {
                SINGLE_FILE.to_string()
            } else {
                format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
            };
            let dest = self.temp.join(&final_name);
            std::fs::rename(temp_file, &dest).map_err(|e| Error::io(&dest, e))?;
            for name in names {
                weight_map.insert(name.clone(), final_name.clone());
            }
        }
        if n > 1 {
            let index = json!({
                "metadata": {"total_size": self.total_size},
                "weight_map": weight_map.into_iter().map(|(k, v)| (k, Value::from(v))).collect::<Map<_, _>>(),
            });
            let path = self.temp.join(INDEX_FILE);
            let mut text = serde_json::to_string_pretty(&index)
                .map_err(|e| Error::invalid(&path, e.to_string()))?;
            text.push('\n');
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        seal_folder(&self.temp)?;
        self.move_into_place()?;
        self.finished = true;
        Ok(self.out.clone())
    }

    fn move_into_place(&self) -> Result<()> {
        let old = if self.out.exists() {
            let name = self.temp.with_file_name(format!(
                "{}-old",
                self.temp
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::rename(&self.out, &name).map_err(|e| Error::io(&self.out, e))?;
            Some(name)
        } else {
            None
        };
        if let Err(e) = std::fs::rename(&self.temp, &self.out) {
            if let Some(old) = &old {
                let _ = std::fs::rename(old, &self.out);
            }
            return Err(Error::io(&self.out, e));
        }
        if let Some(parent) = self.out.parent() {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            sync_dir(parent)?;
        }
        if let Some(old) = old {
            let removed = if old.is_dir() {
                std::fs::remove_dir_all(&old)
            } else {
                std::fs::remove_file(&old)
            };
            if let Err(e) = removed {
                tracing::warn!(
                    "could not remove the replaced folder {}: {e}",
                    old.display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for ModelWriter {
    fn drop(&mut self) {
        // Stop the writer thread before its files are removed.
        drop(self.streaming.take());
        if !self.finished && self.temp.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.temp) {
                tracing::warn!("could not remove {}: {e}", self.temp.display());
            }
        }
    }
}

/// A safetensors header for tensors stored in this order: the 8-byte length, then JSON
/// (`{"format": "pt"}` metadata), padded with spaces to a multiple of 8 bytes.
pub(super) fn header_bytes(
    path: &Path,
    tensors: &[(&str, DType, &[usize], u64)],
) -> Result<Vec<u8>> {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, dtype, shape, len) in tensors {
        let end = offset + len;
        header.insert(
            name.to_string(),
            json!({"dtype": dtype_code(*dtype), "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::invalid(path, e.to_string()))?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// One safetensors file: header, then the data in header order.
fn write_safetensors(path: &Path, tensors: &[Pending]) -> Result<()> {
    let entries: Vec<(&str, DType, &[usize], u64)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.dtype,
                t.shape.as_slice(),
                t.data.len() as u64,
            )
        })
        .collect();
    let header = header_bytes(path, &entries)?;
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| Error::io(path, e);
    w.write_all(&header).map_err(io)?;
    for t in tensors {
        w.write_all(&t.data).map_err(io)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(io)
}

/// Give every file in `dir` mode 0644 and the folder 0755, fsync them all.
fn seal_folder(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_file() {
            set_mode(&path, 0o644)?;
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
    }
    set_mode(dir, 0o755)?;
    sync_dir(dir)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path, e))
}
#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Parse a shard size for `--shard-size`: a number of bytes with an optional suffix,
/// case-insensitive and decimal as in mergekit: `K` = ×1e3, `M` = ×1e6, `G` = ×1e9 (a
/// trailing `B` is allowed: `5GB`), and mergekit's own `B` alone = ×1e9 ("billion":
/// `5B` = 5e9 bytes). A plain number is bytes. Fractions are allowed (`1.5G`).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let split = upper
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(upper.len());
    let (number, suffix) = upper.split_at(split);
    let factor: f64 = match suffix.trim() {
        "" => 1.0,
        "K" | "KB" => 1e3,
        "M" | "MB" => 1e6,
        "G" | "GB" | "B" => 1e9,
        other => {
            return Err(format!(
                "size `{text}`: unknown suffix `{other}` (use a byte count, or K, M, G = ×1e3, ×1e6, ×1e9)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("size `{text}` is not a number with an optional K/M/G suffix"))?;
    let bytes = (value * factor).round();
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(format!(
            "size `{text}` must be between 1 byte and 1.8e19 bytes"
        ));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_suffixes() {
        assert_eq!(parse_size("5G"), Ok(5_000_000_000));
        assert_eq!(parse_size("5gb"), Ok(5_000_000_000));
        assert_eq!(parse_size("5B"), Ok(5_000_000_000));
        assert_eq!(parse_size("1.5M"), Ok(1_500_000));
        assert_eq!(parse_size("300k"), Ok(300_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5T").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("").is_err());
    }
}
