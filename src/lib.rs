//! lamarck: evaluation-driven, evolutionary LLM merging.
//!
//! The pipeline, one module per step:
//! - [`registry`]: every merge method's inputs and parameters, as data (a leaf module).
//! - [`recipe`]: mergekit-style YAML (single or multi-document) → validated stages.
//! - [`plan`]: recipe × architecture × input headers → one job per output tensor.
//! - [`merge`]: the kernels (`merge::methods`) and the runner that streams jobs to a sink.
//! - [`model`]: Hugging Face folders: resolution, safetensors reading/validation, writing.
//! - [`eval`]: candle Qwen2 inference and tinyeval-style tasks.
//! - [`zoo`]: tiny trained Qwen2 models with distinct skills.
//! - [`search`]: the evolutionary loop over recipe genes.
pub mod cli;
pub mod eval;
pub mod merge;
pub mod model;
pub mod plan;
pub mod recipe;
pub mod registry;
pub mod search;
pub mod zoo;
