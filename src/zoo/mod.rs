//! The zoo: tiny Qwen2 models trained by lamarck itself, with distinct skills, so that
//! merging, evaluation and search mean something on a laptop or in CI.
//!
//! - [`skills`]: the tasks (addition, reversal, sorting, lookup), their dev/test splits and
//!   the training streams that never contain a held-out item.
//! - [`tokenizer`]: a character-level `tokenizer.json` with Qwen's special tokens.
//! - [`twin`]: a differentiable twin of candle-transformers' Qwen2 used for training.
//! - [`train`]: training phases (masked next-token loss, AdamW).
//! - [`build`]: the recipe and `lamarck zoo build`; [`save`] writes the HF folders through
//!   the model layer's writer.
//!
//! Scoring and merging the zoo use the real tools: `lamarck merge` (`zoo/merges/`) and
//! `lamarck eval` (`evals/zoo/`), as `zoo/table.sh` does.
use std::path::PathBuf;

pub mod build;
pub mod rng;
pub mod save;
pub mod skills;
pub mod tokenizer;
pub mod train;
pub mod twin;

pub use build::{build, BuildOptions, BuildReport, ZooRecipe};
pub use skills::Skill;

/// Errors of the `zoo` module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path} already exists; pass --force to replace it")]
    Exists { path: PathBuf },
    /// Reading or writing a model folder (the model layer's error names the file).
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error(transparent)]
    Eval(#[from] crate::eval::Error),
    #[error("tokenizer: {message}")]
    Tokenizer { message: String },
    #[error("model weights lack tensor `{name}`")]
    MissingTensor { name: String },
    #[error("{what} panicked")]
    Thread { what: String },
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
