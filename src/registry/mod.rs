//! The method registry: every merge method's name, paper, inputs and parameters, and the
//! checks on them, as data. It imports nothing else of lamarck's, so the recipe validator,
//! the planner, the kernels (`merge::methods`), `--help` text and the search's gene bounds
//! all read it without depending on each other.
//!
//! Adding a method: its kernel in one file under `src/merge/methods/`, and one row here
//! (a [`MethodSpec`] in [`METHODS`], with its [`Kernel`] and the parameters it accepts in
//! [`MethodSpec::params`]); the compiler then asks for the one `match` arm that runs the
//! kernel (`merge::methods::merge_tensor`). A new task-arithmetic variant is a row only
//! ([`task_arithmetic`]).
use std::collections::BTreeMap;

pub mod compat;
pub mod task_arithmetic;

pub use compat::Compat;
pub use task_arithmetic::{
    check_della, Sparsifier, Variant, BREADCRUMBS, BREADCRUMBS_TIES, DARE_LINEAR, DARE_TIES, DELLA,
    DELLA_LINEAR, TASK_ARITHMETIC, TIES,
};

/// A method or parameter the recipe asks for does not fit the method.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{method}: {message}")]
    Invalid {
        method: &'static str,
        message: String,
    },
    /// Parameter values of one model that do not fit together (DELLA's density ± epsilon).
    #[error("{method}: model #{}: {message}", .model + 1)]
    ModelValues {
        method: &'static str,
        /// Index into the per-model parameters (config order, base excluded).
        model: usize,
        /// The parameters involved, for the caller to say where each was set.
        params: &'static [&'static str],
        message: String,
    },
}

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
    /// A boolean flag (YAML `true`/`false`, carried as 1.0/0.0).
    pub boolean: bool,
    /// Meaningful range (inclusive) for validation messages and search gene bounds.
    pub range: (f64, f64),
    /// Every value a recipe may give (inclusive), checked when the recipe is read, for a
    /// parameter whose meaning bounds it (a fraction, an interpolation factor); `None`: any
    /// finite number (weights, lambda and scales may leave `range`, as in mergekit).
    pub domain: Option<(f64, f64)>,
}

impl ParamSpec {
    /// This spec with every recipe value required to lie in `[lo, hi]`.
    pub const fn within(self, lo: f64, hi: f64) -> ParamSpec {
        ParamSpec {
            domain: Some((lo, hi)),
            ..self
        }
    }

    /// Why `value` cannot be this parameter's (outside its [`ParamSpec::domain`]), as a
    /// message that says what to do; `None` when it can.
    pub fn out_of_domain(&self, value: f64) -> Option<String> {
        let (lo, hi) = self.domain?;
        (!(lo..=hi).contains(&value)).then(|| {
            format!(
                "`{}` must lie in [{lo}, {hi}] ({}), got {value}; use a value in that range",
                self.name, self.doc
            )
        })
    }
}

/// Which kernel a registry row runs.
#[derive(Debug, Clone, Copy)]
pub enum Kernel {
    Linear,
    Slerp,
    Nuslerp,
    TaskArithmetic(Variant),
    ModelStock,
    Passthrough,
}

#[derive(Debug, Clone, Copy)]
pub struct MethodSpec {
    pub name: &'static str,
    pub pretty_name: &'static str,
    pub paper: &'static str,
    pub base: BaseUse,
    pub stochastic: bool,
    /// Number of non-base inputs accepted (for [`BaseUse::AsInput`]: all inputs).
    pub min_models: usize,
    pub max_models: Option<usize>,
    pub kernel: Kernel,
}

const fn flag(name: &'static str, per_model: bool, default: bool, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        per_model,
        default: Some(if default { 1.0 } else { 0.0 }),
        required: false,
        doc,
        boolean: true,
        range: (0.0, 1.0),
        domain: None,
    }
}

const fn number(
    name: &'static str,
    per_model: bool,
    default: Option<f64>,
    range: (f64, f64),
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        per_model,
        default,
        required: false,
        doc,
        boolean: false,
        range,
        domain: None,
    }
}

const fn required(
    name: &'static str,
    per_model: bool,
    range: (f64, f64),
    doc: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        per_model,
        default: None,
        required: true,
        doc,
        boolean: false,
        range,
        domain: None,
    }
}

