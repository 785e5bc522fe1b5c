//! The work queue of a run with workers: plain files in `results/<run>/queue/`, so that it
//! works on one machine and on a shared file system alike.
//!
//! - `todo/<key>.json`: a task (written under a temporary name and renamed when complete).
//! - `claimed/<key>.<worker>.json`: a worker claimed the task by renaming it out of `todo/`.
//!   `rename` is atomic, so of two workers racing for a task exactly one gets it.
//! - `done/<key>.<worker>.json`: the worker's result (temporary name, then renamed).
//! - `workers/<worker>.beat`: rewritten every [`BEAT`] by a worker while it lives; a claim
//!   whose worker's beat is older than the timeout goes back to `todo/`.
//! - `coordinator.beat`: the same for the coordinator; a worker whose coordinator stopped
//!   beating exits (an orphaned Slurm job ends by itself).
//! - `stop`: the coordinator is done; workers exit.
//!
//! Only the coordinator appends to the run's records; a result handed back twice (a slow
//! worker whose claim was given to another) is recorded once.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::cache::{CachedItem, ItemKey};
use super::{Error, Result};

/// How often workers and the coordinator rewrite their beat files.
pub const BEAT: Duration = Duration::from_secs(2);

/// What a worker is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Task {
    /// Merge and score candidate `id` (racing against `incumbent` when given).
    Candidate {
        id: u64,
        generation: u64,
        genes: Vec<f64>,
        incumbent: Option<Incumbent>,
    },
    /// Score a parent model (a model reference of the recipe).
    Parent { model: String },
}

impl Task {
    /// The file name's key: the starting point first, then the parents, then candidates
    /// by id (workers claim in name order).
    pub fn key(&self, parent_index: usize) -> String {
        match self {
            Task::Candidate { id: 0, .. } => "0-c0000000000".to_string(),
            Task::Parent { .. } => format!("1-p{parent_index:04}"),
            Task::Candidate { id, .. } => format!("2-c{id:010}"),
        }
    }
    /// `items.jsonl`'s name for the scored model.
    pub fn who(&self) -> String {
        match self {
            Task::Candidate { id, .. } => id.to_string(),
            Task::Parent { model } => format!("parent:{model}"),
        }
    }
}

/// The racing incumbent: its id, fitness and score per (objective, doc id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Incumbent {
    pub id: u64,
    pub fitness: f64,
    pub scores: Vec<(usize, usize, f64)>,
}

/// One scored item as handed back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemOut {
    pub objective: usize,
    pub doc_id: usize,
    pub score: f64,
    pub cached: bool,
    pub item: CachedItem,
}

/// A stopped race (see [`super::racing::Verdict`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stopped {
    pub items: usize,
    pub estimate: f64,
    pub diff: f64,
    pub bound: f64,
}

/// What a worker hands back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    pub task: Task,
    pub worker: String,
    /// Unix seconds: when the task was claimed and when the result was complete.
    pub claimed_at: f64,
    pub finished_at: f64,
    /// Ok: the scored model; Err: why the task failed (the coordinator stops the run,
    /// unless `refused`).
    pub result: std::result::Result<Scored, String>,
    /// The error is a merge a method refused (a gene combination out of its bounds): the
    /// coordinator records a failed candidate and goes on.
    #[serde(default)]
    pub refused: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scored {
    /// sha256 of the weights (the cache key).
    pub hash: String,
    pub merge_s: f64,
    pub eval_s: f64,
    /// Sorted by (objective, doc id).
    pub items: Vec<ItemOut>,
    pub stopped: Option<Stopped>,
    /// Items the model ran on, in the order the worker's cache took them (the coordinator
    /// appends them to `responses.jsonl` in this order).
    pub fresh: Vec<(ItemKey, CachedItem)>,
    /// Its `merges.csv` cells after the id.
    #[serde(default)]
    pub merge_cells: String,
}

pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The queue folder of a run.
#[derive(Debug, Clone)]
pub struct Queue {
    pub root: PathBuf,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Files of `dir` ending in `.json`, sorted by name (none when `dir` is absent).
fn json_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| !name(p).starts_with('.'))
        .collect();
    out.sort();
    Ok(out)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `claimed/<key>.<worker>.json` → (key, worker).
