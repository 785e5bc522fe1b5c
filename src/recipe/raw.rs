//! One YAML document → one validated [`Stage`], mirroring mergekit's `MergeConfiguration`.
//!
//! The document is walked as a `serde_yaml_ng::Value` so every error can name its YAML
//! path. Unlike mergekit (pydantic drops unknown keys silently), an unknown key or a
//! parameter the method does not use is an error with a "did you mean" suggestion.
use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use super::error::{closest, Error, Location, Result};
use super::param::{ParamSet, ParamValue};
use super::types::{Slice, Source, Stage, TokenizerSource};
use crate::model::DType;
use crate::registry::{lookup, Compat, MethodSpec, ParamSpec, METHODS};

/// Keys a document may have (ours: `seed`, `compat`).
const TOP_KEYS: &[&str] = &[
    "merge_method",
    "base_model",
    "models",
    "slices",
    "parameters",
    "dtype",
    "out_dtype",
    "tokenizer_source",
    "name",
    "seed",
    "compat",
    "tokenizer",
    "modules",
    "chat_template",
];
const SLICE_KEYS: &[&str] = &["sources", "base_model", "parameters", "residual_weight"];
const SOURCE_KEYS: &[&str] = &["model", "layer_range", "parameters"];
const MODEL_KEYS: &[&str] = &["model", "parameters"];

/// File and document being parsed.
pub(crate) struct Ctx<'a> {
    pub file: &'a Path,
    pub document: usize,
}

impl Ctx<'_> {
    pub fn at(&self, path: impl Into<String>) -> Location {
        Location {
            file: self.file.to_path_buf(),
            document: self.document,
            path: path.into(),
        }
    }
    fn invalid(&self, path: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            at: self.at(path),
            message: message.into(),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// String keys of a mapping, or an error for a non-string key.
fn entries<'v>(ctx: &Ctx, path: &str, map: &'v Mapping) -> Result<Vec<(&'v str, &'v Value)>> {
    map.iter()
        .map(|(k, v)| match k.as_str() {
            Some(k) => Ok((k, v)),
            None => Err(ctx.invalid(path, format!("keys must be strings, got {k:?}"))),
        })
        .collect()
}

fn mapping<'v>(ctx: &Ctx, path: &str, v: &'v Value, what: &str) -> Result<&'v Mapping> {
    v.as_mapping()
        .ok_or_else(|| ctx.invalid(path, format!("expected {what} (a mapping)")))
}

fn string(ctx: &Ctx, path: &str, v: &Value, what: &str) -> Result<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(ctx.invalid(path, format!("expected {what} (a non-empty string)"))),
    }
}

fn unknown_key(ctx: &Ctx, path: &str, key: &str, known: &[&str]) -> Error {
    Error::UnknownKey {
        at: ctx.at(join(path, key)),
        key: key.to_string(),
        suggestion: closest(key, known.iter().copied()),
        known: known.join(", "),
    }
}

fn dtype(ctx: &Ctx, path: &str, v: &Value) -> Result<DType> {
    let name = string(ctx, path, v, "a dtype")?;
    DType::parse_hf(&name).ok_or_else(|| {
        ctx.invalid(
            path,
            format!("unknown dtype `{name}`; use bfloat16, float16 or float32"),
        )
    })
}

/// Parameters a method accepts, with a lookup by name.
struct Accepted<'m> {
    method: &'m MethodSpec,
    params: Vec<ParamSpec>,
}

impl Accepted<'_> {
    fn names(&self) -> String {
        self.params
            .iter()
            .map(|p| format!("{}{}", p.name, if p.per_model { "" } else { " (global)" }))
            .collect::<Vec<_>>()
            .join(", ")
    }
    fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
    /// Check that `name` may be given at a level where only per-model params make sense
    /// (`per_model_only`) or anywhere.
    fn check(&self, ctx: &Ctx, path: &str, name: &str, per_model_only: bool) -> Result<()> {
        match self.get(name) {
            None => Err(Error::UnusedParameter {
                at: ctx.at(path),
                method: self.method.name.to_string(),
                param: name.to_string(),
                suggestion: closest(name, self.params.iter().map(|p| p.name)),
                accepted: self.names(),
            }),
            Some(p) if per_model_only && !p.per_model => Err(ctx.invalid(
                path,
                format!(
                    "`{name}` is a global parameter of `{}`; mergekit ignores it per model. \
                     Move it to the top-level or slice `parameters:`",
                    self.method.name
                ),
            )),
            Some(_) => Ok(()),
        }
    }
    /// Parameter `name`'s value at `path`, every number in it inside the parameter's domain
    /// (a density in [0, 1], ...): a bad value fails here, before anything is planned or
    /// written.
    fn value(&self, ctx: &Ctx, path: &str, name: &str, val: &Value) -> Result<ParamValue> {
        let v = ParamValue::from_yaml(val).map_err(|m| ctx.invalid(path, m))?;
        if let Some(spec) = self.get(name) {
            if let Some(m) = v.numbers().into_iter().find_map(|x| spec.out_of_domain(x)) {
                return Err(ctx.invalid(path, m));
            }
        }
        Ok(v)
    }
}

