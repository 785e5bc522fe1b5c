//! What the integration tests share: stand-in checkpoints and a model map (`merge`), a tiny
//! model family and a search file over it (`search`), tensor readers and ulp distances
//! (`tensors`), and running the `lamarck` binary, in a temp dir or not, with its output
//! compared to golden files (`cmd`), a fake Hugging Face cache of Parquet datasets (`hub`).
#![allow(dead_code)]
pub mod cmd;
pub mod hub;
pub mod merge;
pub mod search;
pub mod tensors;

use std::path::{Path, PathBuf};

/// The repository root (`CARGO_MANIFEST_DIR`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path as a command-line argument (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
