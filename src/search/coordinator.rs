//! `lamarck evolve --workers N`: the coordinator. It hands tasks to worker processes through
//! the run's [`Queue`], records what they hand back (it alone appends to the run's
//! records, so append-only, fsync and resume after `kill -9` hold with any number of
//! workers), and keeps every worker busy: the optimizer is the generation-asynchronous
//! [`Steady`] loop, asked for a point whenever a worker is free.
//!
//! Order of writes, so that a kill at any moment loses nothing and duplicates nothing:
//! a point is checkpointed as in flight (`state.json`) before its task is queued; a result
//! is recorded (cache lines, `evaluations.csv`, `items.jsonl`, the candidate's row), then
//! `arrivals.csv` gets its line, then the optimizer is told and checkpointed, and only then
//! the result file is deleted. A resumed coordinator records the results it finds first,
//! tells the points whose rows exist, and queues again the points still in flight.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::executor::{self, Executor};
use super::queue::{self, Incumbent, ItemOut, Outcome, Queue, Task};
use super::records;
use super::run::{best_message, progress_bar, EvolveOptions, Search, Session, Summary};
use super::score::ItemResult;
use super::steady::Steady;
use super::worker::Evaluation;
use super::{Error, Result};

/// `arrivals.csv`: one line per result recorded, in the order recorded.
pub const ARRIVALS_HEADER: &str = "worker,claimed_at,finished_at,recorded_at,who";

/// How long a worker may keep failing to start or dying before the run stops (per slot).
const MAX_RESTARTS: usize = 5;

/// Stops the workers however the coordinator leaves (error, budget, panic).
struct Workers<'a> {
    exec: Box<dyn Executor + 'a>,
    queue: Queue,
}

impl Drop for Workers<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(self.queue.stop_file(), b"stop\n");
        self.exec.stop();
    }
}

