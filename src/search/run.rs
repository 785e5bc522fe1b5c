//! The loop: score the starting point and the parents, then ask the optimizer for a
//! generation, materialize and score each candidate, record it, tell, checkpoint.
//!
//! Candidate ids are a function of (generation, index): id 0 is the starting point and
//! generation g's k-th point is `1 + g·λ + k`. Since a generation's points are a pure
//! function of the checkpointed optimizer state, a resumed run asks the same points again,
//! finds the ids already in `candidates.csv`, and scores only the missing ones.
use std::path::PathBuf;
use std::time::Instant;

use super::cache::ResponseCache;
use super::materialize::Materializer;
use super::merge_log::{self, FailedRow};
use super::open::lock_run;
pub use super::open::{read_evaluations, read_raced};
use super::racing::{spent, Chunks, EvalRow, RacedRow, Spent};
use super::records::{self, CandidateRow, ParentRow};
use super::score::{ItemResult, Scorer, Source, Subject};
pub use super::session::Session;
use super::worker::{evaluate, score_parent, Evaluation, ItemScores, RaceWith};
use super::{Error, Result};
use crate::model::ModelMap;

/// How to run (command-line settings, not part of the search).
#[derive(Debug, Clone)]
pub struct EvolveOptions {
    /// Stage-cache budget in bytes.
    pub cache_mem: u64,
    /// Disk cache for stage outputs beyond `cache_mem` (None: `<run>/stage-cache/`), and
    /// its budget in bytes (0: no disk cache).
    pub cache_dir: Option<PathBuf>,
    pub cache_disk: u64,
    /// Merge threads (0 = one per core).
    pub threads: usize,
    /// Show the progress bar.
    pub progress: bool,
    /// Override the search file's candidate budget.
    pub candidates: Option<u64>,
    /// Override the search file's time budget.
    pub minutes: Option<f64>,
    /// Worker processes (0: score in this process, the generational loop).
    pub workers: usize,
    /// `--device` for the workers (`cuda` gives worker i `cuda:i`).
    pub device: Option<String>,
    /// A worker whose beat is older than this loses its claim.
    pub stale: std::time::Duration,
}

/// What one invocation did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Candidates recorded (fully scored and stopped early).
    pub candidates: usize,
    pub new: usize,
    /// Candidates stopped early by racing.
    pub raced: usize,
    /// Candidates whose merge a method refused (`failed.csv`).
    pub failed: usize,
    pub best: Option<CandidateRow>,
    pub start: Option<CandidateRow>,
    pub stopped: String,
    /// Item evaluations over the whole run (evaluations.csv).
    pub spent: Spent,
    /// This invocation: items the model was run on and items the cache answered.
    pub model_items: u64,
    pub cache_hits: u64,
}

/// The best fully scored candidate: highest fitness, the lowest id on ties.
pub fn best_row(rows: &[CandidateRow]) -> Option<&CandidateRow> {
    rows.iter()
        .max_by(|a, b| a.fitness.total_cmp(&b.fitness).then(b.id.cmp(&a.id)))
}

/// The loop's state (shared by the in-process loop and the coordinator of workers); opened
/// from the run folder by [`Search::open`] (`open.rs`).
pub(super) struct Search<'s> {
    pub session: &'s Session,
    pub rows: Vec<CandidateRow>,
    pub raced: Vec<RacedRow>,
    pub failed: Vec<FailedRow>,
    pub parents: Vec<ParentRow>,
    pub mat: Materializer,
    pub scorer: Scorer,
    pub cache: ResponseCache,
    pub map: Option<ModelMap>,
    /// Items of the full dev set.
    pub total: usize,
    /// Racing chunks (None: full evaluation).
    pub chunks: Option<Chunks>,
    /// The incumbent's id and its score per (objective, doc id).
    pub(super) incumbent: Option<(u64, ItemScores)>,
    pub budget: Option<u64>,
    pub minutes: Option<f64>,
    pub deadline: Option<Instant>,
}

impl<'s> Search<'s> {
    fn write_eval(&self, who: &str, items: &[ItemResult]) -> Result<()> {
        let cached = items.iter().filter(|r| r.cached).count();
        let row = EvalRow {
            who: who.to_string(),
            items: items.len(),
            of: self.total,
            model_items: items.len() - cached,
            cached_items: cached,
        };
        records::append_line(&self.session.dir.evaluations(), &row.to_line())
    }

