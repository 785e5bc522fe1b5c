//! Scoring one candidate or parent, shared by the in-process loop and by `lamarck worker`.
//!
//! [`evaluate`] merges a candidate in memory and scores it (every dev item, or racing chunks
//! against the incumbent until it is behind); [`score_parent`] scores a parent folder. Neither
//! writes the run's records. [`work`] is the worker process: it claims tasks from the run's
//! [`Queue`], evaluates them and hands the outcome back; it reads the response cache and
//! never writes it (the coordinator appends what the workers hand back).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::ResponseCache;
use super::materialize::{hash_dir, Materializer};
use super::queue::{self, Claim, ItemOut, Outcome, Queue, Scored, Stopped, Task};
use super::racing::{self, Chunks, Race, RacingSpec};
use super::run::Session;
use super::score::{ItemResult, Scorer, Source, Subject};
use super::{Error, Result};
use crate::model::{resolve_model, ModelMap};
use crate::recipe::Recipe;

/// Scores per (objective, doc id).
pub type ItemScores = HashMap<(usize, usize), f64>;

/// Racing settings of one evaluation.
pub struct RaceWith<'a> {
    pub chunks: &'a Chunks,
    pub spec: &'a RacingSpec,
    pub weights: &'a [f64],
    /// Items of the full dev set.
    pub total: usize,
    /// The incumbent's score per (objective, doc id).
    pub incumbent: &'a ItemScores,
}

/// A merged and scored candidate, not yet recorded.
pub struct Evaluation {
    pub hash: String,
    pub merge_s: f64,
    pub eval_s: f64,
    pub stages_run: usize,
    pub stages_reused: usize,
    /// In the order scored.
    pub items: Vec<ItemResult>,
    /// Set when racing stopped it.
    pub stopped: Option<Stopped>,
    /// Its `merges.csv` cells after the id (stages merged and reused, seconds, cache sizes).
    pub merge_cells: String,
}

/// Merge `recipe` and score it (moved here from `run.rs`'s `Search::candidate`).
pub fn evaluate(
    mat: &mut Materializer,
    scorer: &mut Scorer,
    cache: &mut ResponseCache,
    recipe: &Recipe,
    race: Option<RaceWith>,
) -> Result<Evaluation> {
    let m = mat.materialize(recipe)?;
    let merge_cells = super::merge_log::merge_cells(&m, mat.cached_bytes(), mat.disk_bytes());
    let started = Instant::now();
    let mut subject = Subject::new(Source::Memory(&m.output), &m.hash);
    let mut items: Vec<ItemResult> = Vec::new();
    let mut stopped = None;
    match race {
        Some(r) => {
            let mut state = Race::new(r.weights, r.spec, r.total);
            for chunk in r.chunks {
                let got = scorer.score_items(&mut subject, chunk, cache)?;
                for it in &got {
                    let theirs = r
                        .incumbent
                        .get(&(it.objective, it.doc_id))
                        .copied()
                        .unwrap_or(0.0);
                    state.add(it.objective, it.score, theirs);
                }
                items.extend(got);
                if items.len() < r.total {
                    let v = state.verdict();
                    if v.stop {
                        stopped = Some(Stopped {
                            items: v.items,
                            estimate: v.estimate,
                            diff: v.diff,
                            bound: v.bound,
                        });
                        break;
                    }
                }
            }
        }
        None => {
            let want = scorer.all_items()?;
            items = scorer.score_items(&mut subject, &want, cache)?;
        }
    }
    Ok(Evaluation {
        hash: m.hash.clone(),
        merge_s: m.seconds,
        eval_s: started.elapsed().as_secs_f64(),
        stages_run: m.stages_run,
        stages_reused: m.stages_reused,
        items,
        stopped,
        merge_cells,
    })
}

/// Score the parent `reference` (moved here from `run.rs`'s `evolve`). A parent folder
/// without a tokenizer is scored with the starting recipe's tokenizer (`start_tok`, filled
/// on first use).
pub fn score_parent(
    session: &Session,
    map: Option<&ModelMap>,
    mat: &mut Materializer,
    scorer: &mut Scorer,
    cache: &mut ResponseCache,
    reference: &str,
    start_tok: &mut Option<PathBuf>,
) -> Result<Vec<ItemResult>> {
    let path = resolve_model(reference, map)?;
    let tok: PathBuf = if path.join("tokenizer.json").is_file() {
        path.clone()
    } else {
        if start_tok.is_none() {
            let recipe = session.recipe(&session.genome.start)?;
            *start_tok = Some(mat.materialize(&recipe)?.output.tokenizer_dir.clone());
        }
        start_tok.clone().unwrap_or_default()
    };
    let weights = hash_dir(&path)?;
    let mut subject = Subject::new(
        Source::Dir {
            dir: &path,
            tokenizer: &tok,
        },
        &weights,
    );
    Ok(scorer.score_all(&mut subject, cache)?.items)
}

/// How a worker runs (command-line settings).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique among the run's workers (no `.` or `/`).
    pub name: String,
    pub threads: usize,
    pub cache_mem: u64,
    /// Overrides the search file's `eval.device` (e.g. `cuda:1`).
    pub device: Option<String>,
    /// Exit when the coordinator's beat is older than this.
    pub stale: Duration,
}

