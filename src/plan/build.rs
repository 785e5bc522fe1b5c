//! [`build`]: the planner (mergekit's `MergePlanner`). Normalises `models:` into one slice,
//! renumbers layers across slices, picks embedding inputs from the first slice and
//! final-norm/lm_head inputs from the last, applies the tied-`lm_head` fallback, and
//! resolves every parameter for every tensor.
use std::sync::Arc;

use super::error::{Error, Result};
use super::resolve;
use super::{vocab, InputModel, ModelInput, Plan, TensorInput, TensorPlan};
use crate::model::vocab::OutputVocab;
use crate::model::{Architecture, DType, WeightInfo};
use crate::recipe::{ParamSet, Stage, TokenizerSource};
use crate::registry::{self, BaseUse, Compat, ParamSpec, Params};

/// Methods of the generalized task arithmetic family: embeddings are cut to the base's shape.
const GTA: &[&str] = &[
    "task_arithmetic",
    "ties",
    "dare_ties",
    "dare_linear",
    "breadcrumbs",
    "breadcrumbs_ties",
    "della",
    "della_linear",
];

/// One source of a normalised slice.
struct PSource<'s> {
    model: usize,
    start: usize,
    params: &'s ParamSet,
    /// YAML path of the source's `parameters:` (`models[1].parameters`); `None` for a
    /// base appended by the planner.
    at: Option<String>,
}

/// A normalised output slice.
struct PSlice<'s> {
    sources: Vec<PSource<'s>>,
    base: Option<usize>,
    len: usize,
    params: &'s ParamSet,
    /// YAML path of the slice's `parameters:` (`None` in the `models:` form).
    at: Option<String>,
}

struct Ctx<'a> {
    stage: &'a Stage,
    name: &'a str,
    inputs: &'a [InputModel],
    specs: Vec<ParamSpec>,
    empty: ParamSet,
    /// The output vocabulary (`tokenizer_source`), if any.
    vocab: Option<Arc<OutputVocab>>,
}

impl Ctx<'_> {
    fn invalid(&self, message: String) -> Error {
        Error::Invalid {
            stage: self.name.to_string(),
            message,
        }
    }
    fn reference(&self, model: usize) -> &str {
        &self.inputs[model].reference
    }
    fn index(&self, reference: &str) -> Result<usize> {
        self.inputs
            .iter()
            .position(|m| m.reference == reference)
            .ok_or_else(|| {
                self.invalid(format!(
                    "model `{reference}` was not opened (internal error)"
                ))
            })
    }
    fn layers(&self, model: usize) -> Result<usize> {
        self.inputs[model]
            .config
            .num_hidden_layers()
            .ok_or_else(|| {
                self.invalid(format!(
                    "config.json of model `{}` has no `num_hidden_layers`",
                    self.reference(model)
                ))
            })
    }
}

