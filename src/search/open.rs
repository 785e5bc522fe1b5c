//! Opening a run folder for the loop: its lock, its records read back and checked (rows
//! that do not parse name the file and row), the materializer with its stage cache; and
//! the readers the report uses (`evaluations.csv`, `raced.csv`).
use std::collections::BTreeSet;
use std::time::Instant;

use super::cache::ResponseCache;
use super::materialize::Materializer;
use super::merge_log::{self, FailedRow};
use super::racing::{self, raced_header, EvalRow, RacedRow, EVAL_HEADER};
use super::records::{self, CandidateRow, ParentRow, RunDir};
use super::run::{EvolveOptions, Search};
use super::score::Scorer;
use super::session::Session;
use super::{Error, Result};
use crate::model::ModelMap;

/// Take the run folder's lock: one process per run folder (a second `evolve --resume` is
/// refused, naming the holder).
pub(super) fn lock_run(session: &Session) -> Result<crate::merge::lock::DirLock> {
    let root = &session.dir.root;
    Ok(
        crate::merge::lock::DirLock::acquire(root, &root.join(".lamarck-lock"), "lamarck evolve")
            .map_err(crate::merge::run::Error::from)?,
    )
}

impl<'s> Search<'s> {
    /// Read the run's records (moved here from `evolve`); the caller holds the run lock.
    pub(super) fn open(session: &'s Session, opts: &EvolveOptions) -> Result<Search<'s>> {
        let started = Instant::now();
        let genes = session.gene_names();
        let objectives = session.objective_names();
        let header = records::candidate_header(&genes, &objectives);
        let cpath = session.dir.candidates();
        let rows: Vec<CandidateRow> = records::read_rows(&cpath, &header)?
            .iter()
            .enumerate()
            .map(|(i, l)| {
                CandidateRow::parse(l, genes.len(), objectives.len()).map_err(|m| Error::Records {
                    path: cpath.clone(),
                    message: format!("row {}: {m}", i + 1),
                })
            })
            .collect::<Result<_>>()?;
        let rpath = session.dir.raced();
        let raced: Vec<RacedRow> = if session.spec.racing.is_some() || rpath.exists() {
            records::read_rows(&rpath, &raced_header(&genes))?
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    RacedRow::parse(l, genes.len()).map_err(|m| Error::Records {
                        path: rpath.clone(),
                        message: format!("row {}: {m}", i + 1),
                    })
                })
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        records::read_rows(&session.dir.evaluations(), EVAL_HEADER)?;
        records::read_rows(
            &merge_log::merges_path(&session.dir),
            merge_log::MERGES_HEADER,
        )?;
        let fpath = merge_log::failed_path(&session.dir);
        let failed = records::read_rows(&fpath, &merge_log::failed_header(&genes))?
            .iter()
            .enumerate()
            .map(|(i, l)| {
                FailedRow::parse(l, genes.len()).map_err(|m| Error::Records {
                    path: fpath.clone(),
                    message: format!("row {}: {m}", i + 1),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ppath = session.dir.parents();
        let parents: Vec<ParentRow> =
            records::read_rows(&ppath, &records::parent_header(&objectives))?
                .iter()
                .map(|l| {
                    ParentRow::parse(l, objectives.len()).map_err(|m| Error::Records {
                        path: ppath.clone(),
                        message: m,
                    })
                })
                .collect::<Result<_>>()?;
        let mut keep: BTreeSet<String> = rows.iter().map(|r| r.id.to_string()).collect();
        keep.extend(raced.iter().map(|r| r.id.to_string()));
        keep.extend(parents.iter().map(|p| format!("parent:{}", p.model)));
        records::prune_items(&session.dir.items(), &keep)?;

        let spec = &session.spec;
        let budget = opts.candidates.or(spec.budget.candidates);
        let minutes = opts.minutes.or(spec.budget.minutes);
        let deadline = minutes.map(|m| started + std::time::Duration::from_secs_f64(m * 60.0));
        let map = session.model_map()?;
        let mut scorer = Scorer::new(&spec.objectives, &spec.eval)?;
        let counts = scorer.item_counts()?;
        let total = counts.iter().sum();
        let chunks = spec
            .racing
            .map(|r| racing::chunks(&racing::order(&counts, spec.seed), r.chunk));
        Ok(Search {
            session,
            rows,
            raced,
            failed,
            parents,
            mat: stage_cache(session, opts, map.clone())?,
            scorer,
            cache: ResponseCache::open(&session.dir.responses())?,
            map,
            total,
            chunks,
            incumbent: None,
            budget,
            minutes,
            deadline,
        })
    }
}

/// The materializer with its stage cache: `--cache-mem` in memory, then the disk cache.
fn stage_cache(
    session: &Session,
    opts: &EvolveOptions,
    map: Option<ModelMap>,
) -> Result<Materializer> {
    let spec = &session.spec;
    let mat = Materializer::new(map, opts.cache_mem, opts.threads, spec.merge_seed);
    if opts.cache_disk == 0 {
        return Ok(mat);
    }
    let dir = opts
        .cache_dir
        .clone()
        .unwrap_or_else(|| session.dir.root.join("stage-cache"));
    mat.with_disk_cache(&dir, opts.cache_disk)
}

/// Every complete row of `evaluations.csv` (none when the file is absent).
pub fn read_evaluations(dir: &RunDir) -> Result<Vec<EvalRow>> {
    records::parse_rows(&dir.evaluations(), true, EvalRow::parse)
}

/// Every complete row of `raced.csv` (none when the file is absent).
pub fn read_raced(dir: &RunDir, genes: usize) -> Result<Vec<RacedRow>> {
    records::parse_rows(&dir.raced(), true, |l| RacedRow::parse(l, genes))
}
