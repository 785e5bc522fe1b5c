//! Parameter values as mergekit reads them: a scalar, a gradient (list of numbers), or
//! `filter`/`value` conditionals, evaluated per tensor name and layer position `t`
//! (mergekit-spec §2.3). Precedence between levels lives in the planner.
use std::collections::BTreeMap;

use serde_yaml_ng::Value;

/// A scalar or a gradient: what a conditional's `value` may be.
#[derive(Debug, Clone, PartialEq)]
pub enum Numeric {
    Scalar(f64),
    /// Piecewise-linear over t ∈ [0, 1] with equally spaced knots.
    Gradient(Vec<f64>),
}

impl Numeric {
    /// Value at position `t` (mergekit's interpolation rule).
    pub fn at(&self, t: f64) -> f64 {
        match self {
            Numeric::Scalar(v) => *v,
            Numeric::Gradient(knots) => gradient_at(knots, t),
        }
    }
}

/// `s = t·(n−1)`, `i₀ = floor(s)`, `i₁ = min(n−1, i₀+1)`, `f = s − i₀`,
/// value = `(1−f)·v[i₀] + f·v[i₁]`.
pub fn gradient_at(knots: &[f64], t: f64) -> f64 {
    let n = knots.len();
    if n == 1 {
        return knots[0];
    }
    let s = t.clamp(0.0, 1.0) * (n - 1) as f64;
    let i0 = (s.floor() as usize).min(n - 1);
    let i1 = (i0 + 1).min(n - 1);
    let f = s - i0 as f64;
    (1.0 - f) * knots[i0] + f * knots[i1]
}

/// One `{filter, value}` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditional {
    /// Substring of the tensor name; `None` or `*` matches everything.
    pub filter: Option<String>,
    pub value: Numeric,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Plain(Numeric),
    /// Scanned in order; the first matching entry wins; no match = unset.
    Conditionals(Vec<Conditional>),
}

impl ParamValue {
    /// Value for `tensor` at layer position `t`, or `None` when no conditional matches.
    pub fn eval(&self, tensor: &str, t: f64) -> Option<f64> {
        match self {
            ParamValue::Plain(n) => Some(n.at(t)),
            ParamValue::Conditionals(list) => list
                .iter()
                .find(|c| match c.filter.as_deref() {
                    None | Some("*") => true,
                    Some(f) => tensor.contains(f),
                })
                .map(|c| c.value.at(t)),
        }
    }

    /// Every number the value holds: a scalar, each gradient knot, each conditional's value.
    pub fn numbers(&self) -> Vec<f64> {
        let of = |n: &Numeric| match n {
            Numeric::Scalar(v) => vec![*v],
            Numeric::Gradient(knots) => knots.clone(),
        };
        match self {
            ParamValue::Plain(n) => of(n),
            ParamValue::Conditionals(list) => list.iter().flat_map(|c| of(&c.value)).collect(),
        }
    }

    /// Parse a YAML value. `Err` is a message without location (the caller adds it).
    pub fn from_yaml(value: &Value) -> Result<ParamValue, String> {
        match value {
            Value::Sequence(items) if items.iter().any(|v| matches!(v, Value::Mapping(_))) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Mapping(_) => {
                            out.push(conditional(item).map_err(|e| format!("entry [{i}]: {e}"))?)
                        }
                        _ => {
                            return Err(format!(
                                "entry [{i}] is not a `{{filter, value}}` mapping; a list \
                                 mixing numbers and conditionals is not allowed"
                            ))
                        }
                    }
                }
                Ok(ParamValue::Conditionals(out))
            }
            Value::Mapping(_) => Ok(ParamValue::Conditionals(vec![conditional(value)?])),
            _ => Ok(ParamValue::Plain(numeric(value)?)),
        }
    }
}

