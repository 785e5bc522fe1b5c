//! The search's stage cache: stage outputs in their output dtype (a bf16 stage holds 2
//! bytes per element), in memory up to `--cache-mem`; beyond it the least recently used
//! ones spill to a disk cache (`--cache-dir`, default `<run>/stage-cache/`) as one
//! safetensors file per stage, named by its stage hash (`<hash>.safetensors`), and are
//! memory-mapped back. The disk cache is bounded too (`--cache-disk`, least recently used
//! file removed first).
//!
//! **Complete or absent.** A file is written under a hidden temporary name
//! (`.<hash>.lamarck-tmp-<pid>`), fsynced and renamed; one that a killed process left is
//! removed when the cache is opened. A `<hash>.safetensors` file is trusted only when its
//! header is valid, records the same hash (`__metadata__.lamarck_stage`) and its tensor
//! data covers the file exactly; anything else is removed with a warning.
//!
//! **Reachable.** A stage hash covers the stage's text after gene substitution and, through
//! its inputs' hashes, everything upstream, so an entry is reachable exactly when some
//! candidate the search can still ask for has a stage with that hash. That set is not known
//! ahead (the optimizer's next points are), so lamarck keeps the recently used ones: an
//! entry is dropped when it is evicted (memory → disk, disk → removed), and at start the
//! files of the folder are ordered by modification time and the oldest removed until the
//! folder fits `--cache-disk`. A resumed run re-uses every file that fits. Files whose
//! names are not lamarck's are left alone (the folder may be shared).
//!
//! Reading a stage back: [`Held::raw`] gives the stored bytes without a copy (a slice of
//! the memory buffer or of the map); kernels convert the blocks they read to f32.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use super::materialize::StageOutput;
use super::{Error, Result};
use crate::merge::run::MemorySink;
use crate::model::safetensors::{dtype_code, read_header};
use crate::model::DType;
use crate::plan::PlannedStage;

/// Metadata key holding the stage hash.
const META_KEY: &str = "lamarck_stage";
/// Metadata key holding the folder of the stage's tokenizer files.
const META_TOKENIZER: &str = "lamarck_tokenizer_dir";

/// A stage output's tensors: in memory, or a memory-mapped file of the disk cache.
#[derive(Debug)]
pub enum Held {
    Memory(MemorySink),
    Disk(Mapped),
}