impl MethodSpec {
    /// Parameters this method accepts under `compat` (the 2024 profile makes `lambda` and
    /// `epsilon` per-model for DELLA).
    pub fn params(&self, compat: Compat) -> Vec<ParamSpec> {
        const WEIGHT_DOC: &str = "this model's weight";
        match self.kernel {
            Kernel::Linear => vec![
                flag("normalize", false, true, "divide by the sum of weights"),
                required("weight", true, (-10.0, 10.0), WEIGHT_DOC),
            ],
            Kernel::Slerp => vec![required(
                "t",
                false,
                (0.0, 1.0),
                "interpolation factor: 0 = base, 1 = the other model",
            )
            .within(0.0, 1.0)],
            Kernel::Nuslerp => vec![
                flag(
                    "nuslerp_flatten",
                    false,
                    true,
                    "treat the whole tensor as one vector",
                ),
                flag(
                    "nuslerp_row_wise",
                    false,
                    false,
                    "with flatten off: slerp columns (dim 0) instead of rows",
                ),
                required("weight", true, (0.0, 10.0), WEIGHT_DOC),
            ],
            Kernel::TaskArithmetic(v) => v.params(compat),
            Kernel::ModelStock => vec![flag(
                "filter_wise",
                false,
                false,
                "one ratio per row instead of per tensor",
            )],
            Kernel::Passthrough => vec![number(
                "scale",
                true,
                None,
                (-10.0, 10.0),
                "multiply the tensor by this factor",
            )],
        }
    }

    /// Check the number of inputs (`models`: non-base inputs; for [`BaseUse::AsInput`] all
    /// inputs) and the presence of a base.
    pub fn check_inputs(&self, models: usize, has_base: bool) -> Result<(), Error> {
        let invalid = |message: String| Error::Invalid {
            method: self.name,
            message,
        };
        match self.base {
            BaseUse::Required if !has_base => {
                return Err(invalid(
                    "needs a base_model; add `base_model:` to the recipe".into(),
                ))
            }
            BaseUse::None | BaseUse::AsInput if has_base && self.base == BaseUse::None => {
                return Err(invalid(
                    "takes exactly one input and no base_model; remove `base_model:`".into(),
                ))
            }
            _ => {}
        }
        let max_ok = self.max_models.is_none_or(|max| models <= max);
        if models < self.min_models || !max_ok {
            let wanted = match self.max_models {
                Some(max) if max == self.min_models => format!("exactly {max}"),
                Some(max) => format!("{} to {max}", self.min_models),
                None => format!("at least {}", self.min_models),
            };
            let message = match self.base {
                BaseUse::AsInput | BaseUse::None => format!("needs {wanted} input model(s), got {models}"),
                BaseUse::Required => format!(
                    "needs the base_model plus {wanted} other model(s), got {models} besides the base"
                ),
                BaseUse::Optional => format!(
                    "needs {wanted} model(s) besides the optional base_model, got {models}"
                ),
            };
            return Err(invalid(message));
        }
        Ok(())
    }
}

