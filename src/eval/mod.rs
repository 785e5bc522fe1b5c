//! Evaluation: score a Qwen2 model on lm-eval-style task files with candle.
//!
//! Scoring is the fitness of every search candidate and a use in its own right, so the
//! numbers follow transformers + lm-evaluation-harness: the same context/continuation
//! token split, per-token log-probabilities equal to transformers' within 1e-4 in f32,
//! `acc_norm` by choice length, and exact match after lm-eval's regex filters.
//!
//! - [`config`]: the model layer's `HfConfig` → candle's `qwen2::Config`.
//! - [`weights`]: a `model::ModelDir` (mmapped shards) → tensors on the device (the one
//!   door for disk and merged tensors).
//! - [`qwen`]: Qwen2's forward pass with explicit positions, KV cache and mask.
//! - [`lm`]: [`Qwen2Lm`]: log-probabilities (whole sequences, or continuations against a
//!   cached context) and batched greedy generation.
//! - [`tokenizer`]: `tokenizer.json` + `tokenizer_config.json` (EOS, chat template).
//! - [`requests`]: lm-eval's log-likelihood requests (context/continuation split, batching).
//! - [`task`]: the lm-eval task YAML subset, its data files and Jinja templates.
//! - [`run`]: one task × one model → metrics and per-item records.
//! - [`prompt`]: few-shot examples (fixed seed) and the chat template.
//! - [`item`]: one document's metrics (live runs and saved responses share it).
//! - [`responses`]: saved generations or log-likelihoods → the same metrics, no model.
//! - [`score`]: acc / acc_norm / exact_match, filters, mean ± standard error.
pub mod config;
pub mod error;
pub mod ifeval;
pub mod item;
pub mod lm;
pub mod prompt;
pub mod qwen;
pub mod requests;
pub mod responses;
pub mod run;
pub mod score;
pub mod task;
pub mod tokenizer;
pub mod weights;

pub use error::{Error, Result};
pub use lm::{parse_device, parse_dtype, PrefixCache, Qwen2Lm, ScoreRequest, TokenScores};
pub use tokenizer::TextTokenizer;