fn split_claim(p: &Path) -> Option<(String, String)> {
    let n = name(p);
    let stem = n.strip_suffix(".json")?;
    let (key, worker) = stem.split_once('.')?;
    Some((key.to_string(), worker.to_string()))
}

/// Write `value` as JSON under a hidden temporary name in `dir`, then rename it to `file`.
fn put<T: Serialize>(dir: &Path, file: &str, value: &T) -> Result<()> {
    let text = serde_json::to_string(value).map_err(|e| Error::Invalid(e.to_string()))?;
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    let dest = dir.join(file);
    std::fs::rename(&tmp, &dest).map_err(io(&dest))
}

fn get<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::Records {
        path: path.to_path_buf(),
        message: format!("not a queue file ({e})"),
    })
}

/// A claimed task.
pub struct Claim {
    pub task: Task,
    pub key: String,
    pub path: PathBuf,
    pub claimed_at: f64,
}

impl Queue {
    pub fn new(run: &Path) -> Queue {
        Queue {
            root: run.join("queue"),
        }
    }
    fn todo(&self) -> PathBuf {
        self.root.join("todo")
    }
    fn claimed(&self) -> PathBuf {
        self.root.join("claimed")
    }
    fn done(&self) -> PathBuf {
        self.root.join("done")
    }
    fn workers(&self) -> PathBuf {
        self.root.join("workers")
    }
    pub fn stop_file(&self) -> PathBuf {
        self.root.join("stop")
    }
    pub fn coordinator_beat(&self) -> PathBuf {
        self.root.join("coordinator.beat")
    }

    /// Start a coordinator: the folders exist, the stop file is gone and no task is left
    /// in `todo/` or `claimed/` (the coordinator hands out again what it still needs;
    /// `done/` is kept: finished work of a killed run is recorded, not redone).
    pub fn reset(&self) -> Result<()> {
        for d in [self.todo(), self.claimed(), self.done(), self.workers()] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        for d in [self.todo(), self.claimed()] {
            for f in json_files(&d)? {
                let _ = std::fs::remove_file(f);
            }
        }
        let stop = self.stop_file();
        if stop.exists() {
            std::fs::remove_file(&stop).map_err(io(&stop))?;
        }
        self.beat_coordinator()
    }

    pub fn beat_coordinator(&self) -> Result<()> {
        let p = self.coordinator_beat();
        std::fs::write(&p, std::process::id().to_string()).map_err(io(&p))
    }

    /// Add a task.
    pub fn push(&self, key: &str, task: &Task) -> Result<()> {
        put(&self.todo(), &format!("{key}.json"), task)
    }

    /// Drop a waiting task (its result is in).
    pub fn forget(&self, key: &str) {
        let _ = std::fs::remove_file(self.todo().join(format!("{key}.json")));
    }

