//! Errors of the `eval` module: each names the file, task key or tensor involved.
use std::path::PathBuf;

/// Everything that can go wrong while loading a model, reading a task or scoring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model folder or its config.json is not usable.
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    /// A tokenizer file could not be read or used.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// A candle operation failed (shape mismatch, missing tensor, device problem).
    #[error("inference: {0}")]
    Candle(#[from] candle_core::Error),
    /// A task file is malformed: `key` is the YAML path (`metric_list[0].metric`).
    #[error("{path}: `{key}`: {message}")]
    Task {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// A task uses an lm-eval feature that needs Python (`!function`, `process_docs`).
    #[error("{path}: `{key}` is unsupported: {reason}")]
    Unsupported {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// A data file of a task is missing or malformed.
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    /// A template failed on one document (for example a field the data lacks).
    #[error("task `{task}`, document {doc_id}, `{key}`: {message}")]
    Template {
        task: String,
        doc_id: usize,
        key: String,
        message: String,
    },
    /// The request itself is wrong (empty continuation, unknown dtype or device...).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Model {
            path: path.into(),
            message: message.into(),
        }
    }
}
