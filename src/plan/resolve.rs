//! Parameter precedence (mergekit-spec §2.4): source → slice → top level → default.
//! Global parameters skip the source level and are matched against the output tensor
//! name; per-model parameters are matched against the source's input tensor name.
use crate::recipe::ParamSet;
use crate::registry::{ParamSpec, Params};

/// The first level that yields a value, else the default.
fn first(levels: &[&ParamSet], name: &str, tensor: &str, t: f64, spec: &ParamSpec) -> Option<f64> {
    levels
        .iter()
        .find_map(|l| l.get(name).and_then(|v| v.eval(tensor, t)))
        .or(spec.default)
}

/// Global parameters for output tensor `output` at position `t`.
/// `Err(name)` when a required one is unset.
pub(crate) fn global(
    specs: &[ParamSpec],
    slice: &ParamSet,
    top: &ParamSet,
    output: &str,
    t: f64,
) -> Result<Params, &'static str> {
    let mut out = Params::new();
    for spec in specs.iter().filter(|s| !s.per_model) {
        match first(&[slice, top], spec.name, output, t, spec) {
            Some(v) => {
                out.insert(spec.name.to_string(), v);
            }
            None if spec.required => return Err(spec.name),
            None => {}
        }
    }
    Ok(out)
}

/// Per-model parameters of one source for its input tensor `input` at position `t`.
/// Required parameters may be unset for the base model.
pub(crate) fn per_model(
    specs: &[ParamSpec],
    source: &ParamSet,
    slice: &ParamSet,
    top: &ParamSet,
    input: &str,
    t: f64,
    is_base: bool,
) -> Result<Params, &'static str> {
    let mut out = Params::new();
    for spec in specs.iter().filter(|s| s.per_model) {
        match first(&[source, slice, top], spec.name, input, t, spec) {
            Some(v) => {
                out.insert(spec.name.to_string(), v);
            }
            None if spec.required && !is_base => return Err(spec.name),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{Numeric, ParamValue};

    fn spec(
        name: &'static str,
        per_model: bool,
        default: Option<f64>,
        required: bool,
    ) -> ParamSpec {
        ParamSpec {
            name,
            per_model,
            default,
            required,
            doc: "",
            boolean: false,
            range: (0.0, 1.0),
            domain: None,
        }
    }
    fn set(pairs: &[(&str, ParamValue)]) -> ParamSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
    fn scalar(v: f64) -> ParamValue {
        ParamValue::Plain(Numeric::Scalar(v))
    }

    #[test]
    fn source_beats_slice_beats_top_beats_default() {
        let specs = [
            spec("weight", true, None, true),
            spec("density", true, Some(1.0), false),
        ];
        let top = set(&[("weight", scalar(0.1)), ("density", scalar(0.2))]);
        let slice = set(&[("weight", scalar(0.3))]);
        let source = set(&[("weight", scalar(0.5))]);
        let p = per_model(&specs, &source, &slice, &top, "x", 0.0, false).unwrap();
        assert_eq!((p["weight"], p["density"]), (0.5, 0.2));
        let p = per_model(&specs, &ParamSet::new(), &slice, &top, "x", 0.0, false).unwrap();
        assert_eq!(p["weight"], 0.3);
        let p = per_model(
            &specs,
            &ParamSet::new(),
            &ParamSet::new(),
            &ParamSet::new(),
            "x",
            0.0,
            true,
        )
        .unwrap();
        assert_eq!(
            p.get("weight"),
            None,
            "base may leave a required parameter unset"
        );
        assert_eq!(p["density"], 1.0);
        assert_eq!(
            per_model(
                &specs,
                &ParamSet::new(),
                &ParamSet::new(),
                &ParamSet::new(),
                "x",
                0.0,
                false
            ),
            Err("weight")
        );
    }

    #[test]
    fn global_params_skip_the_source_and_fall_through_unmatched_filters() {
        let specs = [spec("t", false, None, true)];
        let filtered: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("[{filter: mlp, value: [0, 1]}]").unwrap();
        let slice = set(&[("t", ParamValue::from_yaml(&filtered).unwrap())]);
        let top = set(&[("t", scalar(0.4))]);
        let mlp = global(
            &specs,
            &slice,
            &top,
            "model.layers.2.mlp.up_proj.weight",
            0.25,
        )
        .unwrap();
        assert_eq!(mlp["t"], 0.25);
        let attn = global(
            &specs,
            &slice,
            &top,
            "model.layers.2.self_attn.q_proj.weight",
            0.25,
        )
        .unwrap();
        assert_eq!(
            attn["t"], 0.4,
            "unmatched filter falls through to the next level"
        );
        assert_eq!(
            global(&specs, &ParamSet::new(), &ParamSet::new(), "x", 0.0),
            Err("t")
        );
    }

    #[test]
    fn per_model_filters_see_the_input_name() {
        let specs = [spec("weight", true, None, true)];
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("[{filter: layers.7., value: 2}, {value: 1}]").unwrap();
        let top = set(&[("weight", ParamValue::from_yaml(&v).unwrap())]);
        let p = per_model(
            &specs,
            &ParamSet::new(),
            &ParamSet::new(),
            &top,
            "model.layers.7.mlp.up_proj.weight",
            0.0,
            false,
        )
        .unwrap();
        assert_eq!(p["weight"], 2.0);
    }
}
