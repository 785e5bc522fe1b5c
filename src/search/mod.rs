//! The evolutionary loop: mutate genes of a multi-stage recipe, materialize each candidate
//! in memory, score it with the evaluator, and record everything so a run can be resumed,
//! reported and exported.
//!
//! - [`spec`]: the search file (`searches/*.yaml`): recipe, genes, objectives, optimizer, budget.
//! - [`genes`]: gene places in the recipe's YAML documents; substitution → recipe text.
//! - [`cmaes`], [`random`]: optimizers with ask/tell over genes scaled to [0, 1].
//! - [`materialize`]: recipe → merged tensors in memory, with a content-addressed stage cache.
//! - [`score`]: per-item scoring through the [`cache`] (responses keyed by weights hash);
//!   [`racing`]: paired early stopping; [`paired`]: the report's paired bootstrap.
//! - [`records`]: the files of `results/<run>/` (append-only rows, atomic rewrites, resume).
//! - [`frontier`]: the Pareto set over the objectives.
//! - [`worker`]: one candidate merged and scored (in process or in `lamarck worker`);
//!   [`queue`]: the run folder's task files and claims; [`coordinator`]: `evolve --workers N`
//!   with the asynchronous [`steady`] optimizer; [`executor`]: local processes or Slurm jobs.
//! - [`run`]: the loop ([`open`]: a run folder opened, locked and read back); [`report`]:
//!   tables and the SVG plot; [`export`]: candidate → recipe.
#![allow(clippy::result_large_err)] // errors carry paths and messages; not on a hot path
#[allow(clippy::needless_range_loop)] // matrix code reads best with indices
pub mod cache;
pub mod cmaes;
pub mod coordinator;
pub mod dry_run;
pub mod error;
pub mod executor;
pub mod export;
pub mod frontier;
pub mod genes;
pub mod materialize;
pub mod merge_log;
pub mod open;
pub mod optimizer;
pub mod paired;
pub mod plot;
pub mod queue;
pub mod racing;
pub mod random;
pub mod records;
pub mod report;
pub mod run;
pub mod score;
pub mod session;
pub mod spec;
pub mod stage_cache;
pub mod stage_file;
pub mod steady;
pub mod worker;

pub use error::{Error, Result};
pub use spec::SearchSpec;