    fn write_items(&mut self, who: &str, items: &[ItemResult]) -> Result<()> {
        let lines: Vec<String> = self
            .scorer
            .item_lines(who, items)?
            .iter()
            .filter_map(|l| serde_json::to_string(l).ok())
            .collect();
        records::append_lines(&self.session.dir.items(), &lines)
    }

    /// The incumbent's per-item scores (from the cache; re-scored if the cache lost them).
    pub(super) fn incumbent_scores(&mut self, inc: &CandidateRow) -> Result<ItemScores> {
        if let Some((id, map)) = &self.incumbent {
            if *id == inc.id {
                return Ok(map.clone());
            }
        }
        let want = self.scorer.all_items()?;
        // re-reading a scored candidate's items is no cache hit of the search
        let hits = self.cache.hits;
        let mut subject = Subject::new(Source::CacheOnly, &inc.hash);
        let items = match self
            .scorer
            .score_items(&mut subject, &want, &mut self.cache)
        {
            Ok(items) => items,
            Err(_) => {
                let recipe = self.session.recipe(&inc.genes)?;
                let m = self.mat.materialize(&recipe)?;
                let mut subject = Subject::new(Source::Memory(&m.output), &m.hash);
                self.scorer
                    .score_items(&mut subject, &want, &mut self.cache)?
            }
        };
        self.cache.hits = hits;
        let map: ItemScores = items
            .iter()
            .map(|r| ((r.objective, r.doc_id), r.score))
            .collect();
        self.incumbent = Some((inc.id, map.clone()));
        Ok(map)
    }

    /// The racing incumbent of the next candidate, when racing is on.
    pub(super) fn race_incumbent(&self) -> Option<CandidateRow> {
        match (&self.chunks, &self.session.spec.racing) {
            (Some(_), Some(_)) => best_row(&self.rows).cloned(),
            _ => None,
        }
    }

    /// Merge, score (racing when configured), record; returns the value the optimizer is told.
    fn candidate(&mut self, id: u64, generation: u64, values: Vec<f64>) -> Result<f64> {
        let session = self.session;
        let cand = |e: Error| Error::Candidate {
            id,
            message: e.to_string(),
        };
        let recipe = match session.recipe(&values) {
            Ok(r) => r,
            Err(e) if merge_log::is_candidate_failure(&e) => {
                return self.record_failed(id, generation, values, &e.to_string())
            }
            Err(e) => return Err(e),
        };
        let incumbent = self.race_incumbent();
        let scores = match &incumbent {
            Some(inc) => Some(self.incumbent_scores(inc).map_err(cand)?),
            None => None,
        };
        let weights = session.weights();
        let race = match (&self.chunks, &session.spec.racing, &scores) {
            (Some(chunks), Some(spec), Some(inc)) => Some(RaceWith {
                chunks,
                spec,
                weights: &weights,
                total: self.total,
                incumbent: inc,
            }),
            _ => None,
        };
        let ev = match evaluate(
            &mut self.mat,
            &mut self.scorer,
            &mut self.cache,
            &recipe,
            race,
        ) {
            Ok(ev) => ev,
            Err(e) if merge_log::is_candidate_failure(&e) => {
                return self.record_failed(id, generation, values, &e.to_string())
            }
            Err(e) => return Err(cand(e)),
        };
        self.record(
            id,
            generation,
            values,
            ev,
            incumbent.map(|r| (r.id, r.fitness)),
        )
    }

