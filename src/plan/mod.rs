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
pub mod recipe;
mod resolve;
mod vocab;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use build::build;
pub use error::{Error, Result};
pub use recipe::{plan_recipe, PlannedStage, RecipeOptions, RecipePlan, StageInput};

use crate::model::vocab::{OutputVocab, Vocabulary};
use crate::model::{DType, HfConfig, ModelDir, TensorInfo};
use crate::registry::{Compat, MethodSpec, Params};

/// What the planner needs to know about one input model: its config and tensor headers.
#[derive(Debug, Clone)]
pub struct InputModel {
    /// The reference as written in the recipe.
    pub reference: String,
    pub config: HfConfig,
    pub tensors: BTreeMap<String, TensorInfo>,
    /// Where its tokenizer's vocabulary is (read only by stages with `tokenizer_source`).
    pub tokenizer: TokenizerOrigin,
}

/// Where an input's tokenizer vocabulary comes from.
#[derive(Debug, Clone, Default)]
pub enum TokenizerOrigin {
    /// Unknown (no folder): `tokenizer_source` then merges embeddings by id.
    #[default]
    None,
    /// `tokenizer.json` in this folder, if it has one.
    Folder(std::path::PathBuf),
    /// The output vocabulary an earlier stage's plan built.
    Built(Arc<Vocabulary>),
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
            tokenizer: TokenizerOrigin::Folder(dir.path.clone()),
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
    /// Output shape; inputs with a larger shape (embeddings only) are cut to its top-left,
    /// or, when the plan has a [`Plan::vocab`], embeddings are re-laid out to it.
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
    /// The slice's base model (index into [`Plan::models`]), whether or not the method
    /// takes it as a separate input: the vocabulary re-layout prefers its rows.
    pub base_model: Option<usize>,
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
    /// For each output layer, the input layer it came from in its slice's first source
    /// (used to carry per-layer config entries such as `layer_types`).
    pub layer_origins: Vec<usize>,
    /// The dtype to write into `config.json` (`out_dtype`, else `dtype`), if the recipe sets one.
    pub config_dtype: Option<DType>,
    /// Output tensors, sorted by name (mergekit's write order).
    pub tensors: Vec<TensorPlan>,
    /// The output vocabulary (`tokenizer_source`): embeddings are re-laid out to it and
    /// `vocab_size` is its row count. `None` without `tokenizer_source`.
    pub vocab: Option<Arc<OutputVocab>>,
    /// The output's tokenizer, for stages that read this one.
    pub output_tokenizer: TokenizerOrigin,
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
    /// Apply this stage's changes to the donor's `config.json`: `num_hidden_layers` (and
    /// `layer_types`, which transformers 5 requires to have one entry per layer) and dtype.
    pub fn update_config(&self, config: &mut HfConfig) {
        if let Some(n) = self.num_hidden_layers {
            config.set_num_hidden_layers(n);
            if let Some(serde_json::Value::Array(types)) = config.raw.get("layer_types") {
                let new: Vec<serde_json::Value> = self
                    .layer_origins
                    .iter()
                    .map(|&l| {
                        types
                            .get(l)
                            .or(types.last())
                            .cloned()
                            .unwrap_or(serde_json::Value::Null)
                    })
                    .collect();
                config
                    .raw
                    .insert("layer_types".into(), serde_json::Value::Array(new));
            }
        }
        if let Some(dtype) = self.config_dtype {
            config.set_dtype(dtype);
        }
        if let Some(v) = &self.vocab {
            config.raw.insert("vocab_size".into(), v.rows.into());
        }
        let writes = |name: &str| self.tensors.iter().any(|t| t.name == name);
        if !config.tie_word_embeddings()
            && !writes("lm_head.weight")
            && writes("model.embed_tokens.weight")
        {
            // transformers would initialise a random head: the inputs that supplied the
            // final layers were tied, so the output is too
            tracing::warn!(
                "stage `{}`: no input of the last slice has `lm_head.weight`; writing \
                 tie_word_embeddings: true (the config donor says false)",
                self.stage
            );
            config
                .raw
                .insert("tie_word_embeddings".into(), serde_json::Value::Bool(true));
        }
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
        plan.update_config(&mut config);
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
            tokenizer: plan.output_tokenizer.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