fn parameters(
    ctx: &Ctx,
    path: &str,
    v: &Value,
    acc: &Accepted,
    per_model_only: bool,
) -> Result<ParamSet> {
    let mut out = ParamSet::new();
    if v.is_null() {
        return Ok(out);
    }
    for (k, val) in entries(ctx, path, mapping(ctx, path, v, "parameters")?)? {
        let p = join(path, k);
        acc.check(ctx, &p, k, per_model_only)?;
        out.insert(k.to_string(), acc.value(ctx, &p, k, val)?);
    }
    Ok(out)
}

/// A key written directly on a slice or source that names a parameter of the method:
/// accepted as that level's parameter, with a warning (mergekit ignores such keys).
fn stray_parameter(
    ctx: &Ctx,
    path: &str,
    key: &str,
    val: &Value,
    acc: &Accepted,
    params: &mut ParamSet,
    per_model_only: bool,
) -> Result<()> {
    let p = join(path, key);
    acc.check(ctx, &p, key, per_model_only)?;
    if params.contains_key(key) {
        return Err(ctx.invalid(
            &p,
            format!("`{key}` is given both here and under `parameters:`"),
        ));
    }
    tracing::warn!(
        "{}: `{key}` is written directly here, not under `parameters:`; lamarck uses it as \
         this level's parameter, but mergekit would silently ignore it",
        ctx.at(&p)
    );
    params.insert(key.to_string(), acc.value(ctx, &p, key, val)?);
    Ok(())
}

fn layer_range(ctx: &Ctx, path: &str, v: &Value) -> Result<[usize; 2]> {
    let bad = || {
        ctx.invalid(
            path,
            "expected `[start, end]`: two non-negative integers, start < end",
        )
    };
    let items = v.as_sequence().ok_or_else(bad)?;
    if items.len() != 2 {
        return Err(bad());
    }
    let a = items[0].as_u64().ok_or_else(bad)? as usize;
    let b = items[1].as_u64().ok_or_else(bad)? as usize;
    if a >= b {
        return Err(ctx.invalid(
            path,
            format!("empty layer range [{a}, {b}]: start must be below end"),
        ));
    }
    Ok([a, b])
}

fn source(ctx: &Ctx, path: &str, v: &Value, acc: &Accepted, in_slice: bool) -> Result<Source> {
    let map = mapping(ctx, path, v, "a source `{model, layer_range, parameters}`")?;
    let known = if in_slice { SOURCE_KEYS } else { MODEL_KEYS };
    let (mut model, mut range, mut params) = (None, None, ParamSet::new());
    let mut stray = Vec::new();
    for (k, val) in entries(ctx, path, map)? {
        match k {
            "model" => model = Some(string(ctx, &join(path, k), val, "a model reference")?),
            "layer_range" if in_slice => range = Some(layer_range(ctx, &join(path, k), val)?),
            "parameters" => params = parameters(ctx, &join(path, k), val, acc, true)?,
            _ if acc.get(k).is_some() => stray.push((k, val)),
            _ => return Err(unknown_key(ctx, path, k, known)),
        }
    }
    for (k, val) in stray {
        stray_parameter(ctx, path, k, val, acc, &mut params, true)?;
    }
    let model = model.ok_or_else(|| ctx.invalid(path, "missing `model:`"))?;
    if in_slice && range.is_none() {
        return Err(ctx.invalid(path, "missing `layer_range: [start, end]`"));
    }
    Ok(Source {
        model,
        layer_range: range,
        parameters: params,
    })
}

fn slice(ctx: &Ctx, path: &str, v: &Value, acc: &Accepted) -> Result<Slice> {
    let map = mapping(ctx, path, v, "a slice `{sources, parameters}`")?;
    let (mut sources, mut base, mut params) = (None, None, ParamSet::new());
    let mut stray = Vec::new();
    for (k, val) in entries(ctx, path, map)? {
        let p = join(path, k);
        match k {
            "sources" => {
                let list = val
                    .as_sequence()
                    .ok_or_else(|| ctx.invalid(&p, "expected a list of sources"))?;
                let mut out = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    out.push(source(ctx, &format!("{p}[{i}]"), s, acc, true)?);
                }
                sources = Some(out);
            }
            "base_model" => base = Some(string(ctx, &p, val, "a model reference")?),
            "parameters" => params = parameters(ctx, &p, val, acc, false)?,
            "residual_weight" => tracing::warn!(
                "{}: `residual_weight` is ignored (as in mergekit)",
                ctx.at(&p)
            ),
            _ if acc.get(k).is_some() => stray.push((k, val)),
            _ => return Err(unknown_key(ctx, path, k, SLICE_KEYS)),
        }
    }
    for (k, val) in stray {
        stray_parameter(ctx, path, k, val, acc, &mut params, false)?;
    }
    let sources = sources
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ctx.invalid(path, "a slice needs a non-empty `sources:` list"))?;
    Ok(Slice {
        sources,
        base_model: base,
        parameters: params,
    })
}