/// One `<hash>.safetensors` file of the disk cache, mapped.
pub struct Mapped {
    pub path: PathBuf,
    mmap: Mmap,
    /// name → (shape, dtype, byte range in the file).
    tensors: BTreeMap<String, (Vec<usize>, DType, std::ops::Range<usize>)>,
    tokenizer_dir: PathBuf,
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapped")
            .field("path", &self.path)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Held {
    /// Tensor names in order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Held::Memory(m) => m.tensors.keys().map(String::as_str).collect(),
            Held::Disk(d) => d.tensors.keys().map(String::as_str).collect(),
        }
    }

    /// A tensor's shape, dtype and stored little-endian bytes, without a copy.
    pub fn raw(&self, name: &str) -> Option<(&[usize], DType, &[u8])> {
        match self {
            Held::Memory(m) => m
                .tensors
                .get(name)
                .map(|(s, d, b)| (s.as_slice(), *d, b.as_slice())),
            Held::Disk(d) => d
                .tensors
                .get(name)
                .map(|(s, t, r)| (s.as_slice(), *t, &d.mmap[r.clone()])),
        }
    }

    /// Bytes of tensor data.
    pub fn bytes(&self) -> u64 {
        match self {
            Held::Memory(m) => m.bytes(),
            Held::Disk(d) => d.tensors.values().map(|t| t.2.len() as u64).sum(),
        }
    }

    /// After a large read of a mapped tensor, drop its pages from this process (they stay in
    /// the page cache), so that reading a spilled stage does not grow the resident set.
    pub fn release(&self, name: &str, range: std::ops::Range<usize>) {
        const MIN: usize = 1 << 20;
        let Held::Disk(d) = self else { return };
        let Some((_, dtype, r)) = d.tensors.get(name) else {
            return;
        };
        let size = dtype.size();
        let start = r.start + range.start * size;
        let end = (r.start + range.end * size).min(r.end);
        if end <= start || end - start < MIN {
            return;
        }
        let page = 4096;
        let first = start.div_ceil(page) * page;
        let last = end / page * page;
        if last > first {
            // SAFETY: a read-only private map of a file nobody writes through it (cache
            // files are complete before they are renamed into place and never changed):
            // MADV_DONTNEED only unmaps the pages, a later access faults them in again
            // with the same contents; no reference into the map is invalidated.
            let _ = unsafe {
                d.mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    first,
                    last - first,
                )
            };
        }
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Write `sink` as `dir/<key>.safetensors`: temporary name, fsync, rename.
fn write_file(dir: &Path, key: &str, sink: &MemorySink, tokenizer_dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!("{key}.safetensors"));
    let tmp = dir.join(format!(".{key}.lamarck-tmp-{}", std::process::id()));
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({
            "format": "pt",
            META_KEY: key,
            META_TOKENIZER: tokenizer_dir.to_string_lossy(),
        }),
    );
    let mut offset = 0usize;
    for (name, (shape, dtype, bytes)) in &sink.tensors {
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": dtype_code(*dtype),
                "shape": shape,
                "data_offsets": [offset, offset + bytes.len()],
            }),
        );
        offset += bytes.len();
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let io = |e| Error::io(&tmp, e);
    let file = File::create(&tmp).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&text).map_err(io)?;
    for (_, _, bytes) in sink.tensors.values() {
        w.write_all(bytes).map_err(io)?;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Open and verify a cache file: a valid header naming `key`, data covering the file.
fn open_file(path: &Path, key: &str) -> Result<Mapped> {
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

enum Slot {
    Memory(Arc<StageOutput>),
    /// A file of the disk cache, mapped once a stage asked for it.
    Disk {
        path: PathBuf,
        mapped: Option<Arc<StageOutput>>,
    },
}

struct Entry {
    key: String,
    bytes: u64,
    tick: u64,
    slot: Slot,
}

/// What the cache did, for the run's summary and `--dry-run`'s comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Largest bytes held in memory / on disk at once.
    pub peak_mem: u64,
    pub peak_disk: u64,
    /// Stage outputs written to disk, and read back from it.
    pub spilled: u64,
    pub disk_hits: u64,
}

/// Stage outputs within a memory budget and an optional disk budget.
pub struct StageCache {
    entries: Vec<Entry>,
    mem_limit: u64,
    disk: Option<(PathBuf, u64)>,
    tick: u64,
    pub stats: CacheStats,
}

impl StageCache {
    /// Memory only.
    pub fn new(mem_limit: u64) -> StageCache {
        StageCache {
            entries: Vec::new(),
            mem_limit,
            disk: None,
            tick: 0,
            stats: CacheStats::default(),
        }
    }

    /// Add a disk cache in `dir` (created if missing) bounded by `disk_limit` bytes: remove
    /// temporary files of killed processes and broken cache files, then the oldest files
    /// beyond the budget; the rest are entries a resumed run re-uses.
    pub fn with_disk(mut self, dir: &Path, disk_limit: u64) -> Result<StageCache> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.starts_with('.') && name.contains(".lamarck-tmp-") {
                tracing::info!(
                    "stage cache: removing {} (left by a killed run)",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(key) = name.strip_suffix(".safetensors").filter(|k| is_hash(k)) else {
                continue;
            };
            match open_file(&path, key) {
                Ok(m) => {
                    let mtime = e.metadata().and_then(|m| m.modified()).ok();
                    found.push((
                        mtime,
                        key.to_string(),
                        path,
                        m.tensors.values().map(|t| t.2.len() as u64).sum::<u64>(),
                    ));
                }
                Err(err) => {
                    tracing::warn!("stage cache: removing {}: {err}", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found.sort();
        for (_, key, path, bytes) in found {
            self.tick += 1;
            self.entries.push(Entry {
                key,
                bytes,
                tick: self.tick,
                slot: Slot::Disk { path, mapped: None },
            });
        }
        self.disk = Some((dir.to_path_buf(), disk_limit));
        self.enforce()?;
        self.stats.peak_disk = self.disk_bytes();
        Ok(self)
    }

    /// Bytes held in memory.
    pub fn mem_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Memory(_)))
            .map(|e| e.bytes)
            .sum()
    }

    /// Bytes held on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Disk { .. }))
            .map(|e| e.bytes)
            .sum()
    }

    /// Keys of the entries held, memory and disk.
    pub fn keys(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.key.as_str()).collect()
    }

    /// The output recorded under `key`, if held; a disk entry is mapped (and verified) on
    /// first use, its config and vocabulary taken from the planned `stage`.
    pub fn lookup(&mut self, key: &str, stage: &PlannedStage) -> Option<Arc<StageOutput>> {
        self.tick += 1;
        let tick = self.tick;
        let i = self.entries.iter().position(|e| e.key == key)?;
        let entry = &mut self.entries[i];
        entry.tick = tick;
        match &mut entry.slot {
            Slot::Memory(o) => Some(o.clone()),
            Slot::Disk {
                mapped: Some(o), ..
            } => {
                self.stats.disk_hits += 1;
                Some(o.clone())
            }
            Slot::Disk { path, mapped } => match open_file(path, key) {
                Ok(m) => {
                    let out = Arc::new(StageOutput {
                        key: key.to_string(),
                        config: stage.output_config.clone(),
                        tokenizer: stage.plan.output_tokenizer.clone(),
                        tokenizer_dir: m.tokenizer_dir.clone(),
                        bytes: entry.bytes,
                        tensors: Held::Disk(m),
                    });
                    *mapped = Some(out.clone());
                    self.stats.disk_hits += 1;
                    Some(out)
                }
                Err(err) => {
                    tracing::warn!("stage cache: removing {}: {err}", path.display());
                    let _ = std::fs::remove_file(&*path);
                    self.entries.remove(i);
                    None
                }
            },
        }
    }

    /// Keep a freshly merged output (in memory), then evict to fit the budgets. Returns the
    /// output as the cache now holds it (the mapped file when it spilled at once), so the
    /// caller can drop the in-memory copy instead of keeping it alive for later stages.
    pub fn store(&mut self, out: Arc<StageOutput>) -> Result<Arc<StageOutput>> {
        self.tick += 1;
        if self.entries.iter().any(|e| e.key == out.key) {
            return Ok(out);
        }
        let key = out.key.clone();
        self.entries.push(Entry {
            key: key.clone(),
            bytes: out.bytes,
            tick: self.tick,
            slot: Slot::Memory(out.clone()),
        });
        self.enforce()?;
        Ok(self
            .entries
            .iter()
            .find(|e| e.key == key)
            .and_then(|e| match &e.slot {
                Slot::Memory(o) => Some(o.clone()),
                Slot::Disk { mapped, .. } => mapped.clone(),
            })
            .unwrap_or(out))
    }

    fn enforce(&mut self) -> Result<()> {
        self.stats.peak_mem = self.stats.peak_mem.max(self.mem_bytes());
        while self.mem_bytes() > self.mem_limit {
            let Some(i) = self.oldest(true) else { break };
            let entry = self.entries.remove(i);
            let Slot::Memory(out) = entry.slot else {
                continue;
            };
            let Some((dir, limit)) = &self.disk else {
                continue;
            };
            let Held::Memory(sink) = &out.tensors else {
                continue;
            };
            if entry.bytes > *limit {
                continue;
            }
            let path = write_file(dir, &entry.key, sink, &out.tokenizer_dir)?;
            let mapped = open_file(&path, &entry.key)?;
            self.stats.spilled += 1;
            let spilled = Arc::new(StageOutput {
                key: out.key.clone(),
                config: out.config.clone(),
                tokenizer: out.tokenizer.clone(),
                tokenizer_dir: out.tokenizer_dir.clone(),
                bytes: out.bytes,
                tensors: Held::Disk(mapped),
            });
            self.entries.push(Entry {
                key: entry.key,
                bytes: entry.bytes,
                tick: entry.tick,
                slot: Slot::Disk {
                    path,
                    mapped: Some(spilled),
                },
            });
        }
        if let Some((_, limit)) = &self.disk {
            let limit = *limit;
            self.stats.peak_disk = self.stats.peak_disk.max(self.disk_bytes());
            while self.disk_bytes() > limit {
                let Some(i) = self.oldest(false) else { break };
                if let Slot::Disk { path, .. } = &self.entries[i].slot {
                    if let Err(e) = std::fs::remove_file(path) {
                        tracing::warn!("stage cache: could not remove {}: {e}", path.display());
                    }
                }
                self.entries.remove(i);
            }
        }
        Ok(())
    }

    /// The least recently used entry in memory (`memory`) or on disk.
    fn oldest(&self, memory: bool) -> Option<usize> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.slot, Slot::Memory(_)) == memory)
            .min_by_key(|(_, e)| e.tick)
            .map(|(i, _)| i)
    }
}
