//! Recipes: mergekit-style YAML (single or multi-document) → validated [`Stage`]s.
//!
//! - [`raw`]: one document → one [`Stage`] (strict keys, parameters checked against the method).
//! - [`types`]: the validated [`Stage`] the planner reads.
//! - [`param`]: parameter values (scalar, gradient, conditionals) and their evaluation.
//! - [`stages`]: multi-document files, stage references, dependency order.
// Errors are cold and carry the file, path, model and tensor a user needs; their size
// does not matter, so clippy's result_large_err is allowed here.
#![allow(clippy::result_large_err)]
pub mod error;
pub mod param;
pub mod raw;
pub mod stages;
pub mod types;

pub use error::{Error, Location, Result};
pub use param::{Numeric, ParamSet, ParamValue};
pub use stages::Recipe;
pub use types::{Slice, Source, Stage, TokenizerSource};