/// The worker process: claim, evaluate, hand back, until the coordinator says stop (or
/// stops beating). Returns the number of tasks done.
pub fn work(run: &Path, opts: &WorkerOptions) -> Result<usize> {
    if opts.name.is_empty() || opts.name.contains(['.', '/', '\\']) {
        return Err(Error::Invalid(format!(
            "worker name `{}`: give a name without `.` or `/`",
            opts.name
        )));
    }
    let session = Session::open(run)?;
    let spec = &session.spec;
    let mut eval = spec.eval.clone();
    if let Some(d) = &opts.device {
        eval.device = d.clone();
    }
    let map = session.model_map()?;
    let mut scorer = Scorer::new(&spec.objectives, &eval)?;
    let counts = scorer.item_counts()?;
    let total: usize = counts.iter().sum();
    let chunks = spec
        .racing
        .map(|r| racing::chunks(&racing::order(&counts, spec.seed), r.chunk));
    let mut mat = Materializer::new(map.clone(), opts.cache_mem, opts.threads, spec.merge_seed);
    let mut cache = ResponseCache::read_only(&session.dir.responses())?;
    let queue = Queue::new(run);
    if !queue.coordinator_beat().exists() {
        return Err(Error::Records {
            path: queue.root.clone(),
            message: "no coordinator runs this run; start `lamarck evolve --workers N` (or its Slurm executor) first".into(),
        });
    }
    queue.beat_worker(&opts.name)?;
    let alive = Arc::new(AtomicBool::new(true));
    let beat = {
        let (queue, name, alive) = (queue.clone(), opts.name.clone(), alive.clone());
        std::thread::spawn(move || {
            while alive.load(Ordering::Relaxed) {
                let _ = queue.beat_worker(&name);
                std::thread::sleep(queue::BEAT);
            }
        })
    };
    let mut start_tok = None;
    let mut done = 0;
    let result = loop {
        if queue.stop_file().exists() {
            break Ok(done);
        }
        if !queue::fresh(&queue.coordinator_beat(), opts.stale) {
            tracing::warn!(
                "worker {}: the coordinator stopped beating ({}); exiting",
                opts.name,
                queue.coordinator_beat().display()
            );
            break Ok(done);
        }
        let claim = match queue.claim(&opts.name) {
            Ok(Some(c)) => c,
            Ok(None) => {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => break Err(e),
        };
        if let Err(e) = cache.refresh() {
            break Err(e);
        }
        let result = run_task(
            &session,
            map.as_ref(),
            &mut mat,
            &mut scorer,
            &mut cache,
            &claim,
            chunks.as_ref(),
            total,
            &mut start_tok,
        );
        let refused = matches!(&result, Err(e) if super::merge_log::is_candidate_failure(e));
        let outcome = Outcome {
            task: claim.task.clone(),
            worker: opts.name.clone(),
            claimed_at: claim.claimed_at,
            finished_at: queue::now_s(),
            result: result.map_err(|e| e.to_string()),
            refused,
        };
        if let Err(e) = queue.finish(&claim, &outcome) {
            break Err(e);
        }
        done += 1;
    };
    alive.store(false, Ordering::Relaxed);
    let _ = beat.join();
    result
}

#[allow(clippy::too_many_arguments)]
fn run_task(
    session: &Session,
    map: Option<&ModelMap>,
    mat: &mut Materializer,
    scorer: &mut Scorer,
    cache: &mut ResponseCache,
    claim: &Claim,
    chunks: Option<&Chunks>,
    total: usize,
    start_tok: &mut Option<PathBuf>,
) -> Result<Scored> {
    let out = |items: &[ItemResult]| -> Vec<ItemOut> {
        items
            .iter()
            .map(|r| ItemOut {
                objective: r.objective,
                doc_id: r.doc_id,
                score: r.score,
                cached: r.cached,
                item: r.item.clone(),
            })
            .collect()
    };
    match &claim.task {
        Task::Parent { model } => {
            let started = Instant::now();
            let items = score_parent(session, map, mat, scorer, cache, model, start_tok)?;
            Ok(Scored {
                hash: String::new(),
                merge_s: 0.0,
                eval_s: started.elapsed().as_secs_f64(),
                items: out(&items),
                stopped: None,
                fresh: cache.take_journal(),
                merge_cells: String::new(),
            })
        }
        Task::Candidate {
            genes, incumbent, ..
        } => {
            let recipe = session.recipe(genes)?;
            let weights = session.weights();
            let scores: Option<ItemScores> = incumbent
                .as_ref()
                .map(|i| i.scores.iter().map(|&(o, d, s)| ((o, d), s)).collect());
            let race = match (chunks, &session.spec.racing, &scores) {
                (Some(chunks), Some(spec), Some(inc)) => Some(RaceWith {
                    chunks,
                    spec,
                    weights: &weights,
                    total,
                    incumbent: inc,
                }),
                _ => None,
            };
            let ev = evaluate(mat, scorer, cache, &recipe, race)?;
            Ok(Scored {
                hash: ev.hash,
                merge_s: ev.merge_s,
                eval_s: ev.eval_s,
                items: out(&ev.items),
                stopped: ev.stopped,
                fresh: cache.take_journal(),
                merge_cells: ev.merge_cells,
            })
        }
    }
}
