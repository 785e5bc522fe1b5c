//! IFEval: lm-eval's `ifeval` task's instruction checkers (`lm_eval/tasks/ifeval/`,
//! lm-eval 0.4.9), as the built-in `utils.process_results` and `utils.agg_inst_level_acc`.
//!
//! A document has `instruction_id_list`, one `kwargs` object per instruction and the
//! `prompt`; [`check`] gives each instruction's strict and loose verdict on a response:
//!
//! - strict: the response as generated, non-blank, passes the check;
//! - loose: any of eight variants passes: the response, with its first line removed,
//!   its last line removed, both, and each of those four with every `*` deleted.
//!
//! [`process_results`] returns lm-eval's four per-document values and [`Scores`] the
//! four metrics: `prompt_level_*_acc` is the mean over documents of "every instruction
//! followed", `inst_level_*_acc` the mean over all instructions (`agg_inst_level_acc`).
//!
//! Checker groups follow the registry's prefixes ([`registry::INSTRUCTIONS`] lists all
//! 25 ids); [`text`] holds the ports of what they call in Python (nltk's Punkt and
//! word tokenizer, langdetect, `json.loads`, `str` predicates). Where a verdict can
//! differ from lm-eval's is written down in evals/README.md, "## IFEval".
pub mod change_case;
pub mod combination;
pub mod content;
pub mod error;
pub mod format;
pub mod keywords;
pub mod kwargs;
pub mod language;
pub mod length;
pub mod punctuation;
pub mod registry;
pub mod startend;
pub mod text;

use serde_json::{Map, Value};

pub use error::{Error, Result};

/// Each instruction's verdicts on one response, in `instruction_id_list` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdicts {
    pub strict: Vec<bool>,
    pub loose: Vec<bool>,
}

impl Verdicts {
    pub fn prompt_level_strict(&self) -> bool {
        self.strict.iter().all(|&b| b)
    }
    pub fn prompt_level_loose(&self) -> bool {
        self.loose.iter().all(|&b| b)
    }
}

/// lm-eval's loose variants of a response, in its order.
pub fn loose_variants(response: &str) -> [String; 8] {
    let lines: Vec<&str> = response.split('\n').collect();
    let n = lines.len();
    let join = |a: usize, b: usize| text::pystr::strip(&lines[a.min(b)..b].join("\n")).to_string();
    let first = join(1, n);
    let last = join(0, n.saturating_sub(1));
    let both = join(1, n.saturating_sub(1));
    let unstar = |s: &str| s.replace('*', "");
    [
        response.to_string(),
        unstar(response),
        first.clone(),
        last.clone(),
        both.clone(),
        unstar(&first),
        unstar(&last),
        unstar(&both),
    ]
}

fn doc_key(doc: &Value) -> String {
    match doc.get("key") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "(none)".to_string(),
    }
}

fn doc_error(message: impl Into<String>) -> Error {
    Error::Doc {
        message: message.into(),
    }
}

/// Strict and loose verdicts of every instruction of `doc` on `response`.
pub fn check(doc: &Value, response: &str) -> Result<Verdicts> {
    check_inner(doc, response).map_err(|e| Error::InDoc {
        key: doc_key(doc),
        source: Box::new(e),
    })
}

fn check_inner(doc: &Value, response: &str) -> Result<Verdicts> {
    let ids = doc
        .get("instruction_id_list")
        .and_then(Value::as_array)
        .ok_or_else(|| doc_error("`instruction_id_list` is missing or not a list"))?;
    let kwargs = doc
        .get("kwargs")
        .and_then(Value::as_array)
        .ok_or_else(|| doc_error("`kwargs` is missing or not a list"))?;
    if kwargs.len() != ids.len() {
        return Err(doc_error(format!(
            "`kwargs` has {} entries for {} instruction ids; give one object (or null) per id",
            kwargs.len(),
            ids.len()
        )));
    }
    let variants = loose_variants(response);
    let passes = |c: &registry::Checker, v: &str| !text::pystr::strip(v).is_empty() && c(v);
    let mut out = Verdicts {
        strict: Vec::new(),
        loose: Vec::new(),
    };
    for (i, (id, kw)) in ids.iter().zip(kwargs).enumerate() {
        let id = id
            .as_str()
            .ok_or_else(|| doc_error(format!("`instruction_id_list[{i}]` is not a string")))?;
        let kw: Option<&Map<String, Value>> = match kw {
            Value::Object(m) => Some(m),
            Value::Null => None,
            _ => return Err(doc_error(format!("`kwargs[{i}]` is not an object"))),
        };
        let checker = registry::build(id, kw)?;
        out.strict.push(passes(&checker, response));
        out.loose.push(variants.iter().any(|v| passes(&checker, v)));
    }
    Ok(out)
}

/// lm-eval's `process_results` for one document: `prompt_level_strict_acc` and
/// `prompt_level_loose_acc` (bools), `inst_level_strict_acc` and `inst_level_loose_acc`
/// (one bool per instruction).
pub fn process_results(doc: &Value, response: &str) -> Result<Map<String, Value>> {
    let v = check(doc, response)?;
    let mut m = Map::new();
    m.insert(
        "prompt_level_strict_acc".into(),
        v.prompt_level_strict().into(),
    );
    m.insert("inst_level_strict_acc".into(), v.strict.clone().into());
    m.insert(
        "prompt_level_loose_acc".into(),
        v.prompt_level_loose().into(),
    );
    m.insert("inst_level_loose_acc".into(), v.loose.clone().into());
    Ok(m)
}

/// lm-eval's `agg_inst_level_acc`: the mean over all instructions of all documents;
/// `None` when there is no instruction at all (lm-eval divides by zero there).
pub fn agg_inst_level_acc(items: &[Vec<bool>]) -> Option<f64> {
    let total: usize = items.iter().map(Vec::len).sum();
    let passed: usize = items.iter().flatten().filter(|&&b| b).count();
    (total > 0).then(|| passed as f64 / total as f64)
}

/// The four IFEval metrics over a set of documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub prompt_level_strict_acc: f64,
    pub inst_level_strict_acc: f64,
    pub prompt_level_loose_acc: f64,
    pub inst_level_loose_acc: f64,
}

impl Scores {
    /// `None` when `verdicts` is empty or has no instruction.
    pub fn from_verdicts(verdicts: &[Verdicts]) -> Option<Scores> {
        if verdicts.is_empty() {
            return None;
        }
        let mean = |f: fn(&Verdicts) -> bool| {
            verdicts.iter().filter(|v| f(v)).count() as f64 / verdicts.len() as f64
        };
        let strict: Vec<Vec<bool>> = verdicts.iter().map(|v| v.strict.clone()).collect();
        let loose: Vec<Vec<bool>> = verdicts.iter().map(|v| v.loose.clone()).collect();
        Some(Scores {
            prompt_level_strict_acc: mean(Verdicts::prompt_level_strict),
            inst_level_strict_acc: agg_inst_level_acc(&strict)?,
            prompt_level_loose_acc: mean(Verdicts::prompt_level_loose),
            inst_level_loose_acc: agg_inst_level_acc(&loose)?,
        })
    }
}
