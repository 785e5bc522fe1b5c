//! The per-item response cache of a run (`responses.jsonl`): one line per scored item,
//! keyed by (sha256 of the merged weights, sha256 of the task file and its split's data
//! file, split, item id, decoding settings). A candidate whose weights equal an earlier
//! candidate's or a parent's costs no model call; a resumed run re-uses every item already
//! scored, including those of a candidate that was killed before its row was written.
//!
//! Append-only and fsynced after every batch of lines; a torn last line (killed while
//! writing) is cut off when the cache is opened again.
use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::records::append_lines;
use super::{Error, Result};

/// What the cache keeps of one item's outcome (enough for `items.jsonl` and the scores).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedItem {
    /// The task's name (`task:` in the task file).
    pub task: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    /// Every metric of the item (`exact_match`, `acc`, `acc_norm`, …).
    pub metrics: BTreeMap<String, f64>,
}

/// The key of one item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ItemKey {
    /// sha256 of the merged weights (as in `candidates.csv`).
    pub weights: String,
    /// sha256 of the task file text and the split's data file.
    pub task: String,
    pub split: String,
    pub doc_id: usize,
    /// Evaluation settings that can change an outcome: dtype, device, batch size.
    pub decoding: String,
}

#[derive(Serialize, Deserialize)]
struct Line {
    #[serde(flatten)]
    key: ItemKey,
    item: CachedItem,
}

/// The cache in memory, backed by its file (or by nothing: [`ResponseCache::in_memory`]).
#[derive(Debug, Default)]
pub struct ResponseCache {
    path: Option<PathBuf>,
    map: HashMap<ItemKey, CachedItem>,
    /// Items answered from the cache since it was opened.
    pub hits: u64,
    /// Items the model was run on since it was opened.
    pub misses: u64,
    /// A worker's read-only view: the file is read (never written) and what is inserted is
    /// kept here, in insertion order, to be handed to the coordinator.
    journal: Option<Vec<(ItemKey, CachedItem)>>,
    /// Bytes of the file already read (a read-only view reads only what was appended since).
    read_to: u64,
}

impl ResponseCache {
    /// A cache that is not written anywhere.
    pub fn in_memory() -> ResponseCache {
        ResponseCache::default()
    }

    /// Open (or create) the cache file; cut off a torn last line.
    pub fn open(path: &Path) -> Result<ResponseCache> {
        let mut cache = ResponseCache {
            path: Some(path.to_path_buf()),
            ..ResponseCache::default()
        };
        if !path.exists() {
            return Ok(cache);
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete != text.len() {
            tracing::warn!(
                "{}: dropping a torn last line (the run was killed while writing it)",
                path.display()
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            f.set_len(complete as u64)
                .and_then(|_| f.sync_all())
                .map_err(|e| Error::io(path, e))?;
        }
        for (i, line) in text[..complete].lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let l: Line = serde_json::from_str(line).map_err(|e| Error::Records {
                path: path.to_path_buf(),
                message: format!(
                    "line {}: not a cache line ({e}); delete the file to score every item again",
                    i + 1
                ),
            })?;
            cache.map.insert(l.key, l.item);
        }
        Ok(cache)
    }

    /// A worker's view of the run's cache: reads the file (a torn last line is skipped, not
    /// cut: the coordinator owns the file) and never writes it; inserted items go to the
    /// journal ([`ResponseCache::take_journal`]).
    pub fn read_only(path: &Path) -> Result<ResponseCache> {
        let mut cache = ResponseCache {
            path: Some(path.to_path_buf()),
            journal: Some(Vec::new()),
            ..ResponseCache::default()
        };
        cache.refresh()?;
        Ok(cache)
    }

    /// Read only what the coordinator appended since the last read (read-only views).
    pub fn refresh(&mut self) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let (Some(path), Some(_)) = (&self.path, &self.journal) else {
            return Ok(());
        };
        let Ok(mut f) = std::fs::File::open(path) else {
            return Ok(());
        };
        let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        if len <= self.read_to {
            return Ok(());
        }
        let mut bytes = Vec::new();
        f.seek(SeekFrom::Start(self.read_to))
            .and_then(|_| f.read_to_end(&mut bytes))
            .map_err(|e| Error::io(path, e))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let text = String::from_utf8_lossy(&bytes[..complete]);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let l: Line = serde_json::from_str(line).map_err(|e| Error::Records {
                path: path.clone(),
                message: format!(
                    "not a cache line ({e}); delete the file to score every item again"
                ),
            })?;
            self.map.insert(l.key, l.item);
        }
        self.read_to += complete as u64;
        Ok(())
    }

    /// The items inserted since the last call, in insertion order (read-only views).
    pub fn take_journal(&mut self) -> Vec<(ItemKey, CachedItem)> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &ItemKey) -> Option<&CachedItem> {
        self.map.get(key)
    }

    /// Add freshly scored items and persist them (one write, one fsync).
    pub fn insert(&mut self, items: Vec<(ItemKey, CachedItem)>) -> Result<()> {
        if let Some(journal) = &mut self.journal {
            journal.extend(items.iter().cloned());
        } else if let Some(path) = &self.path {
            let lines: Vec<String> = items
                .iter()
                .map(|(key, item)| {
                    serde_json::to_string(&Line {
                        key: key.clone(),
                        item: item.clone(),
                    })
                    .map_err(|e| Error::Invalid(format!("cache line: {e}")))
                })
                .collect::<Result<_>>()?;
            append_lines(path, &lines)?;
        }
        self.map.extend(items);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(doc_id: usize) -> ItemKey {
        ItemKey {
            weights: "w".into(),
            task: "t".into(),
            split: "dev".into(),
            doc_id,
            decoding: "f32/cpu/8".into(),
        }
    }

    #[test]
    fn items_persist_and_a_torn_line_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("responses.jsonl");
        let item = CachedItem {
            task: "x".into(),
            target: "1".into(),
            generated: Some("1".into()),
            metrics: BTreeMap::from([("exact_match".to_string(), 1.0)]),
        };
        let mut c = ResponseCache::open(&p).unwrap();
        c.insert(vec![(key(0), item.clone()), (key(3), item.clone())])
            .unwrap();
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str("{\"weights\":\"w\",\"ta");
        std::fs::write(&p, &text).unwrap();
        let mut c = ResponseCache::open(&p).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&key(3)), Some(&item));
        assert_eq!(c.get(&key(1)), None);
        c.insert(vec![(key(1), item.clone())]).unwrap();
        assert_eq!(ResponseCache::open(&p).unwrap().len(), 3);
    }
}