fn conditional(value: &Value) -> Result<Conditional, String> {
    let Value::Mapping(map) = value else {
        return Err("expected a `{filter, value}` mapping".into());
    };
    let mut filter = None;
    let mut val = None;
    for (k, v) in map {
        match k.as_str() {
            Some("filter") => match v {
                Value::String(s) => filter = Some(s.clone()),
                Value::Null => {}
                _ => return Err("`filter` must be a string (a substring of tensor names)".into()),
            },
            Some("value") => val = Some(numeric(v).map_err(|e| format!("`value`: {e}"))?),
            other => {
                let key = other
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{k:?}"));
                let hint = super::error::closest(&key, ["filter", "value"])
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "unknown key `{key}` in a conditional{hint}; only `filter` and `value` are allowed"
                ));
            }
        }
    }
    let value = val.ok_or("conditional without `value`")?;
    Ok(Conditional { filter, value })
}

fn number(value: &Value) -> Result<f64, String> {
    match value {
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| format!("`{n}` is not a finite number")),
        Value::String(s) => Err(format!("expected a number, got the string {s:?}")),
        Value::Null => Err("expected a number, got nothing (null)".into()),
        _ => Err("expected a number".into()),
    }
}

fn numeric(value: &Value) -> Result<Numeric, String> {
    match value {
        Value::Sequence(items) => {
            if items.is_empty() {
                return Err("a gradient needs at least one value, got `[]`".into());
            }
            let knots = items
                .iter()
                .enumerate()
                .map(|(i, v)| number(v).map_err(|e| format!("gradient value [{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Numeric::Gradient(knots))
        }
        _ => Ok(Numeric::Scalar(number(value)?)),
    }
}

/// Parameters given at one level (`parameters:` of a source, a slice or the top level).
pub type ParamSet = BTreeMap<String, ParamValue>;

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn worked_gradient_over_48_layers() {
        // mergekit-spec §2.3, verified there against mergekit in Python.
        let knots = [0.0, 0.6, 0.8];
        let expect = [
            (0, 0.0),
            (1, 0.0255),
            (10, 0.2553),
            (23, 0.5872),
            (24, 0.6043),
            (46, 0.7915),
            (47, 0.8),
        ];
        for (layer, want) in expect {
            let got = gradient_at(&knots, layer as f64 / 47.0);
            assert!(close(got, want), "layer {layer}: {got} != {want}");
        }
    }

    #[test]
    fn worked_gradient_over_8_layers() {
        let knots = [0.0, 0.6, 0.8];
        let want = [0.0, 0.1714, 0.3429, 0.5143, 0.6286, 0.6857, 0.7429, 0.8];
        for (k, w) in want.iter().enumerate() {
            let got = gradient_at(&knots, k as f64 / 7.0);
            assert!(close(got, *w), "offset {k}: {got} != {w}");
        }
    }

    #[test]
    fn conditionals_first_match_wins_and_can_be_unset() {
        let yaml: Value = serde_yaml_ng::from_str(
            "[{filter: self_attn, value: [0, 1]}, {filter: mlp, value: 0.25}]",
        )
        .unwrap();
        let p = ParamValue::from_yaml(&yaml).unwrap();
        assert_eq!(
            p.eval("model.layers.3.self_attn.q_proj.bias", 0.5),
            Some(0.5)
        );
        assert_eq!(p.eval("model.layers.3.mlp.up_proj.weight", 0.5), Some(0.25));
        assert_eq!(p.eval("model.layers.3.input_layernorm.weight", 0.5), None);
        let star: Value = serde_yaml_ng::from_str("[{filter: '*', value: 2}, {value: 3}]").unwrap();
        assert_eq!(
            ParamValue::from_yaml(&star).unwrap().eval("x", 0.0),
            Some(2.0)
        );
    }

    #[test]
    fn single_conditional_and_booleans() {
        let one: Value = serde_yaml_ng::from_str("{filter: mlp, value: true}").unwrap();
        let p = ParamValue::from_yaml(&one).unwrap();
        assert_eq!(p.eval("mlp.down_proj", 0.0), Some(1.0));
        let f: Value = serde_yaml_ng::from_str("false").unwrap();
        assert_eq!(ParamValue::from_yaml(&f).unwrap().eval("x", 0.3), Some(0.0));
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            "[]",
            "'high'",
            "[0.1, abc]",
            "[{filter: mlp}]",
            "[{filtre: mlp, value: 1}]",
            "[1, {value: 2}]",
        ] {
            let v: Value = serde_yaml_ng::from_str(bad).unwrap();
            assert!(ParamValue::from_yaml(&v).is_err(), "{bad} accepted");
        }
    }
}