    /// Append an evaluated candidate's rows (evaluations, items, then its candidate or
    /// raced row); returns the value the optimizer is told. `incumbent`: (id, fitness) of
    /// the incumbent it raced against.
    pub(super) fn record(
        &mut self,
        id: u64,
        generation: u64,
        values: Vec<f64>,
        ev: Evaluation,
        incumbent: Option<(u64, f64)>,
    ) -> Result<f64> {
        let session = self.session;
        if !ev.merge_cells.is_empty() {
            records::append_line(
                &merge_log::merges_path(&session.dir),
                &format!("{id},{}", ev.merge_cells),
            )?;
        }
        let mut items = ev.items;
        items.sort_by_key(|r| (r.objective, r.doc_id));
        self.write_eval(&id.to_string(), &items)?;
        self.write_items(&id.to_string(), &items)?;
        if let (Some(v), Some((inc_id, inc_fitness))) = (ev.stopped, incumbent) {
            let row = RacedRow {
                id,
                generation,
                genes: values,
                items: v.items,
                of: self.total,
                estimate: v.estimate,
                diff: v.diff,
                bound: v.bound,
                incumbent: inc_id,
                told: inc_fitness + v.diff,
                hash: ev.hash.clone(),
                merge_s: ev.merge_s,
                eval_s: ev.eval_s,
            };
            records::append_line(&session.dir.raced(), &row.to_line())?;
            tracing::debug!(
                "candidate {id}: stopped after {} of {} items (diff {:.4}, bound {:.4} vs #{})",
                v.items,
                self.total,
                v.diff,
                v.bound,
                inc_id
            );
            let told = row.told;
            self.raced.push(row);
            return Ok(told);
        }
        let (scores, fitness) = self.scorer.summarize(&items);
        let row = CandidateRow {
            id,
            generation,
            genes: values,
            scores,
            fitness,
            hash: ev.hash.clone(),
            merge_s: ev.merge_s,
            eval_s: ev.eval_s,
        };
        records::append_line(&session.dir.candidates(), &row.to_line())?;
        tracing::debug!(
            "candidate {id}: fitness {fitness:.4}, {} stage(s) merged, {} reused",
            ev.stages_run,
            ev.stages_reused
        );
        self.rows.push(row);
        session.write_frontier(&self.rows)?;
        Ok(fitness)
    }

    /// Append a scored parent's rows.
    pub(super) fn record_parent(&mut self, reference: &str, items: &[ItemResult]) -> Result<()> {
        let name = format!("parent:{reference}");
        self.write_eval(&name, items)?;
        self.write_items(&name, items)?;
        let (values, fitness) = self.scorer.summarize(items);
        let row = ParentRow {
            model: reference.to_string(),
            scores: values,
            fitness,
        };
        records::append_line(&self.session.dir.parents(), &row.to_line())?;
        self.parents.push(row);
        Ok(())
    }

    /// Record a candidate whose merge a method refused (`failed.csv`): never on the
    /// frontier; the optimizer is told [`merge_log::failed_value`].
    pub(super) fn record_failed(
        &mut self,
        id: u64,
        generation: u64,
        values: Vec<f64>,
        e: &str,
    ) -> Result<f64> {
        let row = FailedRow {
            id,
            generation,
            genes: values,
            told: merge_log::failed_value(&self.session.weights()),
            reason: e.to_string(),
        };
        records::append_line(&merge_log::failed_path(&self.session.dir), &row.to_line())?;
        tracing::warn!("candidate {id} not merged, recorded as failed: {e}");
        let told = row.told;
        self.failed.push(row);
        Ok(told)
    }

    pub(super) fn recorded(&self) -> usize {
        self.rows.len() + self.raced.len() + self.failed.len()
    }

    /// The recorded value of candidate `id` (fitness, or what a stopped one was told).
    pub(super) fn told(&self, id: u64) -> Option<(&Vec<f64>, f64)> {
        self.rows
            .iter()
            .find(|r| r.id == id)
            .map(|r| (&r.genes, r.fitness))
            .or_else(|| {
                self.raced
                    .iter()
                    .find(|r| r.id == id)
                    .map(|r| (&r.genes, r.told))
            })
            .or_else(|| {
                self.failed
                    .iter()
                    .find(|r| r.id == id)
                    .map(|r| (&r.genes, r.told))
            })
    }

    /// Why the loop must not start another candidate, if it must not.
    pub(super) fn out_of_budget(&self, in_flight: usize) -> Option<String> {
        if self
            .budget
            .is_some_and(|b| (self.recorded() + in_flight) as u64 >= b)
        {
            return Some(format!(
                "candidate budget of {} reached",
                self.budget.unwrap_or(0)
            ));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(format!(
                "time budget of {} minutes reached",
                self.minutes.unwrap_or(0.0)
            ));
        }
        None
    }

