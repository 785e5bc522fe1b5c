//! Plans: one recipe stage × the architecture × the input models' headers → one job per
//! output tensor, with every input named and every parameter resolved.
//!
//! Planning reads only headers and configs, so `--dry-run` works on folders holding just
//! `config.json` and truncated safetensors headers. The runner (`merge::run`) executes a
//! [`Plan`] without looking at the recipe again.
// Errors are cold and carry the file, path, model and tensor a user needs; their size
// does not matter, so clippy's result_large_err is allowed here.
#![allow(clippy::result_large_err)]
pub mod build;
pub mod error;
mod resolve;

use std::collections::BTreeMap;

pub use build::build;
pub use error::{Error, Result};

use crate::merge::{Compat, MethodSpec, Params};
use crate::model::{DType, HfConfig, ModelDir, TensorInfo};

/// What the planner needs to know about one input model: its config and tensor headers.
#[derive(Debug, Clone)]
pub struct InputModel {
    /// The reference as written in the recipe.
    pub reference: String,
    pub config: HfConfig,
    pub tensors: BTreeMap<String, TensorInfo>,
}

impl InputModel {
    pub fn from_dir(reference: &str, dir: &ModelDir) -> InputModel {
        let tensors = dir
            .tensor_names()
            .into_iter()
            .filter_map(|n| dir.info(n).map(|i| (n.to_string(), i.clone())))
            .collect();
        InputModel {
            reference: reference.to_string(),
            config: dir.config.clone(),
            tensors,
        }
    }
}

/// One input tensor: which model (index into [`Plan::models`]) and which of its tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInput {
    pub model: usize,
    pub tensor: String,
    /// Shape as stored (before any embedding cut).
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorInput {
    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dtype.size() as u64
    }
}

/// A non-base input with its per-model parameters resolved for this tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInput {
    pub input: TensorInput,
    pub params: Params,
}

/// Everything needed to produce one output tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPlan {
    pub name: String,
    /// Output shape; inputs with a larger shape (embeddings only) are cut to its top-left.
    pub shape: Vec<usize>,
    pub is_embed: bool,
    pub out_dtype: DType,
    pub compute_dtype: DType,
    /// Layer position t used for gradients (for messages and tests).
    pub t: f64,
    pub base: Option<TensorInput>,
    pub models: Vec<ModelInput>,
    /// Global (method) parameters.
    pub params: Params,
}

impl TensorPlan {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn inputs(&self) -> impl Iterator<Item = &TensorInput> {
        self.base.iter().chain(self.models.iter().map(|m| &m.input))
    }
    /// Working memory of this job: f32 copies of its inputs, the f32 result, the encoded output.
    pub fn work_bytes(&self) -> u64 {
        let inputs: u64 = self
            .inputs()
            .map(|i| i.shape.iter().product::<usize>() as u64 * 4)
            .sum();
        inputs + self.numel() as u64 * (4 + self.out_dtype.size() as u64)
    }
}

/// A planned stage.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Stage name (`final` for an unnamed stage); part of every RNG key.
    pub stage: String,
    pub method: &'static MethodSpec,
    pub compat: Compat,
    pub seed: u64,
    /// Model references, in the order [`TensorInput::model`] indexes.
    pub models: Vec<String>,
    /// Whose `config.json` the output starts from (base, else the first model).
    pub config_donor: usize,
    /// Whose tokenizer files are copied.
    pub tokenizer_donor: usize,
    /// `num_hidden_layers` to write (`slices:` form), or `None` to keep the donor's.
    pub num_hidden_layers: Option<usize>,
    /// The dtype to write into `config.json` (`out_dtype`, else `dtype`), if the recipe sets one.
    pub config_dtype: Option<DType>,
    /// Output tensors, sorted by name (mergekit's write order).
    pub tensors: Vec<TensorPlan>,
}

impl Plan {
    /// Bytes of tensor data read from the inputs.
    pub fn bytes_read(&self) -> u64 {
        self.tensors
            .iter()
            .flat_map(|t| t.inputs())
            .map(TensorInput::bytes)
            .sum()
    }
    /// Bytes of tensor data written.
    pub fn bytes_written(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.numel() as u64 * t.out_dtype.size() as u64)
            .sum()
    }
    /// Estimated peak memory: `threads` of the largest jobs at once plus one shard buffer
    /// (inputs are memory-mapped; their pages are not counted).
    pub fn peak_memory(&self, threads: usize, shard_size: u64) -> u64 {
        let mut jobs: Vec<u64> = self.tensors.iter().map(TensorPlan::work_bytes).collect();
        jobs.sort_unstable_by(|a, b| b.cmp(a));
        let running: u64 = jobs.iter().take(threads.max(1)).sum();
        running + shard_size.min(self.bytes_written())
    }
}

/// `1.5 GiB`-style size for messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

impl InputModel {
    /// The headers a planned stage's output will have, so later stages can be planned
    /// (and `--dry-run` can print them) before the stage has run.
    pub fn from_plan(reference: &str, plan: &Plan, donor: &HfConfig) -> InputModel {
        let mut config = donor.clone();
        if let Some(n) = plan.num_hidden_layers {
            config.raw.insert("num_hidden_layers".into(), n.into());
        }
        let tensors = plan
            .tensors
            .iter()
            .map(|t| {
                let info = TensorInfo {
                    name: t.name.clone(),
                    dtype: t.out_dtype,
                    shape: t.shape.clone(),
                };
                (t.name.clone(), info)
            })
            .collect();
        InputModel {
            reference: reference.to_string(),
            config,
            tensors,
        }
    }
}

#[cfg(test)]
mod tests;
