//! Built-in equivalents of the Python hooks lm-eval task files name with `!function`.
//!
//! A task file says `process_docs: !function utils_hellaswag.process_docs`; lamarck cannot
//! run the Python, so it looks the name up in [`HOOKS`] and runs the Rust function
//! registered there, which does what lm-eval 0.4.13's function does (each module here
//! names the file it mirrors; `evals/README.md` lists where scores can differ). A name
//! not in the table is an error naming it.
//!
//! Registering a hook is one row of [`HOOKS`]: the exact dotted name the task file uses
//! and a [`Hook`] variant holding a plain function, whose variant says which YAML key it
//! may appear under.
pub mod gpirt;
pub mod hellaswag;
pub mod ifeval;
pub mod truthfulqa;
pub mod winogrande;

use std::collections::BTreeMap;

use serde_json::Value;

/// What a hook returns on failure: a message; the caller adds task, document and key.
pub type HookResult<T> = std::result::Result<T, String>;

/// The model's output for one document, as lm-eval hands it to `process_results`.
#[derive(Debug, Clone, Copy)]
pub enum Results<'a> {
    /// Multiple choice: the log-likelihood of each choice, in choice order.
    Loglikelihoods(&'a [f64]),
    /// Generation: the response text (after stop strings).
    Generation(&'a str),
}

/// One document's value of one metric: a number, or one number per sub-item (IFEval's
/// instruction-level metrics, which lm-eval aggregates by flattening).
#[derive(Debug, Clone, PartialEq)]
pub enum Score {
    One(f64),
    Many(Vec<f64>),
}

impl Score {
    /// The document's value: the number, or the mean of the sub-items (0 when none).
    pub fn value(&self) -> f64 {
        match self {
            Score::One(x) => *x,
            Score::Many(xs) if xs.is_empty() => 0.0,
            Score::Many(xs) => xs.iter().sum::<f64>() / xs.len() as f64,
        }
    }
}

/// What an aggregation hook knows besides the per-document scores.
#[derive(Debug, Clone, Default)]
pub struct AggContext {
    /// tinyBenchmarks' IRT parameters (the JSON form of `tinyBenchmarks.pkl`), if found.
    pub irt: Option<std::sync::Arc<gpirt::IrtFile>>,
}

/// An aggregated metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub value: f64,
    pub stderr: Option<f64>,
    /// One line for stderr when the number is not what the hook's name promises (the
    /// plain mean instead of gp-IRT).
    pub note: Option<String>,
}

/// A built-in hook: the variant is the YAML key it stands for.
#[derive(Clone, Copy)]
pub enum Hook {
    /// `process_docs`: one raw document → the document the templates see.
    ProcessDocs(fn(&Value) -> HookResult<Value>),
    /// `doc_to_text`: text, or (winogrande) the gold index of a multiple-input task.
    DocToText(fn(&Value) -> HookResult<Value>),
    /// `doc_to_target`: text or an index.
    DocToTarget(fn(&Value) -> HookResult<Value>),
    /// `doc_to_choice`: the choices (winogrande: the contexts).
    DocToChoice(fn(&Value) -> HookResult<Vec<String>>),
    /// `process_results`: document + model output → metric name → score.
    ProcessResults(fn(&Value, Results) -> HookResult<BTreeMap<String, Score>>),
    /// `metric_list[].aggregation`: per-document scores (document order) → one number.
    Aggregation(fn(&[Score], &AggContext) -> HookResult<Aggregate>),
}

impl Hook {
    /// The YAML key this hook may be named under (`aggregation` inside `metric_list`).
    pub fn key(&self) -> &'static str {
        match self {
            Hook::ProcessDocs(_) => "process_docs",
            Hook::DocToText(_) => "doc_to_text",
            Hook::DocToTarget(_) => "doc_to_target",
            Hook::DocToChoice(_) => "doc_to_choice",
            Hook::ProcessResults(_) => "process_results",
            Hook::Aggregation(_) => "aggregation",
        }
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hook({})", self.key())
    }
}

/// A registered hook: the `!function` name exactly as lm-eval's task files write it.
#[derive(Debug, Clone, Copy)]
pub struct HookDef {
    pub name: &'static str,
    pub hook: Hook,
    /// One line for `evals/README.md`'s table and error messages.
    pub doc: &'static str,
}