/// Plan `stage` (display name `stage_name`) over `inputs`, which must hold one entry per
/// reference of [`Stage::model_refs`], in that order.
pub fn build(
    stage: &Stage,
    stage_name: &str,
    arch: &Architecture,
    inputs: &[InputModel],
    seed: u64,
) -> Result<Plan> {
    let mut ctx = Ctx {
        stage,
        name: stage_name,
        inputs,
        specs: stage.method.params(stage.compat),
        empty: ParamSet::new(),
        vocab: None,
    };
    let refs = stage.model_refs();
    if refs.len() != inputs.len() || refs.iter().zip(inputs).any(|(r, m)| *r != m.reference) {
        return Err(ctx.invalid(format!(
            "inputs {:?} do not match the stage's models {refs:?} (internal error)",
            inputs.iter().map(|m| &m.reference).collect::<Vec<_>>()
        )));
    }
    // the base, else the first slice's first source
    let config_donor = match (&stage.base_model, stage.slices.first()) {
        (Some(b), _) => ctx.index(b)?,
        (None, Some(s)) if !s.sources.is_empty() => ctx.index(&s.sources[0].model)?,
        _ => return Err(ctx.invalid("the stage has no models".into())),
    };
    let tokenizer_donor = match &stage.tokenizer_source {
        None | Some(TokenizerSource::Base) => config_donor,
        Some(TokenizerSource::Model(m)) => ctx.index(m)?,
    };
    ctx.vocab = vocab::output_vocab(
        stage_name,
        stage.tokenizer_source.as_ref(),
        inputs,
        config_donor,
        Some(tokenizer_donor),
    )?;
    let slices = normalise(&ctx)?;
    let mut tensors = Vec::new();
    let post_t = match stage.compat {
        Compat::Mergekit => 0.0,
        Compat::Mergekit2024 => 1.0,
    };
    let (first, last) = (&slices[0], &slices[slices.len() - 1]);
    for w in &arch.pre_weights {
        let names = vec![w.name.clone(); first.sources.len()];
        tensors.extend(tensor(&ctx, w, &w.name, &names, first, 0.0)?);
    }
    let mut layer = 0;
    let mut layer_origins = Vec::new();
    for s in &slices {
        for k in 0..s.len {
            layer_origins.push(s.sources[0].start + k);
            let t = if s.len == 1 {
                1.0
            } else {
                k as f64 / (s.len - 1) as f64
            };
            for w in &arch.layer_weights {
                let out = Architecture::layer_name(&w.name, layer);
                let names: Vec<String> = s
                    .sources
                    .iter()
                    .map(|src| Architecture::layer_name(&w.name, src.start + k))
                    .collect();
                tensors.extend(tensor(&ctx, w, &out, &names, s, t)?);
            }
            layer += 1;
        }
    }
    for w in &arch.post_weights {
        let names = vec![w.name.clone(); last.sources.len()];
        tensors.extend(tensor(&ctx, w, &w.name, &names, last, post_t)?);
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));

    let donor_tied = inputs[config_donor].config.tie_word_embeddings();
    if donor_tied && tensors.iter().any(|t| t.name == "lm_head.weight") {
        tracing::warn!(
            "stage `{stage_name}`: the output has `lm_head.weight` but `{}`'s config says \
             tie_word_embeddings: true, so transformers will ignore the merged head",
            inputs[config_donor].reference
        );
    }
    Ok(Plan {
        stage: stage_name.to_string(),
        method: stage.method,
        compat: stage.compat,
        seed,
        models: inputs.iter().map(|m| m.reference.clone()).collect(),
        config_donor,
        tokenizer_donor,
        num_hidden_layers: (!stage.models_form).then_some(layer),
        layer_origins,
        config_dtype: stage.out_dtype.or(stage.dtype),
        tensors,
        output_tokenizer: match &ctx.vocab {
            Some(v) => vocab::built_tokenizer(stage_name, v),
            None => inputs[tokenizer_donor].tokenizer.clone(),
        },
        vocab: ctx.vocab.clone(),
    })
}

/// `models:` → one slice of whole models (base appended); `slices:` checked for ranges and
/// equal lengths.
fn normalise<'s>(ctx: &'s Ctx<'s>) -> Result<Vec<PSlice<'s>>> {
    let stage = ctx.stage;
    let method = stage.method;
    let mut out = Vec::new();
    for (i, slice) in stage.slices.iter().enumerate() {
        let where_ = if stage.models_form {
            "models".to_string()
        } else {
            format!("slices[{i}]")
        };
        let base_ref = slice.base_model.as_ref().or(stage.base_model.as_ref());
        let base = base_ref.map(|b| ctx.index(b)).transpose()?;
        if method.base == BaseUse::Required && base.is_none() {
            return Err(ctx.invalid(format!(
                "merge method `{}` needs `base_model:`",
                method.name
            )));
        }
        if method.base == BaseUse::None && base.is_some() {
            return Err(ctx.invalid(format!(
                "merge method `{}` takes no `base_model:`; remove it",
                method.name
            )));
        }
        let mut sources = Vec::new();
        for (j, src) in slice.sources.iter().enumerate() {
            let model = ctx.index(&src.model)?;
            let layers = ctx.layers(model)?;
            let [a, b] = src.layer_range.unwrap_or([0, layers]);
            if b > layers {
                return Err(ctx.invalid(format!(
                    "{where_}: layer_range [{a}, {b}] of model `{}` is out of bounds: it has {layers} layers",
                    src.model
                )));
            }
            sources.push((
                PSource {
                    model,
                    start: a,
                    params: &src.parameters,
                    at: Some(if stage.models_form {
                        format!("models[{j}].parameters")
                    } else {
                        format!("slices[{i}].sources[{j}].parameters")
                    }),
                },
                b - a,
            ));
        }
        if let Some(b) = base {
            if !sources.iter().any(|(s, _)| s.model == b) {
                if !stage.models_form {
                    return Err(ctx.invalid(format!(
                        "{where_}: base model `{}` is not among the slice's sources; add it with a layer_range",
                        ctx.reference(b)
                    )));
                }
                let layers = ctx.layers(b)?;
                sources.push((
                    PSource {
                        model: b,
                        start: 0,
                        params: &ctx.empty,
                        at: None,
                    },
                    layers,
                ));
            }
        }
        let separate = matches!(method.base, BaseUse::Required | BaseUse::Optional);
        let counted = sources
            .iter()
            .filter(|(s, _)| !(separate && Some(s.model) == base))
            .count();
        method
            .check_inputs(counted, base.is_some())
            .map_err(|e| ctx.invalid(format!("{where_}: {e}")))?;
        let len = sources[0].1;
        if let Some((bad, n)) = sources.iter().find(|(_, n)| *n != len) {
            return Err(ctx.invalid(format!(
                "{where_}: sources span different numbers of layers: `{}` has {len}, `{}` has {n}",
                ctx.reference(sources[0].0.model),
                ctx.reference(bad.model)
            )));
        }
        out.push(PSlice {
            sources: sources.into_iter().map(|(s, _)| s).collect(),
            base,
            len,
            params: &slice.parameters,
            at: (!stage.models_form).then(|| format!("slices[{i}].parameters")),
        });
    }
    Ok(out)
}

