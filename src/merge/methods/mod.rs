//! One file per merge method, each a pure function of (tensors, parameters).
//!
//! [`METHODS`] is the only registry: the recipe validator, the planner, `--help` text and
//! the search's gene bounds all read it.
use std::collections::BTreeMap;

use super::{rng::RngKey, Compat};
use crate::model::DType;

/// Resolved parameter values for one tensor (booleans are 0.0 / 1.0), defaults filled in.
pub type Params = BTreeMap<String, f64>;

/// How a method uses `base_model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseUse {
    /// Required reference point (task arithmetic family, slerp, model_stock, ...).
    Required,
    /// Optional third model (nuslerp).
    Optional,
    /// Not a reference: an appended base is one more ordinary input (linear).
    AsInput,
    /// Exactly one input, no base (passthrough).
    None,
}

#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    /// Global (method) parameter, or per-model ("tensor") parameter.
    pub per_model: bool,
    pub default: Option<f64>,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    pub name: &'static str,
    pub pretty_name: &'static str,
    pub paper: &'static str,
    pub base: BaseUse,
    pub stochastic: bool,
}

impl MethodSpec {
    /// Parameters this method accepts under `compat` (the 2024 profile makes `lambda` and
    /// `epsilon` per-model for DELLA).
    pub fn params(&self, _compat: Compat) -> Vec<ParamSpec> {
        todo!("kernels helper")
    }
}

/// Every method lamarck implements.
pub static METHODS: &[MethodSpec] = &[];

pub fn lookup(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

/// One model's input for one tensor.
#[derive(Debug, Clone, Copy)]
pub struct ModelTensor<'a> {
    pub data: &'a [f32],
    /// This model's per-model parameters, resolved for this tensor.
    pub params: &'a Params,
}

/// Everything a kernel sees for one output tensor. The runner has already cut embeddings
/// to a common shape, so every input has `shape`.
#[derive(Debug, Clone)]
pub struct TensorJob<'a> {
    /// Output tensor name (used for the RNG key and messages only).
    pub name: &'a str,
    pub shape: &'a [usize],
    /// The base model's tensor, for methods with [`BaseUse::Required`] / [`BaseUse::Optional`].
    pub base: Option<&'a [f32]>,
    /// Non-base inputs in config order (for [`BaseUse::AsInput`], the base is among them).
    pub models: Vec<ModelTensor<'a>>,
    /// Global parameters, resolved for this tensor.
    pub params: &'a Params,
    /// The recipe's compute dtype (`dtype:`), for mergekit-compatible rounding of weights.
    pub compute_dtype: DType,
    pub rng: RngKey,
    pub compat: Compat,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{method}: {message}")]
    Invalid {
        method: &'static str,
        message: String,
    },
}

/// Run `method` on one tensor. Output is f32 in `job.shape`.
pub fn merge_tensor(_method: &MethodSpec, _job: &TensorJob) -> Result<Vec<f32>, Error> {
    todo!("kernels helper")
}