pub fn coordinate(session: &Session, opts: &EvolveOptions) -> Result<Summary> {
    let mut search = Search::open(session, opts)?;
    let before = search.recorded();
    let state = session.dir.state();
    let (opt, extra) = session.load_state()?;
    let mut steady = match extra {
        Some(e) => Steady::from_json(opt, &e).map_err(|message| Error::Records {
            path: state.clone(),
            message,
        })?,
        None => Steady::from_generational(opt, |id| search.told(id).map(|(_, v)| v)),
    };
    // killed between a row and its checkpoint: the row counts
    for p in steady.in_flight.clone() {
        if let Some((_, v)) = search.told(p.id) {
            steady.tell(p.id, v);
        }
    }
    session.save_state(&steady.opt, Some(steady.extra_json()))?;
    let queue = Queue::new(&session.dir.root);
    queue.reset()?;
    let apath = session.dir.root.join("arrivals.csv");
    records::read_rows(&apath, ARRIVALS_HEADER)?;

    let parents = session.parents()?;
    let mut loop_ = Loop {
        search: &mut search,
        steady: &mut steady,
        queue: queue.clone(),
        arrivals: apath,
        in_flight: BTreeMap::new(),
    };
    // finished work of a killed run first
    loop_.collect()?;
    let mut waiting: Vec<(String, Task)> = Vec::new();
    if loop_.search.told(0).is_none() {
        let t = Task::Candidate {
            id: 0,
            generation: 0,
            genes: session.genome.start.clone(),
            incumbent: None,
        };
        waiting.push((t.key(0), t));
    }
    for (k, model) in parents.iter().enumerate() {
        if !loop_.search.parents.iter().any(|p| &p.model == model) {
            let t = Task::Parent {
                model: model.clone(),
            };
            waiting.push((t.key(k), t));
        }
    }
    for p in loop_.steady.in_flight.clone() {
        let t = loop_.point_task(p.id, &p.x)?;
        waiting.push((t.key(0), t));
    }
    waiting.reverse();

    let exec = executor::start(session, opts, &queue)?;
    let slots = exec.slots();
    let mut workers = Workers {
        exec,
        queue: queue.clone(),
    };
    for slot in 0..slots {
        workers.exec.start(slot)?;
    }
    let mut restarts = vec![0usize; slots];
    let bar = progress_bar(
        opts.progress,
        search_budget(&loop_),
        loop_.search.recorded(),
    );
    let mut stopped: Option<String> = None;
    let mut last_beat = Instant::now();
    let mut last_scan = Instant::now();
    loop {
        if last_beat.elapsed() >= queue::BEAT {
            queue.beat_coordinator()?;
            last_beat = Instant::now();
        }
        let recorded = loop_.collect()?;
        if last_scan.elapsed() >= Duration::from_secs(1) {
            last_scan = Instant::now();
            for key in queue.requeue(None, opts.stale)? {
                tracing::warn!("task {key}: its worker stopped beating; queued again");
            }
            for ended in workers.exec.poll()? {
                let back = queue.requeue(Some(&ended.name), Duration::ZERO)?;
                tracing::warn!(
                    "worker {} ended ({}); {} claim(s) queued again",
                    ended.name,
                    ended.how,
                    back.len()
                );
                restarts[ended.slot] += 1;
                if restarts[ended.slot] > MAX_RESTARTS {
                    return Err(Error::Invalid(format!(
                        "worker slot {} ended {} times (last: {}, {}); see its log under {}",
                        ended.slot,
                        restarts[ended.slot],
                        ended.name,
                        ended.how,
                        queue.root.join("logs").display()
                    )));
                }
                workers.exec.start(ended.slot)?;
            }
        }
        while loop_.in_flight.len() < slots {
            if let Some((key, task)) = waiting.pop() {
                queue.push(&key, &task)?;
                loop_.in_flight.insert(key, task);
                continue;
            }
            if stopped.is_some() {
                break;
            }
            let points = loop_
                .in_flight
                .values()
                .filter(|t| matches!(t, Task::Candidate { .. }))
                .count();
            if let Some(why) = loop_.search.out_of_budget(points) {
                stopped = Some(why);
                break;
            }
            let p = loop_.steady.ask();
            session.save_state(&loop_.steady.opt, Some(loop_.steady.extra_json()))?;
            let t = loop_.point_task(p.id, &p.x)?;
            let key = t.key(0);
            queue.push(&key, &t)?;
            loop_.in_flight.insert(key, t);
        }
        if recorded > 0 || last_scan.elapsed() < Duration::from_millis(60) {
            bar.set_position(loop_.search.recorded() as u64);
            bar.set_message(loop_.status(&queue, workers.exec.names()));
        }
        if stopped.is_some() && loop_.in_flight.is_empty() && waiting.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish_and_clear();
    drop(workers);
    let _ = std::fs::remove_dir_all(&queue.root);
    search.summary(before, stopped.unwrap_or_default())
}

fn search_budget(l: &Loop) -> Option<u64> {
    l.search.budget
}

struct Loop<'a, 's> {
    search: &'a mut Search<'s>,
    steady: &'a mut Steady,
    queue: Queue,
    arrivals: std::path::PathBuf,
    /// Tasks queued and not yet recorded, by key.
    in_flight: BTreeMap<String, Task>,
}

impl Loop<'_, '_> {
    /// The task of point `id` (its racing incumbent: the best row now).
    fn point_task(&mut self, id: u64, x: &[f64]) -> Result<Task> {
        let incumbent = match self.search.race_incumbent() {
            Some(inc) => {
                let scores = self.search.incumbent_scores(&inc)?;
                let mut scores: Vec<(usize, usize, f64)> =
                    scores.into_iter().map(|((o, d), s)| (o, d, s)).collect();
                scores.sort_by_key(|&(o, d, _)| (o, d));
                Some(Incumbent {
                    id: inc.id,
                    fitness: inc.fitness,
                    scores,
                })
            }
            None => None,
        };
        Ok(Task::Candidate {
            id,
            generation: self.steady.generation_of(id),
            genes: self.search.session.genome.from_unit(x),
            incumbent,
        })
    }

    /// Record every result handed back; returns how many were new.
    fn collect(&mut self) -> Result<usize> {
        let mut n = 0;
        for (path, outcome) in self.queue.results()? {
            if self.record(outcome)? {
                n += 1;
            }
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(n)
    }

    fn record(&mut self, o: Outcome) -> Result<bool> {
        let key = match &o.task {
            Task::Parent { model } => {
                let k = self
                    .search
                    .session
                    .parents()?
                    .iter()
                    .position(|p| p == model)
                    .unwrap_or(0);
                o.task.key(k)
            }
            t => t.key(0),
        };
        self.in_flight.remove(&key);
        // a copy queued again after its worker stopped beating is not needed any more
        self.queue.forget(&key);
        let arrival = arrival_line(&o);
        let scored = match o.result {
            Ok(s) => s,
            Err(message) if o.refused => {
                let Task::Candidate {
                    id,
                    generation,
                    genes,
                    ..
                } = &o.task
                else {
                    return Err(Error::Invalid(format!(
                        "{}: {message} (worker {})",
                        o.task.who(),
                        o.worker
                    )));
                };
                if self.search.told(*id).is_some() {
                    return Ok(false);
                }
                let v = self
                    .search
                    .record_failed(*id, *generation, genes.clone(), &message)?;
                append_with_header(&self.arrivals, &arrival)?;
                if *id != 0 {
                    self.steady.tell(*id, v);
                    self.search
                        .session
                        .save_state(&self.steady.opt, Some(self.steady.extra_json()))?;
                }
                return Ok(true);
            }
            Err(message) => {
                return Err(match &o.task {
                    Task::Candidate { id, .. } => Error::Candidate {
                        id: *id,
                        message: format!("{message} (worker {})", o.worker),
                    },
                    Task::Parent { model } => {
                        Error::Invalid(format!("parent {model}: {message} (worker {})", o.worker))
                    }
                })
            }
        };
        let done = match &o.task {
            Task::Candidate { id, .. } => self.search.told(*id).is_some(),
            Task::Parent { model } => self.search.parents.iter().any(|p| &p.model == model),
        };
        if done {
            // handed back twice (its claim went to another worker meanwhile)
            return Ok(false);
        }
        let fresh = scored.fresh.len() as u64;
        let hits = scored.items.iter().filter(|r| r.cached).count() as u64;
        self.search.cache.insert(scored.fresh)?;
        self.search.cache.misses += fresh;
        self.search.cache.hits += hits;
        let items: Vec<ItemResult> = scored.items.into_iter().map(item_result).collect();
        let told = match &o.task {
            Task::Candidate {
                id,
                generation,
                genes,
                incumbent,
            } => {
                let ev = Evaluation {
                    hash: scored.hash,
                    merge_s: scored.merge_s,
                    eval_s: scored.eval_s,
                    stages_run: 0,
                    stages_reused: 0,
                    items,
                    stopped: scored.stopped,
                    merge_cells: scored.merge_cells.clone(),
                };
                let inc = incumbent.as_ref().map(|i| (i.id, i.fitness));
                let v = self
                    .search
                    .record(*id, *generation, genes.clone(), ev, inc)?;
                (*id != 0).then_some((*id, v))
            }
            Task::Parent { model } => {
                self.search.record_parent(model, &items)?;
                None
            }
        };
        append_with_header(&self.arrivals, &arrival)?;
        if let Some((id, v)) = told {
            self.steady.tell(id, v);
            self.search
                .session
                .save_state(&self.steady.opt, Some(self.steady.extra_json()))?;
        }
        Ok(true)
    }

    /// The progress bar's message: the best so far and what each worker does.
    fn status(&self, queue: &Queue, names: Vec<String>) -> String {
        let claimed = queue.keys().map(|k| k.1).unwrap_or_default();
        let mut parts = vec![best_message(&self.search.rows)];
        for name in names {
            let what = claimed
                .iter()
                .find(|(_, w)| *w == name)
                .and_then(|(k, _)| self.in_flight.get(k))
                .map_or("idle".to_string(), |t| match t {
                    Task::Candidate { id, .. } => format!("#{id}"),
                    Task::Parent { .. } => "parent".to_string(),
                });
            parts.push(format!("{name}: {what}"));
        }
        parts.join(" · ")
    }
}

/// The outcome's `arrivals.csv` line (the order results were recorded in).
fn arrival_line(o: &Outcome) -> String {
    format!(
        "{},{:.3},{:.3},{:.3},{}",
        o.worker,
        o.claimed_at,
        o.finished_at,
        queue::now_s(),
        o.task.who()
    )
}

fn item_result(r: ItemOut) -> ItemResult {
    ItemResult {
        objective: r.objective,
        doc_id: r.doc_id,
        score: r.score,
        item: r.item,
        cached: r.cached,
    }
}

fn append_with_header(path: &Path, line: &str) -> Result<()> {
    if !path.exists() {
        records::append_line(path, ARRIVALS_HEADER)?;
    }
    records::append_line(path, line)
}

/// Busy and idle seconds of one worker, from `arrivals.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerTime {
    pub worker: String,
    pub tasks: usize,
    /// Sum of claimed → finished.
    pub busy_s: f64,
    /// Gaps between finishing one task and claiming the next.
    pub idle_s: f64,
}

/// Per-worker busy and idle time of a run (none without `arrivals.csv`).
pub fn worker_times(run: &Path) -> Result<Vec<WorkerTime>> {
    let path = run.join("arrivals.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for line in records::read_rows(&path, ARRIVALS_HEADER)? {
        // `who` (last) may hold commas
        let f: Vec<&str> = line.splitn(5, ',').collect();
        if f.len() < 5 {
            continue;
        }
        let (Ok(c), Ok(d)) = (f[1].parse::<f64>(), f[2].parse::<f64>()) else {
            continue;
        };
        by.entry(f[0].to_string()).or_default().push((c, d));
    }
    Ok(by
        .into_iter()
        .map(|(worker, mut spans)| {
            spans.sort_by(|a, b| a.0.total_cmp(&b.0));
            let busy_s = spans.iter().map(|(c, d)| d - c).sum();
            let idle_s = spans.windows(2).map(|w| (w[1].0 - w[0].1).max(0.0)).sum();
            WorkerTime {
                worker,
                tasks: spans.len(),
                busy_s,
                idle_s,
            }
        })
        .collect())
}