/// Plan one output tensor, or `None` when it is optional and no input has it.
fn tensor(
    ctx: &Ctx,
    w: &WeightInfo,
    out: &str,
    names: &[String],
    slice: &PSlice,
    t: f64,
) -> Result<Option<TensorPlan>> {
    let inputs = ctx.inputs;
    let has = |model: usize, name: &str| inputs[model].tensors.get(name);
    if w.optional
        && !slice
            .sources
            .iter()
            .zip(names)
            .any(|(s, n)| has(s.model, n).is_some())
    {
        return Ok(None);
    }
    let mut found: Vec<TensorInput> = Vec::new();
    for (src, name) in slice.sources.iter().zip(names) {
        let info = has(src.model, name).or_else(|| {
            // tied fallback: a tied model supplies its embedding as lm_head
            let tied = w.tied_names.iter().find_map(|n| has(src.model, n));
            if tied.is_some() {
                tracing::debug!(
                    "{}: `{}` has no `{name}`; using its tied `{:?}`",
                    ctx.name,
                    ctx.reference(src.model),
                    w.tied_names
                );
            }
            tied
        });
        let info = info.ok_or_else(|| Error::MissingTensor {
            stage: ctx.name.to_string(),
            model: ctx.reference(src.model).to_string(),
            tensor: name.clone(),
            output: out.to_string(),
        })?;
        found.push(TensorInput {
            model: src.model,
            tensor: info.name.clone(),
            shape: info.shape.clone(),
            dtype: info.dtype,
        });
    }
    let method = ctx.stage.method;
    let separate_base = matches!(method.base, BaseUse::Required | BaseUse::Optional);
    let base_pos = slice
        .base
        .filter(|_| separate_base)
        .and_then(|b| slice.sources.iter().position(|s| s.model == b));
    let shape = output_shape(ctx, w, out, &found, base_pos)?;

    let global =
        resolve::global(&ctx.specs, slice.params, &ctx.stage.parameters, out, t).map_err(|p| {
            ctx.invalid(format!(
                "global parameter `{p}` of `{}` is required but not set (tensor `{out}`)",
                method.name
            ))
        })?;
    let mut models = Vec::new();
    let mut base = None;
    for (i, (src, input)) in slice.sources.iter().zip(found).enumerate() {
        // a base that is an ordinary input (linear) needs its parameters like any model
        let is_base = separate_base && slice.base == Some(src.model);
        if Some(i) == base_pos {
            base = Some(input);
            continue;
        }
        let params = resolve::per_model(
            &ctx.specs,
            src.params,
            slice.params,
            &ctx.stage.parameters,
            &names[i],
            t,
            is_base,
        )
        .map_err(|p| Error::MissingParameter {
            stage: ctx.name.to_string(),
            param: p.to_string(),
            model: ctx.reference(src.model).to_string(),
            tensor: names[i].clone(),
        })?;
        models.push(ModelInput { input, params });
    }
    // Every value checked now, before any byte is written (DELLA's density ± epsilon, ...).
    let per_model: Vec<&Params> = models.iter().map(|m| &m.params).collect();
    method
        .validate_params(ctx.stage.compat, &global, &per_model)
        .map_err(|e| {
            let srcs: Vec<&PSource> = slice
                .sources
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != base_pos)
                .map(|(_, s)| s)
                .collect();
            let refs: Vec<&str> = srcs.iter().map(|s| ctx.reference(s.model)).collect();
            let fix = match &e {
                registry::Error::ModelValues { model, params, .. } => {
                    let set: Vec<String> = params
                        .iter()
                        .map(|p| origin(ctx, slice, srcs[*model], p))
                        .collect();
                    format!("fix {} in the recipe", set.join(" or "))
                }
                registry::Error::Invalid { .. } => "fix the value in the recipe".into(),
            };
            ctx.invalid(format!(
                "tensor `{out}`: {e} (models in config order: {}); {fix}",
                refs.join(", ")
            ))
        })?;
    // mergekit 0.1.5 promotes the inputs' dtypes (torch.promote_types): one dtype stays,
    // any mix (bf16 + f16, anything + f32) computes and writes float32
    let mut dtypes = base
        .iter()
        .map(|b| b.dtype)
        .chain(models.iter().map(|m| m.input.dtype));
    let reference_dtype = match dtypes.next() {
        Some(first) if dtypes.all(|d| d == first) => first,
        _ => DType::F32,
    };
    let compute_dtype = ctx.stage.dtype.unwrap_or(reference_dtype);
    let out_dtype = ctx
        .stage
        .out_dtype
        .or(ctx.stage.dtype)
        .unwrap_or(reference_dtype);
    Ok(Some(TensorPlan {
        name: out.to_string(),
        shape,
        is_embed: w.is_embed,
        out_dtype,
        compute_dtype,
        t,
        base,
        models,
        params: global,
        base_model: slice.base,
    }))
}

