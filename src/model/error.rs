//! Errors of the `model` module. Every variant names the file (and tensor) it is about.
use std::path::PathBuf;

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
    /// A tensor's dtype is not one lamarck reads (F32, F16, BF16).
    #[error(
        "{path}: tensor `{tensor}` has dtype {dtype}, which lamarck does not support \
         (supported: F32, F16, BF16); convert the checkpoint first"
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// A structurally wrong tensor entry in a safetensors header.
    #[error("{path}: tensor `{tensor}`: {message}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    /// A tensor asked for by name that the folder does not have.
    #[error("{path}: no tensor named `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },
    /// Data was requested from a folder opened with `ModelDir::open_headers`.
    #[error(
        "{path}: tensor `{tensor}`: this folder was opened header-only (dry run); \
         its tensor data cannot be read"
    )]
    HeaderOnly { path: PathBuf, tensor: String },
    /// A model reference that resolved nowhere.
    #[error("model `{reference}` not found; tried:\n{}", tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n"))]
    ModelNotFound {
        reference: String,
        tried: Vec<String>,
    },
    /// `config.json` names an architecture that is not in the table.
    #[error(
        "{path}: architecture {found} is not supported; supported architectures: {}",
        supported.join(", ")
    )]
    UnsupportedArchitecture {
        path: PathBuf,
        found: String,
        supported: Vec<String>,
    },
    /// The output folder exists and `force` was not given.
    #[error("{path}: output folder already exists; pass --force to replace it")]
    OutputExists { path: PathBuf },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}
