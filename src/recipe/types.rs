//! The validated recipe: what one document of a recipe means once parsed ([`Stage`]),
//! independent of YAML. The planner reads only these types.
use super::param::ParamSet;
use crate::model::DType;
use crate::registry::{Compat, MethodSpec};

/// Where the output tokenizer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerSource {
    /// The stage's base model (or its first model when there is none).
    Base,
    /// A model reference.
    Model(String),
}

/// One input of an output slice.
#[derive(Debug, Clone)]
pub struct Source {
    pub model: String,
    /// `None` in the `models:` form: the whole model.
    pub layer_range: Option<[usize; 2]>,
    pub parameters: ParamSet,
}

/// One output slice (the `models:` form is one slice of whole models).
#[derive(Debug, Clone)]
pub struct Slice {
    pub sources: Vec<Source>,
    pub base_model: Option<String>,
    pub parameters: ParamSet,
}

/// One merge: one document of a recipe.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: Option<String>,
    /// 1-based document number in the file.
    pub document: usize,
    /// The document's YAML text, as written.
    pub text: String,
    pub method: &'static MethodSpec,
    pub base_model: Option<String>,
    /// True for the `models:` form (layer ranges come from each model's config).
    pub models_form: bool,
    pub slices: Vec<Slice>,
    pub parameters: ParamSet,
    pub dtype: Option<DType>,
    pub out_dtype: Option<DType>,
    pub tokenizer_source: Option<TokenizerSource>,
    pub seed: Option<u64>,
    /// The compatibility profile this stage was validated under.
    pub compat: Compat,
}

impl Stage {
    /// Every model reference of the stage, in config order, without duplicates.
    pub fn model_refs(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for s in &self.slices {
            for src in &s.sources {
                if !out.contains(&src.model.as_str()) {
                    out.push(&src.model);
                }
            }
            if let Some(b) = &s.base_model {
                if !out.contains(&b.as_str()) {
                    out.push(b);
                }
            }
        }
        if let Some(b) = &self.base_model {
            if !out.contains(&b.as_str()) {
                out.push(b);
            }
        }
        if let Some(TokenizerSource::Model(m)) = &self.tokenizer_source {
            if !out.contains(&m.as_str()) {
                out.push(m);
            }
        }
        out
    }
}
