//! Two side files of a run folder about merging (old runs without them stay readable):
//!
//! - `merges.csv`: one row per merged candidate (written before its scores, so also for
//!   candidates stopped by racing): which stages were merged and which came from the stage
//!   cache, the merge seconds and the cache's size after it. A candidate merged again after
//!   a resume appends a second row; the last row of an id counts.
//! - `failed.csv`: candidates whose merge a method refused (a gene combination out of a
//!   method's bounds: DELLA's density ± epsilon outside (0, 1), a density out of range, …),
//!   with the reason. A failed candidate is never scored and never on the frontier; the
//!   optimizer is told [`failed_value`], below any fitness a merged candidate can have, and
//!   the search goes on. It counts towards the candidate budget.
use std::path::PathBuf;

use super::materialize::Materialized;
use super::records::RunDir;
use super::Error;

pub const MERGES_HEADER: &str =
    "id,stages_built,stages_reused,rebuilt,merge_s,cache_mem_bytes,cache_disk_bytes";

pub fn merges_path(dir: &RunDir) -> PathBuf {
    dir.root.join("merges.csv")
}

pub fn failed_path(dir: &RunDir) -> PathBuf {
    dir.root.join("failed.csv")
}

/// Stage names in one CSV cell (`;`-separated; `,` and `;` in a name become `_`).
fn cell(names: &[String]) -> String {
    names
        .iter()
        .map(|n| n.replace([',', ';', '\n'], "_"))
        .collect::<Vec<_>>()
        .join(";")
}

/// A `merges.csv` row.
pub fn merge_line(id: u64, m: &Materialized, mem: u64, disk: u64) -> String {
    format!("{id},{}", merge_cells(m, mem, disk))
}

/// A `merges.csv` row without its id (what an evaluation carries until it has one).
pub fn merge_cells(m: &Materialized, mem: u64, disk: u64) -> String {
    format!(
        "{},{},{},{:.3},{mem},{disk}",
        m.stages_run,
        m.stages_reused,
        cell(&m.rebuilt),
        m.seconds
    )
}

/// One row of `failed.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRow {
    pub id: u64,
    pub generation: u64,
    pub genes: Vec<f64>,
    /// The value the optimizer was told.
    pub told: f64,
    /// The merge's error message (one line; commas kept, it is the last column).
    pub reason: String,
}

pub fn failed_header(genes: &[String]) -> String {
    let mut cols = vec!["id".to_string(), "generation".into()];
    cols.extend(genes.iter().cloned());
    cols.extend(["told", "reason"].map(String::from));
    cols.join(",")
}

impl FailedRow {
    pub fn to_line(&self) -> String {
        let mut cols = vec![self.id.to_string(), self.generation.to_string()];
        cols.extend(self.genes.iter().map(|g| g.to_string()));
        cols.push(self.told.to_string());
        cols.push(self.reason.replace(['\n', '\r'], " "));
        cols.join(",")
    }

    pub fn parse(line: &str, genes: usize) -> Result<FailedRow, String> {
        let cols: Vec<&str> = line.splitn(genes + 4, ',').collect();
        if cols.len() != genes + 4 {
            return Err(format!(
                "expected {} columns, found {}",
                genes + 4,
                cols.len()
            ));
        }
        let num = |s: &str| s.parse::<f64>().map_err(|e| format!("`{s}`: {e}"));
        let int = |s: &str| s.parse::<u64>().map_err(|e| format!("`{s}`: {e}"));
        Ok(FailedRow {
            id: int(cols[0])?,
            generation: int(cols[1])?,
            genes: cols[2..2 + genes]
                .iter()
                .map(|s| num(s))
                .collect::<Result<_, _>>()?,
            told: num(cols[2 + genes])?,
            reason: cols[3 + genes].to_string(),
        })
    }
}

/// What the optimizer is told for a candidate that could not be merged: one below the
/// lowest fitness any merged candidate can reach (Σ min(weight, 0), scores being in
/// [0, 1]). CMA-ES uses only the ranking, so this ranks it last; random search ignores it.
pub fn failed_value(weights: &[f64]) -> f64 {
    weights.iter().map(|w| w.min(0.0)).sum::<f64>() - 1.0
}

/// Whether a merge error is the candidate's fault (its genes make a stage a method
/// refuses), so the search records it and goes on; anything else (a missing or corrupt
/// model, a full disk) stops the run.
pub fn is_candidate_failure(e: &Error) -> bool {
    use crate::merge::run::Error as M;
    match e {
        Error::Recipe(_) | Error::Plan(_) | Error::Gene { .. } => true,
        Error::Merge(m) => matches!(m, M::Invalid { .. } | M::Kernel { .. } | M::Vocab { .. }),
        _ => false,
    }
}