/// Parse one document. `compat_override` (from `--compat`) beats the recipe's `compat:`.
pub(crate) fn parse_stage(
    ctx: &Ctx,
    doc: &Value,
    text: &str,
    compat_override: Option<Compat>,
) -> Result<Stage> {
    let map = mapping(ctx, "", doc, "a merge configuration")?;
    let entries = entries(ctx, "", map)?;
    for (k, _) in &entries {
        if !TOP_KEYS.contains(k) {
            return Err(unknown_key(ctx, "", k, &TOP_KEYS[..11]));
        }
    }
    let get = |key: &str| entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    for (key, advice) in [
        (
            "tokenizer",
            "use `tokenizer_source: base` or a model reference",
        ),
        ("modules", "use `models:` or `slices:`"),
        (
            "chat_template",
            "remove it; the donor's tokenizer files are copied as they are",
        ),
    ] {
        if get(key).is_some() {
            return Err(Error::Unsupported {
                at: ctx.at(key),
                feature: format!("`{key}:`"),
                advice: advice.into(),
            });
        }
    }
    let compat = match get("compat") {
        Some(v) => {
            let name = string(ctx, "compat", v, "a compatibility profile")?;
            let c = Compat::parse(&name).ok_or_else(|| {
                ctx.invalid(
                    "compat",
                    format!("unknown profile `{name}`; use `mergekit` or `mergekit-2024`"),
                )
            })?;
            compat_override.unwrap_or(c)
        }
        None => compat_override.unwrap_or_default(),
    };
    let method_name = match get("merge_method") {
        Some(v) => string(ctx, "merge_method", v, "a merge method name")?,
        None => return Err(ctx.invalid("", "missing `merge_method:`")),
    };
    let method = lookup(&method_name).ok_or_else(|| Error::UnknownMethod {
        at: ctx.at("merge_method"),
        method: method_name.clone(),
        suggestion: closest(&method_name, METHODS.iter().map(|m| m.name)),
        supported: METHODS
            .iter()
            .map(|m| m.name)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    let acc = Accepted {
        method,
        params: method.params(compat),
    };

    let name = get("name")
        .map(|v| string(ctx, "name", v, "a stage name"))
        .transpose()?;
    let base_model = get("base_model")
        .map(|v| string(ctx, "base_model", v, "a model reference"))
        .transpose()?;
    let params = get("parameters")
        .map(|v| parameters(ctx, "parameters", v, &acc, false))
        .transpose()?
        .unwrap_or_default();
    let dtype_ = get("dtype").map(|v| dtype(ctx, "dtype", v)).transpose()?;
    let out_dtype = get("out_dtype")
        .map(|v| dtype(ctx, "out_dtype", v))
        .transpose()?;
    let seed = match get("seed") {
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ctx.invalid("seed", "expected a non-negative integer"))?,
        ),
        None => None,
    };
    let tokenizer_source = match get("tokenizer_source") {
        None | Some(Value::Null) => None,
        Some(v) => {
            match string(ctx, "tokenizer_source", v, "`base` or a model reference")?.as_str() {
                "base" => Some(TokenizerSource::Base),
                "union" => {
                    return Err(Error::Unsupported {
                        at: ctx.at("tokenizer_source"),
                        feature: "`tokenizer_source: union`".into(),
                        advice: "use `base` or a model reference".into(),
                    })
                }
                m => Some(TokenizerSource::Model(m.to_string())),
            }
        }
    };

    let (models_form, slices) = match (get("models"), get("slices")) {
        (Some(_), Some(_)) => {
            return Err(ctx.invalid("", "give either `models:` or `slices:`, not both"))
        }
        (None, None) => return Err(ctx.invalid("", "missing `models:` or `slices:`")),
        (Some(v), None) => {
            let list = v.as_sequence().filter(|l| !l.is_empty()).ok_or_else(|| {
                ctx.invalid(
                    "models",
                    "expected a non-empty list of `{model, parameters}`",
                )
            })?;
            let mut sources = Vec::new();
            for (i, s) in list.iter().enumerate() {
                sources.push(source(ctx, &format!("models[{i}]"), s, &acc, false)?);
            }
            (
                true,
                vec![Slice {
                    sources,
                    base_model: None,
                    parameters: ParamSet::new(),
                }],
            )
        }
        (None, Some(v)) => {
            let list = v
                .as_sequence()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| ctx.invalid("slices", "expected a non-empty list of slices"))?;
            let mut out = Vec::new();
            for (i, s) in list.iter().enumerate() {
                out.push(slice(ctx, &format!("slices[{i}]"), s, &acc)?);
            }
            (false, out)
        }
    };
    Ok(Stage {
        name,
        document: ctx.document,
        text: text.to_string(),
        method,
        base_model,
        models_form,
        slices,
        parameters: params,
        dtype: dtype_,
        out_dtype,
        tokenizer_source,
        seed,
        compat,
    })
}