    /// Claim the first task in name order, if any.
    pub fn claim(&self, worker: &str) -> Result<Option<Claim>> {
        for p in json_files(&self.todo())? {
            let n = name(&p);
            let Some(key) = n.strip_suffix(".json") else {
                continue;
            };
            let dest = self.claimed().join(format!("{key}.{worker}.json"));
            match std::fs::rename(&p, &dest) {
                Ok(()) => {
                    let task = get(&dest)?;
                    return Ok(Some(Claim {
                        task,
                        key: key.to_string(),
                        path: dest,
                        claimed_at: now_s(),
                    }));
                }
                // another worker was faster
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dest, e)),
            }
        }
        Ok(None)
    }

    /// Hand back a result and drop the claim.
    pub fn finish(&self, claim: &Claim, outcome: &Outcome) -> Result<()> {
        put(
            &self.done(),
            &format!("{}.{}.json", claim.key, outcome.worker),
            outcome,
        )?;
        // gone already when the claim was given to another worker
        let _ = std::fs::remove_file(&claim.path);
        Ok(())
    }

    /// Results handed back, in name order.
    pub fn results(&self) -> Result<Vec<(PathBuf, Outcome)>> {
        json_files(&self.done())?
            .into_iter()
            .map(|p| get(&p).map(|o| (p, o)))
            .collect()
    }

    /// Tasks waiting, claimed (key, worker) and results, by key.
    pub fn keys(&self) -> Result<(Vec<String>, Vec<(String, String)>, Vec<String>)> {
        let todo = json_files(&self.todo())?
            .iter()
            .filter_map(|p| name(p).strip_suffix(".json").map(str::to_string))
            .collect();
        let claimed = json_files(&self.claimed())?
            .iter()
            .filter_map(|p| split_claim(p))
            .collect();
        let done = json_files(&self.done())?
            .iter()
            .filter_map(|p| split_claim(p).map(|(k, _)| k))
            .collect();
        Ok((todo, claimed, done))
    }

    /// Put the claims of `worker` (every worker when None: beat older than `stale`) back
    /// into `todo/`; returns the keys given back.
    pub fn requeue(&self, worker: Option<&str>, stale: Duration) -> Result<Vec<String>> {
        let mut back = Vec::new();
        for p in json_files(&self.claimed())? {
            let Some((key, w)) = split_claim(&p) else {
                continue;
            };
            let lost = match worker {
                Some(dead) => dead == w,
                None => !self.alive(&w, stale),
            };
            if lost {
                let dest = self.todo().join(format!("{key}.json"));
                match std::fs::rename(&p, &dest) {
                    Ok(()) => back.push(key),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(&dest, e)),
                }
            }
        }
        Ok(back)
    }

    /// Whether `worker`'s beat is younger than `stale`.
    pub fn alive(&self, worker: &str, stale: Duration) -> bool {
        fresh(&self.workers().join(format!("{worker}.beat")), stale)
    }

    pub fn beat_worker(&self, worker: &str) -> Result<()> {
        let p = self.workers().join(format!("{worker}.beat"));
        std::fs::write(&p, std::process::id().to_string()).map_err(io(&p))
    }
}

/// Whether the file at `p` was modified less than `stale` ago.
pub fn fresh(p: &Path, stale: Duration) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| {
            SystemTime::now()
                .duration_since(t)
                .ok()
                .or(Some(Duration::ZERO))
        })
        .is_some_and(|age| age < stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64) -> Task {
        Task::Candidate {
            id,
            generation: 1,
            genes: vec![0.1 + id as f64 / 3.0],
            incumbent: None,
        }
    }

    #[test]
    fn each_task_is_claimed_once_in_key_order_even_by_racing_threads() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        q.reset().unwrap();
        for id in (0..40).rev() {
            q.push(&task(id).key(0), &task(id)).unwrap();
        }
        let got: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|w| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut ids = Vec::new();
                        while let Some(c) = q.claim(&format!("w{w}")).unwrap() {
                            if let Task::Candidate { id, .. } = c.task {
                                ids.push(id);
                            }
                        }
                        ids
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = got.iter().flatten().copied().collect();
        for ids in &got {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        }
        all.sort_unstable();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn a_dead_workers_claim_goes_back_and_a_live_ones_stays() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        q.reset().unwrap();
        q.push(&task(1).key(0), &task(1)).unwrap();
        q.push(&task(2).key(0), &task(2)).unwrap();
        q.beat_worker("live").unwrap();
        let a = q.claim("live").unwrap().unwrap();
        let b = q.claim("silent").unwrap().unwrap();
        assert_eq!((a.task.clone(), b.task), (task(1), task(2)));
        let back = q.requeue(None, Duration::from_secs(30)).unwrap();
        assert_eq!(back, vec![task(2).key(0)]);
        assert!(q.claim("other").unwrap().is_some_and(|c| c.task == task(2)));
        // a worker known dead loses its claim at once
        assert_eq!(q.requeue(Some("live"), Duration::MAX).unwrap().len(), 1);
        let outcome = Outcome {
            task: task(1),
            worker: "w".into(),
            claimed_at: 1.0,
            finished_at: 2.5,
            result: Err("boom".into()),
            refused: false,
        };
        let c = q.claim("w").unwrap().unwrap();
        q.finish(&c, &outcome).unwrap();
        let (todo, claimed, done) = q.keys().unwrap();
        assert!(todo.is_empty() && claimed.len() == 1 && done == vec![task(1).key(0)]);
        assert_eq!(q.results().unwrap()[0].1, outcome);
    }
}