impl MethodSpec {
    /// Check resolved parameters for one tensor before any work: every required parameter
    /// is present for every model (`per_model` in [`TensorJob::models`] order) and DELLA's
    /// `density ± epsilon` lies inside (0, 1). The planner can call this for every planned
    /// tensor so a bad value fails before a byte is written; the kernels check again.
    pub fn validate_params(
        &self,
        compat: Compat,
        global: &Params,
        per_model: &[&Params],
    ) -> Result<(), Error> {
        let invalid = |message: String| Error::Invalid {
            method: self.name,
            message,
        };
        for spec in self.params(compat).iter().filter(|p| p.required) {
            if spec.per_model {
                if let Some(i) = per_model.iter().position(|p| !p.contains_key(spec.name)) {
                    return Err(invalid(format!(
                        "model #{} (config order) has no `{}`; set it under that model's `parameters:` or globally",
                        i + 1,
                        spec.name
                    )));
                }
            } else if !global.contains_key(spec.name) {
                return Err(invalid(format!(
                    "missing required parameter `{}`",
                    spec.name
                )));
            }
        }
        if let Kernel::TaskArithmetic(v) = self.kernel {
            if v.is_della() {
                for (i, p) in per_model.iter().enumerate() {
                    let density = p.get("density").copied().unwrap_or(1.0);
                    let epsilon = p.get("epsilon").copied().unwrap_or(0.15);
                    check_della(density, epsilon).map_err(|message| Error::ModelValues {
                        method: self.name,
                        model: i,
                        params: &["density", "epsilon"],
                        message,
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// Linear (model soups): weighted average of the inputs.
pub const LINEAR: MethodSpec = MethodSpec {
    name: "linear",
    pretty_name: "Linear",
    paper: "Model soups: averaging weights of multiple fine-tuned models (arXiv:2203.05482)",
    base: BaseUse::AsInput,
    stochastic: false,
    min_models: 1,
    max_models: None,
    kernel: Kernel::Linear,
};
/// Spherical interpolation between the base and one other model.
pub const SLERP: MethodSpec = MethodSpec {
    name: "slerp",
    pretty_name: "SLERP",
    paper: "Shoemake, Animating rotation with quaternion curves (SIGGRAPH 1985)",
    base: BaseUse::Required,
    stochastic: false,
    min_models: 1,
    max_models: Some(1),
    kernel: Kernel::Slerp,
};
/// Slerp with normalized weights over two models (optionally as task vectors of a base).
pub const NUSLERP: MethodSpec = MethodSpec {
    name: "nuslerp",
    pretty_name: "NuSLERP",
    paper: "mergekit's normalized-weight slerp (no paper)",
    base: BaseUse::Optional,
    stochastic: false,
    min_models: 2,
    max_models: Some(2),
    kernel: Kernel::Nuslerp,
};
/// Model Stock: interpolate the average of the fine-tunes towards the base.
pub const MODEL_STOCK: MethodSpec = MethodSpec {
    name: "model_stock",
    pretty_name: "Model Stock",
    paper: "Model Stock: All we need is just a few fine-tuned models (arXiv:2403.19522)",
    base: BaseUse::Required,
    stochastic: false,
    min_models: 2,
    max_models: None,
    kernel: Kernel::ModelStock,
};
/// Passthrough: one input copied (optionally scaled).
pub const PASSTHROUGH: MethodSpec = MethodSpec {
    name: "passthrough",
    pretty_name: "Passthrough",
    paper: "mergekit passthrough (no paper)",
    base: BaseUse::None,
    stochastic: false,
    min_models: 1,
    max_models: Some(1),
    kernel: Kernel::Passthrough,
};

/// Every method lamarck implements.
pub static METHODS: &[MethodSpec] = &[
    LINEAR,
    SLERP,
    NUSLERP,
    TASK_ARITHMETIC,
    TIES,
    DARE_TIES,
    DARE_LINEAR,
    BREADCRUMBS,
    BREADCRUMBS_TIES,
    DELLA,
    DELLA_LINEAR,
    MODEL_STOCK,
    PASSTHROUGH,
];

pub fn lookup(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_match_mergekit() {
        let names: Vec<_> = METHODS.iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            [
                "linear",
                "slerp",
                "nuslerp",
                "task_arithmetic",
                "ties",
                "dare_ties",
                "dare_linear",
                "breadcrumbs",
                "breadcrumbs_ties",
                "della",
                "della_linear",
                "model_stock",
                "passthrough"
            ]
        );
        assert!(lookup("dare").is_none());
    }

    fn defaults(method: &str, compat: Compat) -> Vec<(&'static str, bool, Option<f64>, bool)> {
        lookup(method)
            .unwrap()
            .params(compat)
            .iter()
            .map(|p| (p.name, p.per_model, p.default, p.required))
            .collect()
    }

    #[test]
    fn parameter_table_matches_mergekit_spec() {
        let m = Compat::Mergekit;
        assert_eq!(
            defaults("linear", m),
            [
                ("normalize", false, Some(1.0), false),
                ("weight", true, None, true)
            ]
        );
        assert_eq!(defaults("slerp", m), [("t", false, None, true)]);
        assert_eq!(
            defaults("model_stock", m),
            [("filter_wise", false, Some(0.0), false)]
        );
        assert_eq!(defaults("passthrough", m), [("scale", true, None, false)]);
        let gta = |normalize: f64, rescale: f64| {
            vec![
                ("int8_mask", false, Some(0.0), false),
                ("normalize", false, Some(normalize), false),
                ("rescale", false, Some(rescale), false),
                ("lambda", false, Some(1.0), false),
                ("weight", true, None, true),
                ("density", true, Some(1.0), false),
            ]
        };
        assert_eq!(defaults("task_arithmetic", m), gta(0.0, 0.0));
        assert_eq!(defaults("ties", m), gta(1.0, 0.0));
        assert_eq!(defaults("dare_ties", m), gta(0.0, 1.0));
        assert_eq!(defaults("dare_linear", m), gta(0.0, 1.0));
        let mut b = gta(0.0, 0.0);
        b.push(("gamma", true, Some(0.01), false));
        assert_eq!(defaults("breadcrumbs", m), b);
        assert_eq!(defaults("breadcrumbs_ties", m), b);
        let mut d = gta(1.0, 1.0);
        d.push(("epsilon", true, Some(0.15), false));
        assert_eq!(defaults("della", m), d);
        let mut dl = gta(0.0, 1.0);
        dl.push(("epsilon", true, Some(0.15), false));
        assert_eq!(defaults("della_linear", m), dl);
    }

    #[test]
    fn mergekit_2024_makes_della_lambda_and_epsilon_per_model() {
        let p = defaults("della", Compat::Mergekit2024);
        assert!(p.contains(&("lambda", true, Some(1.0), false)));
        assert!(p.contains(&("epsilon", true, Some(0.15), false)));
        // ≤ 0.0.6 had no `lambda` for the other task-arithmetic methods.
        assert!(!defaults("ties", Compat::Mergekit2024)
            .iter()
            .any(|p| p.0 == "lambda"));
    }

    #[test]
    fn validate_params_reports_missing_and_out_of_range_values() {
        let della = lookup("della").unwrap();
        let ok: Params = [("weight".to_string(), 1.0), ("density".to_string(), 0.5)].into();
        let bad: Params = [("weight".to_string(), 1.0), ("density".to_string(), 0.9)].into();
        let none = Params::new();
        assert!(della
            .validate_params(Compat::Mergekit, &none, &[&ok])
            .is_ok());
        // default epsilon 0.15: 0.9 + 0.15 ≥ 1
        let e = della
            .validate_params(Compat::Mergekit, &none, &[&ok, &bad])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("della: model #2: density ± epsilon"), "{e}");
        let e = della
            .validate_params(Compat::Mergekit, &none, &[&none])
            .unwrap_err()
            .to_string();
        assert!(e.contains("model #1") && e.contains("`weight`"), "{e}");
        let slerp = lookup("slerp").unwrap();
        let e = slerp
            .validate_params(Compat::Mergekit, &none, &[&none])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "slerp: missing required parameter `t`");
    }

    #[test]
    fn fractions_have_a_domain_and_weights_do_not() {
        let ties = lookup("ties").unwrap().params(Compat::Mergekit);
        let get = |n: &str| *ties.iter().find(|p| p.name == n).unwrap();
        let m = get("density").out_of_domain(1.5).unwrap();
        assert!(m.contains("[0, 1]") && m.contains("got 1.5"), "{m}");
        assert!(get("density").out_of_domain(1.0).is_none());
        assert!(get("density").out_of_domain(0.0).is_none());
        // weights may leave the search's range, as in mergekit
        assert!(get("weight").out_of_domain(100.0).is_none());
    }

    #[test]
    fn input_counts_are_checked() {
        let slerp = lookup("slerp").unwrap();
        assert!(slerp.check_inputs(1, true).is_ok());
        let e = slerp.check_inputs(2, true).unwrap_err().to_string();
        assert!(
            e.contains("needs the base_model plus exactly 1 other model(s), got 2"),
            "{e}"
        );
        assert!(slerp
            .check_inputs(1, false)
            .unwrap_err()
            .to_string()
            .contains("base_model"));
        let ms = lookup("model_stock").unwrap();
        assert!(ms
            .check_inputs(1, true)
            .unwrap_err()
            .to_string()
            .contains("at least 2"));
        let pt = lookup("passthrough").unwrap();
        assert!(pt.check_inputs(1, false).is_ok());
        assert!(pt.check_inputs(2, false).is_err());
        assert!(pt.check_inputs(1, true).is_err());
        let nu = lookup("nuslerp").unwrap();
        assert!(nu.check_inputs(2, false).is_ok() && nu.check_inputs(2, true).is_ok());
        assert!(nu.check_inputs(3, false).is_err());
    }
}
