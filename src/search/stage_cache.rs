//! The search's stage cache: stage outputs in their output dtype (a bf16 stage holds 2
//! bytes per element), in memory up to `--cache-mem`; beyond it the least recently used
//! ones spill to a disk cache (`--cache-dir`, default `<run>/stage-cache/`) as one
//! safetensors file per stage, named by its stage hash (`<hash>.safetensors`), and are
//! memory-mapped back. The disk cache is bounded too (`--cache-disk`, least recently used
//! file removed first).
//!
//! **Larger than the budget.** A stage whose output (known from its plan) exceeds
//! `--cache-mem` is never built in memory: the materializer streams it into its cache file
//! as it is merged ([`super::stage_file::StageFileSink`], [`StageCache::stream_dir`]) and
//! maps it back, so peak memory stays at the merge's blocks and the writer's queue.
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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::materialize::StageOutput;
pub use super::stage_file::Mapped;
use super::stage_file::{open_file, write_file};
use super::{Error, Result};
use crate::merge::run::MemorySink;
use crate::model::DType;
use crate::plan::PlannedStage;

/// A stage output's tensors: in memory, or a memory-mapped file of the disk cache.
#[derive(Debug)]
pub enum Held {
    Memory(MemorySink),
    Disk(Mapped),
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
    /// Stage outputs written to disk (spilled from memory or streamed there as merged),
    /// and read back from it.
    pub spilled: u64,
    /// Of those, stages larger than the memory budget, streamed to disk as they were
    /// merged (never whole in memory).
    pub streamed: u64,
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
                let _ = match path.is_dir() {
                    true => std::fs::remove_dir_all(&path),
                    false => std::fs::remove_file(&path),
                };
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

    /// Where a freshly merged stage of `bytes` should be streamed instead of being built in
    /// memory: the disk cache's folder when the stage is larger than the memory budget and
    /// fits the disk budget (`None`: build it in memory, as a stage that fits in neither is
    /// handed to the next stage without being kept).
    pub fn stream_dir(&self, bytes: u64) -> Option<&Path> {
        match &self.disk {
            Some((dir, limit)) if bytes > self.mem_limit && bytes <= *limit => Some(dir),
            _ => None,
        }
    }

    /// Keep a stage that was streamed to the disk cache ([`StageCache::stream_dir`]) as a
    /// disk entry, then evict to fit the disk budget.
    pub fn store_streamed(&mut self, out: Arc<StageOutput>) -> Result<Arc<StageOutput>> {
        let Held::Disk(mapped) = &out.tensors else {
            return self.store(out);
        };
        self.tick += 1;
        self.stats.spilled += 1;
        self.stats.streamed += 1;
        let path = mapped.path.clone();
        match self.entries.iter().position(|e| e.key == out.key) {
            // merged again while held (not asked for): the new file replaced the old one
            Some(i) => self.entries[i].tick = self.tick,
            None => self.entries.push(Entry {
                key: out.key.clone(),
                bytes: out.bytes,
                tick: self.tick,
                slot: Slot::Disk {
                    path,
                    mapped: Some(out.clone()),
                },
            }),
        }
        self.enforce()?;
        Ok(out)
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
