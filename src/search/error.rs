//! Errors of the search module: where the problem is (search file and YAML path, results
//! folder, candidate) and what to do.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{file}: {path}: {message}")]
    Spec {
        file: PathBuf,
        path: String,
        message: String,
    },
    #[error("{file}: unknown key `{key}` at `{path}`{hint}; allowed here: {known}")]
    UnknownKey {
        file: PathBuf,
        path: String,
        key: String,
        hint: String,
        known: String,
    },
    #[error("gene `{gene}`: {message}")]
    Gene { gene: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Records { path: PathBuf, message: String },
    #[error("candidate {id}: {message}")]
    Candidate { id: u64, message: String },
    #[error(transparent)]
    Recipe(#[from] crate::recipe::Error),
    #[error(transparent)]
    Plan(#[from] crate::plan::Error),
    #[error(transparent)]
    Merge(#[from] crate::merge::run::Error),
    #[error(transparent)]
    Model(#[from] crate::model::Error),
    #[error(transparent)]
    Eval(#[from] crate::eval::Error),
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
}