/// Where `param`'s value for `src` was set, as the YAML path a user edits: the source's own
/// `parameters:`, else the slice's, else the document's; `the default of `param`` when none.
fn origin(ctx: &Ctx, slice: &PSlice, src: &PSource, param: &str) -> String {
    match (&src.at, &slice.at) {
        (Some(at), _) if src.params.contains_key(param) => format!("`{at}.{param}`"),
        (_, Some(at)) if slice.params.contains_key(param) => format!("`{at}.{param}`"),
        _ if ctx.stage.parameters.contains_key(param) => format!("`parameters.{param}`"),
        _ => format!("`{param}` (its default; set it under `parameters:`)"),
    }
}

/// Non-embeddings must agree exactly. Embeddings are cut as mergekit does: to the base's
/// shape for the task-arithmetic family, else to the common top-left sub-matrix.
fn output_shape(
    ctx: &Ctx,
    w: &WeightInfo,
    out: &str,
    found: &[TensorInput],
    base_pos: Option<usize>,
) -> Result<Vec<usize>> {
    let mismatch = |a: &TensorInput, b: &TensorInput| Error::ShapeMismatch {
        stage: ctx.name.to_string(),
        tensor: b.tensor.clone(),
        model: ctx.reference(b.model).to_string(),
        got: b.shape.clone(),
        other: ctx.reference(a.model).to_string(),
        expected: a.shape.clone(),
    };
    let first = &found[0];
    if found.iter().any(|f| f.shape.len() != first.shape.len())
        || (!w.is_embed && found.iter().any(|f| f.shape != first.shape))
    {
        let bad = found
            .iter()
            .find(|f| f.shape != first.shape)
            .unwrap_or(first);
        return Err(mismatch(first, bad));
    }
    if let (true, Some(v)) = (w.is_embed, ctx.vocab.as_deref()) {
        // every input is re-laid out to the output vocabulary: only the hidden size must agree
        if let Some(bad) = found
            .iter()
            .find(|f| f.shape.len() != 2 || f.shape[1] != first.shape[1])
        {
            return Err(mismatch(first, bad));
        }
        return Ok(vec![v.rows, first.shape[1]]);
    }
    if GTA.contains(&ctx.stage.method.name) {
        if let Some(b) = base_pos {
            let base = &found[b];
            if let Some(small) = found
                .iter()
                .find(|f| f.shape.iter().zip(&base.shape).any(|(x, y)| x < y))
            {
                return Err(ctx.invalid(format!(
                    "`{out}` of model `{}` has shape {:?}, smaller than the base `{}`'s {:?}; task arithmetic \
                     cannot merge a model with a smaller vocabulary than its base",
                    ctx.reference(small.model), small.shape, ctx.reference(base.model), base.shape
                )));
            }
            return Ok(base.shape.clone());
        }
    }
    let mut shape = first.shape.clone();
    for f in found {
        for (s, d) in shape.iter_mut().zip(&f.shape) {
            *s = (*s).min(*d);
        }
    }
    if found.iter().any(|f| f.shape != shape) {
        tracing::warn!(
            "{}: `{out}`: inputs differ in shape; using the common top-left part {shape:?}",
            ctx.name
        );
    }
    Ok(shape)
}