    /// The invocation's summary.
    pub(super) fn summary(&self, before: usize, stopped: String) -> Result<Summary> {
        self.session.write_frontier(&self.rows)?;
        let c = self.mat.cache_stats();
        tracing::info!(
            "stage cache: peak {} in RAM, {} on disk; {} stage(s) written to disk ({} streamed there as merged, larger than --cache-mem), {} read back",
            crate::plan::human_bytes(c.peak_mem),
            crate::plan::human_bytes(c.peak_disk),
            c.spilled,
            c.streamed,
            c.disk_hits
        );
        let evals = read_evaluations(&self.session.dir)?;
        Ok(Summary {
            candidates: self.recorded(),
            new: self.recorded() - before,
            raced: self.raced.len(),
            failed: self.failed.len(),
            best: best_row(&self.rows).cloned(),
            start: self.rows.iter().find(|r| r.id == 0).cloned(),
            stopped,
            spent: spent(&evals),
            model_items: self.cache.misses,
            cache_hits: self.cache.hits,
        })
    }
}

/// Run (or continue) the search until its budget is spent.
pub fn evolve(session: &Session, opts: &EvolveOptions) -> Result<Summary> {
    let _lock = lock_run(session)?;
    if opts.workers > 0 {
        return super::coordinator::coordinate(session, opts);
    }
    let mut search = Search::open(session, opts)?;
    let budget = search.budget;
    let cpath = session.dir.candidates();
    let mut opt = session.load_optimizer()?;
    if !session.dir.state().exists() {
        session.save_optimizer(&opt)?;
    }
    let bar = progress_bar(opts.progress, budget, search.recorded());
    let before = search.recorded();

    if !search.rows.iter().any(|r| r.id == 0) {
        bar.set_message("scoring the starting recipe");
        search.candidate(0, 0, session.genome.start.clone())?;
        bar.set_position(search.recorded() as u64);
    }
    let mut start_tok: Option<PathBuf> = None;
    for reference in session.parents()? {
        if search.parents.iter().any(|p| p.model == reference) {
            continue;
        }
        bar.set_message(format!("scoring parent {reference}"));
        let s = &mut search;
        let items = score_parent(
            session,
            s.map.as_ref(),
            &mut s.mat,
            &mut s.scorer,
            &mut s.cache,
            &reference,
            &mut start_tok,
        )?;
        search.record_parent(&reference, &items)?;
    }

    let stopped = loop {
        let g = opt.generation();
        let xs = opt.ask();
        let lambda = xs.len() as u64;
        let mut fitness = Vec::new();
        let mut stop = None;
        for (k, x) in xs.iter().enumerate() {
            let id = 1 + g * lambda + k as u64;
            let values = session.genome.from_unit(x);
            if let Some((recorded, value)) = search.told(id) {
                if *recorded != values {
                    return Err(Error::Records {
                        path: cpath.clone(),
                        message: format!("candidate {id} was recorded with genes {recorded:?}, the optimizer asks {values:?}; the run folder does not belong to this search state"),
                    });
                }
                fitness.push(value);
                continue;
            }
            if let Some(why) = search.out_of_budget(0) {
                stop = Some(why);
                break;
            }
            bar.set_message(format!(
                "{} · {} items scored, {} from the cache",
                best_message(&search.rows),
                search.cache.misses,
                search.cache.hits
            ));
            fitness.push(search.candidate(id, g + 1, values)?);
            bar.set_position(search.recorded() as u64);
        }
        if let Some(why) = stop {
            break why;
        }
        opt.tell(&xs, &fitness);
        session.save_optimizer(&opt)?;
    };
    bar.finish_and_clear();
    search.summary(before, stopped)
}

pub(super) fn best_message(rows: &[CandidateRow]) -> String {
    rows.iter()
        .max_by(|a, b| a.fitness.total_cmp(&b.fitness))
        .map(|r| format!("best {:.4} (#{})", r.fitness, r.id))
        .unwrap_or_default()
}

pub(super) fn progress_bar(show: bool, budget: Option<u64>, done: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match budget {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "evolve [{bar:30}] {pos}/{len} candidates {elapsed_precise} (eta {eta}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(done as u64);
    bar
}
