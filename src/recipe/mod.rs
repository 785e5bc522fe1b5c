//! Recipes: mergekit-style YAML (single or multi-document) → validated [`Stage`]s.
//!
//! - [`raw`]: one document → one [`Stage`] (strict keys, parameters checked against the method).
//! - [`param`]: parameter values (scalar, gradient, conditionals) and their evaluation.
//! - [`stages`]: multi-document files, stage references, dependency order.
pub mod error;
pub mod param;
pub mod raw;
pub mod stages;

pub use error::{Error, Location, Result};
pub use param::{Numeric, ParamSet, ParamValue};
pub use raw::{Slice, Source, Stage, TokenizerSource};
pub use stages::Recipe;