/// Every built-in hook. Add a row to register one.
pub const HOOKS: &[HookDef] = &[
    HookDef {
        name: "utils_hellaswag.process_docs",
        hook: Hook::ProcessDocs(hellaswag::process_doc),
        doc: "hellaswag query/choices/gold with bracket-stripping preprocess",
    },
    HookDef {
        name: "utils_winogrande.doc_to_text",
        hook: Hook::DocToText(winogrande::doc_to_text),
        doc: "winogrande gold index (partial scoring: choices are contexts)",
    },
    HookDef {
        name: "utils_winogrande.doc_to_target",
        hook: Hook::DocToTarget(winogrande::doc_to_target),
        doc: "winogrande continuation after the blank",
    },
    HookDef {
        name: "utils_winogrande.doc_to_choice",
        hook: Hook::DocToChoice(winogrande::doc_to_choice),
        doc: "winogrande sentence up to the blank + each option",
    },
    HookDef {
        name: "utils_truthfulqa.process_results_mc2",
        hook: Hook::ProcessResults(truthfulqa::process_results_mc2),
        doc: "truthfulqa mc2: normalised probability mass of the true answers",
    },
    HookDef {
        name: "utils.process_results",
        hook: Hook::ProcessResults(ifeval::process_results),
        doc: "IFEval: lm-eval's 25 instruction checkers, strict and loose verdicts",
    },
    HookDef {
        name: "agg_functions.agg_gpirt_arc",
        hook: Hook::Aggregation(gpirt::agg_gpirt_arc),
        doc: "tinyBenchmarks gp-IRT estimate (arc), else the mean",
    },
    HookDef {
        name: "agg_functions.agg_gpirt_gsm8k",
        hook: Hook::Aggregation(gpirt::agg_gpirt_gsm8k),
        doc: "tinyBenchmarks gp-IRT estimate (gsm8k), else the mean",
    },
    HookDef {
        name: "agg_functions.agg_gpirt_hellaswag",
        hook: Hook::Aggregation(gpirt::agg_gpirt_hellaswag),
        doc: "tinyBenchmarks gp-IRT estimate (hellaswag), else the mean",
    },
    HookDef {
        name: "agg_functions.agg_gpirt_mmlu",
        hook: Hook::Aggregation(gpirt::agg_gpirt_mmlu),
        doc: "tinyBenchmarks gp-IRT estimate (mmlu), else the mean",
    },
    HookDef {
        name: "agg_functions.agg_gpirt_truthfulqa",
        hook: Hook::Aggregation(gpirt::agg_gpirt_truthfulqa),
        doc: "tinyBenchmarks gp-IRT estimate (truthfulqa), else the mean",
    },
    HookDef {
        name: "agg_functions.agg_gpirt_winogrande",
        hook: Hook::Aggregation(gpirt::agg_gpirt_winogrande),
        doc: "tinyBenchmarks gp-IRT estimate (winogrande), else the mean",
    },
    HookDef {
        name: "utils.agg_inst_level_acc",
        hook: Hook::Aggregation(agg_inst_level_acc),
        doc: "IFEval instruction-level accuracy: mean over every instruction of every prompt",
    },
];

/// The hook registered as `name` for YAML key `key`; the error names the hook and lists
/// what is registered for that key.
pub fn lookup(name: &str, key: &str) -> HookResult<Hook> {
    let for_key: Vec<&str> = HOOKS
        .iter()
        .filter(|h| h.hook.key() == key)
        .map(|h| h.name)
        .collect();
    match HOOKS.iter().find(|h| h.name == name) {
        Some(h) if h.hook.key() == key => Ok(h.hook),
        Some(h) => Err(format!(
            "`!function {name}` is lamarck's built-in `{}` hook, not a `{key}` hook",
            h.hook.key()
        )),
        None => Err(format!(
            "`!function {name}` is not one of lamarck's built-in hooks (it cannot run Python); \
             built-in `{key}` hooks: {}; otherwise replace it with a Jinja template or a field name",
            if for_key.is_empty() {
                "none".to_string()
            } else {
                for_key.join(", ")
            }
        )),
    }
}

/// lm-eval's `ifeval/utils.py` `agg_inst_level_acc`: flatten the per-prompt lists of
/// instruction verdicts and take the mean.
fn agg_inst_level_acc(scores: &[Score], _: &AggContext) -> HookResult<Aggregate> {
    let flat: Vec<f64> = scores
        .iter()
        .flat_map(|s| match s {
            Score::One(x) => vec![*x],
            Score::Many(xs) => xs.clone(),
        })
        .collect();
    if flat.is_empty() {
        return Err("no instruction verdicts to aggregate".into());
    }
    Ok(Aggregate {
        value: flat.iter().sum::<f64>() / flat.len() as f64,
        stderr: None,
        note: None,
    })
}

/// A string field of a document, or an error naming it.
pub(crate) fn str_field<'a>(doc: &'a Value, name: &str) -> HookResult<&'a str> {
    match doc.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("field `{name}` is not a string: {other}")),
        None => Err(format!("the document has no field `{name}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookup_checks_the_key() {
        let mut names: Vec<&str> = HOOKS.iter().map(|h| h.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), HOOKS.len());
        assert!(lookup("utils_hellaswag.process_docs", "process_docs").is_ok());
        let e = lookup("utils_hellaswag.process_docs", "doc_to_text").unwrap_err();
        assert!(e.contains("not a `doc_to_text` hook"), "{e}");
        let e = lookup("utils.nope", "doc_to_text").unwrap_err();
        assert!(
            e.contains("utils.nope") && e.contains("utils_winogrande.doc_to_text"),
            "{e}"
        );
    }

    #[test]
    fn inst_level_acc_flattens() {
        let s = [Score::Many(vec![1.0, 0.0, 1.0]), Score::Many(vec![0.0])];
        let a = agg_inst_level_acc(&s, &AggContext::default()).unwrap();
        assert_eq!(a.value, 0.5);
    }
}
