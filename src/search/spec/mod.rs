//! The search file (`searches/*.yaml`): which recipe, which genes, which objectives, which
//! optimizer, how much budget. Every key is checked; an unknown one is an error with a
//! "did you mean" hint, because a misspelt `bugdet:` silently ignored would waste a night.
//!
//! ```yaml
//! recipe: lamarck-v0.3/recipe.yaml   # a path (relative to this file) or a list of documents
//! model_map: models.yaml             # optional: reference → folder
//! seed: 1                            # optimizer seed
//! merge_seed: 42                     # optional: seed of stochastic merges (else each stage's `seed:`, else 42)
//! population: 8
//! optimizer: {name: cmaes, sigma: 0.2}   # or `random`
//! budget: {candidates: 40, minutes: 5}
//! genes:
//!   - name: converge_t_mid
//!     stage: lamarck-14b-converge
//!     at: [slices[*].parameters.t]   # YAML paths in that stage's document; several = tied
//!     range: [0, 1]
//!     start: 0.7                     # optional; default: the value written in the recipe
//! objectives:
//!   - task: ../evals/zoo/add.yaml    # a task file (relative to this file)
//!     split: dev
//!     metric: exact_match            # default: the task's first metric
//!     weight: 1.0
//!     limit: 50
//! eval: {dtype: f32, device: cpu, batch_size: 8}
//! racing: {chunk: 100, confidence: 0.95}   # optional: stop clearly worse candidates early
//! ```
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::racing::RacingSpec;
use super::{Error, Result};
use crate::recipe::error::closest;
use crate::registry::Compat;
use lists::{genes, objectives};

mod lists;

const TOP_KEYS: &[&str] = &[
    "recipe",
    "model_map",
    "seed",
    "merge_seed",
    "compat",
    "population",
    "optimizer",
    "budget",
    "genes",
    "objectives",
    "eval",
    "racing",
    "executor",
];
const GENE_KEYS: &[&str] = &["name", "stage", "at", "range", "start"];
const OBJECTIVE_KEYS: &[&str] = &["task", "name", "split", "metric", "weight", "limit"];
const OPTIMIZER_KEYS: &[&str] = &["name", "sigma"];
const BUDGET_KEYS: &[&str] = &["candidates", "minutes"];
const EVAL_KEYS: &[&str] = &["dtype", "device", "batch_size"];
const RACING_KEYS: &[&str] = &["chunk", "confidence"];
const EXECUTOR_KEYS: &[&str] = &[
    "kind",
    "partition",
    "account",
    "gres",
    "time",
    "max_jobs",
    "sbatch_extra",
];

/// One gene: a number at one or more (tied) places of one stage's document.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneSpec {
    pub name: String,
    /// Stage name (`name:` of a document; `final` for the unnamed one).
    pub stage: String,
    /// YAML paths inside the stage's document, e.g. `models[0].parameters.density`,
    /// `slices[*].parameters.t[2]`. Every place gets the same value.
    pub at: Vec<String>,
    pub range: (f64, f64),
    pub start: Option<f64>,
}

/// One objective: a task scored on a split. Fitness = Σ weight × score.
#[derive(Debug, Clone, PartialEq)]
pub struct Objective {
    /// Column name in the records (default: the task file's stem).
    pub name: String,
    pub task: PathBuf,
    pub split: Option<String>,
    pub metric: Option<String>,
    pub weight: f64,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// CMA-ES with initial step size `sigma` in units of each gene's range.
    Cmaes { sigma: f64 },
    /// Uniform random search over the ranges (a baseline).
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budget {
    /// Candidates in all, the starting point included.
    pub candidates: Option<u64>,
    /// Wall time of one `lamarck evolve` invocation.
    pub minutes: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    pub dtype: String,
    pub device: String,
    pub batch_size: usize,
}

/// Where the recipe comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RecipeSource {
    File(PathBuf),
    Inline,
}

/// A validated search file.
#[derive(Debug, Clone)]
pub struct SearchSpec {
    pub file: PathBuf,
    pub recipe_source: RecipeSource,
    /// The recipe as multi-document YAML text.
    pub recipe_text: String,
    pub model_map: Option<PathBuf>,
    pub seed: u64,
    pub merge_seed: Option<u64>,
    pub compat: Option<Compat>,
    pub population: usize,
    pub optimizer: OptimizerKind,
    pub budget: Budget,
    pub genes: Vec<GeneSpec>,
    pub objectives: Vec<Objective>,
    pub eval: EvalSettings,
    /// Paired racing (`None`: every candidate is scored on every item).
    pub racing: Option<RacingSpec>,
    /// Where `--workers` run (local processes by default, or Slurm jobs).
    pub executor: super::executor::ExecutorSpec,
}

struct Ctx<'a> {
    file: &'a Path,
}

impl Ctx<'_> {
    fn err(&self, path: &str, message: impl Into<String>) -> Error {
        Error::Spec {
            file: self.file.to_path_buf(),
            path: if path.is_empty() {
                "(top)".into()
            } else {
                path.into()
            },
            message: message.into(),
        }
    }
    /// The mapping's entries, refusing keys outside `known`.
    fn keys<'v>(
        &self,
        path: &str,
        v: &'v Value,
        known: &[&str],
    ) -> Result<Vec<(&'v str, &'v Value)>> {
        let map: &Mapping = v
            .as_mapping()
            .ok_or_else(|| self.err(path, "expected a mapping"))?;
        let mut out = Vec::new();
        for (k, val) in map {
            let key = k
                .as_str()
                .ok_or_else(|| self.err(path, format!("keys must be strings, got {k:?}")))?;
            if !known.contains(&key) {
                return Err(Error::UnknownKey {
                    file: self.file.to_path_buf(),
                    path: if path.is_empty() {
                        "(top)".into()
                    } else {
                        path.into()
                    },
                    key: key.into(),
                    hint: closest(key, known.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default(),
                    known: known.join(", "),
                });
            }
            out.push((key, val));
        }
        Ok(out)
    }
    fn number(&self, path: &str, v: &Value) -> Result<f64> {
        v.as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| self.err(path, "expected a finite number"))
    }
    fn uint(&self, path: &str, v: &Value) -> Result<u64> {
        v.as_u64()
            .ok_or_else(|| self.err(path, "expected a non-negative integer"))
    }
    fn string(&self, path: &str, v: &Value) -> Result<String> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(self.err(path, "expected a non-empty string")),
        }
    }
    fn relative(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.file.parent().unwrap_or(Path::new("")).join(p)
        }
    }
}

fn get<'v>(entries: &[(&str, &'v Value)], key: &str) -> Option<&'v Value> {
    entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

impl SearchSpec {
    pub fn load(path: &Path) -> Result<SearchSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        SearchSpec::parse(&text, path)
    }

    /// Parse search-file text; relative paths in it are relative to `file`'s folder.
    pub fn parse(text: &str, file: &Path) -> Result<SearchSpec> {
        SearchSpec::parse_with_recipe(text, file, None)
    }

    /// As [`SearchSpec::parse`], with the recipe text given (a resumed run uses the text
    /// recorded in `run.yaml`, not the file as it is now).
    pub fn parse_with_recipe(text: &str, file: &Path, recipe: Option<&str>) -> Result<SearchSpec> {
        let ctx = Ctx { file };
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| {
            ctx.err(
                &e.location()
                    .map_or(String::new(), |l| format!("line {}", l.line())),
                format!("not valid YAML: {e}"),
            )
        })?;
        let top = ctx.keys("", &doc, TOP_KEYS)?;
        let (recipe_source, recipe_text) = match get(&top, "recipe") {
            None => {
                return Err(ctx.err(
                    "recipe",
                    "missing: a recipe file path or a list of documents",
                ))
            }
            Some(Value::String(p)) => {
                let path = ctx.relative(p);
                let text = match recipe {
                    Some(t) => t.to_string(),
                    None => std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?,
                };
                (RecipeSource::File(path), text)
            }
            Some(Value::Sequence(docs)) if !docs.is_empty() => {
                let mut text = String::new();
                for (i, d) in docs.iter().enumerate() {
                    if !d.is_mapping() {
                        return Err(ctx.err(
                            &format!("recipe[{i}]"),
                            "expected a recipe document (a mapping)",
                        ));
                    }
                    let body = serde_yaml_ng::to_string(d)
                        .map_err(|e| ctx.err(&format!("recipe[{i}]"), e.to_string()))?;
                    text.push_str("---\n");
                    text.push_str(&body);
                }
                (RecipeSource::Inline, text)
            }
            Some(_) => {
                return Err(ctx.err(
                    "recipe",
                    "expected a file path or a non-empty list of recipe documents",
                ))
            }
        };
        let model_map = get(&top, "model_map")
            .map(|v| ctx.string("model_map", v).map(|s| ctx.relative(&s)))
            .transpose()?;
        let seed = get(&top, "seed")
            .map(|v| ctx.uint("seed", v))
            .transpose()?
            .unwrap_or(0);
        let merge_seed = get(&top, "merge_seed")
            .map(|v| ctx.uint("merge_seed", v))
            .transpose()?;
        let compat = get(&top, "compat")
            .map(|v| {
                let s = ctx.string("compat", v)?;
                Compat::parse(&s).ok_or_else(|| {
                    ctx.err(
                        "compat",
                        format!("unknown profile `{s}`; use `mergekit` or `mergekit-2024`"),
                    )
                })
            })
            .transpose()?;
        let population = match get(&top, "population") {
            Some(v) => ctx.uint("population", v)? as usize,
            None => 0,
        };
        let optimizer = match get(&top, "optimizer") {
            None => OptimizerKind::Cmaes { sigma: 0.2 },
            Some(Value::String(s)) => optimizer_kind(&ctx, s, None)?,
            Some(v) => {
                let e = ctx.keys("optimizer", v, OPTIMIZER_KEYS)?;
                let name = get(&e, "name")
                    .map(|v| ctx.string("optimizer.name", v))
                    .transpose()?
                    .unwrap_or_else(|| "cmaes".into());
                let sigma = get(&e, "sigma")
                    .map(|v| ctx.number("optimizer.sigma", v))
                    .transpose()?;
                optimizer_kind(&ctx, &name, sigma)?
            }
        };
        let mut budget = Budget::default();
        if let Some(v) = get(&top, "budget") {
            let e = ctx.keys("budget", v, BUDGET_KEYS)?;
            budget.candidates = get(&e, "candidates")
                .map(|v| ctx.uint("budget.candidates", v))
                .transpose()?;
            budget.minutes = get(&e, "minutes")
                .map(|v| ctx.number("budget.minutes", v))
                .transpose()?;
            if budget.minutes.is_some_and(|m| m <= 0.0) {
                return Err(ctx.err("budget.minutes", "must be positive"));
            }
        }
        if budget.candidates.is_none() && budget.minutes.is_none() {
            return Err(ctx.err(
                "budget",
                "give `candidates:` and/or `minutes:`, or the search never ends",
            ));
        }
        let genes = genes(&ctx, get(&top, "genes"))?;
        let objectives = objectives(&ctx, get(&top, "objectives"))?;
        let mut eval = EvalSettings {
            dtype: "f32".into(),
            device: "cpu".into(),
            batch_size: 8,
        };
        if let Some(v) = get(&top, "eval") {
            let e = ctx.keys("eval", v, EVAL_KEYS)?;
            if let Some(v) = get(&e, "dtype") {
                eval.dtype = ctx.string("eval.dtype", v)?;
            }
            if let Some(v) = get(&e, "device") {
                eval.device = ctx.string("eval.device", v)?;
            }
            if let Some(v) = get(&e, "batch_size") {
                eval.batch_size = (ctx.uint("eval.batch_size", v)? as usize).max(1);
            }
        }
        let racing = match get(&top, "racing") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::String(s)) if s == "off" => None,
            Some(v) => {
                let e = ctx.keys("racing", v, RACING_KEYS)?;
                let chunk = get(&e, "chunk")
                    .map(|v| ctx.uint("racing.chunk", v))
                    .transpose()?
                    .ok_or_else(|| {
                        ctx.err("racing", "missing `chunk:` (items per look, e.g. 100)")
                    })?;
                if chunk == 0 {
                    return Err(ctx.err("racing.chunk", "must be at least 1"));
                }
                let confidence = get(&e, "confidence")
                    .map(|v| ctx.number("racing.confidence", v))
                    .transpose()?
                    .unwrap_or(0.95);
                if !(confidence > 0.0 && confidence < 1.0) {
                    return Err(ctx.err(
                        "racing.confidence",
                        format!("must be in (0, 1), e.g. 0.95; got {confidence}"),
                    ));
                }
                Some(RacingSpec {
                    chunk: chunk as usize,
                    confidence,
                })
            }
        };
        let executor = match get(&top, "executor") {
            None | Some(Value::Null) => super::executor::ExecutorSpec::Local,
            Some(v) => executor_spec(&ctx, v)?,
        };
        let population = if population == 0 {
            // cma's default: 4 + floor(3 ln n)
            4 + (3.0 * (genes.len().max(1) as f64).ln()).floor() as usize
        } else {
            population
        };
        Ok(SearchSpec {
            file: file.to_path_buf(),
            recipe_source,
            recipe_text,
            model_map,
            seed,
            merge_seed,
            compat,
            population,
            optimizer,
            budget,
            genes,
            objectives,
            eval,
            racing,
            executor,
        })
    }
}

fn executor_spec(ctx: &Ctx, v: &Value) -> Result<super::executor::ExecutorSpec> {
    use super::executor::{ExecutorSpec, SlurmSpec};
    let e = ctx.keys("executor", v, EXECUTOR_KEYS)?;
    let text = |key: &str| {
        get(&e, key)
            .map(|v| ctx.string(&format!("executor.{key}"), v))
            .transpose()
    };
    let kind = text("kind")?.unwrap_or_else(|| "local".into());
    match kind.as_str() {
        "local" => {
            if let Some(k) = EXECUTOR_KEYS[1..].iter().find(|k| get(&e, k).is_some()) {
                return Err(ctx.err(&format!("executor.{k}"), "only for `kind: slurm`"));
            }
            Ok(ExecutorSpec::Local)
        }
        "slurm" => {
            let max_jobs = get(&e, "max_jobs")
                .map(|v| ctx.uint("executor.max_jobs", v))
                .transpose()?
                .unwrap_or(4);
            if max_jobs == 0 {
                return Err(ctx.err("executor.max_jobs", "must be at least 1"));
            }
            let sbatch_extra = match get(&e, "sbatch_extra") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Sequence(xs)) => xs
                    .iter()
                    .enumerate()
                    .map(|(i, x)| ctx.string(&format!("executor.sbatch_extra[{i}]"), x))
                    .collect::<Result<_>>()?,
                Some(_) => {
                    return Err(ctx.err(
                        "executor.sbatch_extra",
                        "a list of sbatch options, e.g. [\"--qos=low\", \"--mem=32G\"]",
                    ))
                }
            };
            Ok(ExecutorSpec::Slurm(SlurmSpec {
                partition: text("partition")?,
                account: text("account")?,
                gres: text("gres")?,
                time: text("time")?,
                max_jobs: max_jobs as usize,
                sbatch_extra,
            }))
        }
        other => Err(ctx.err(
            "executor.kind",
            format!("unknown executor `{other}`; use `local` or `slurm`"),
        )),
    }
}

fn optimizer_kind(ctx: &Ctx, name: &str, sigma: Option<f64>) -> Result<OptimizerKind> {
    match name {
        "cmaes" | "cma-es" | "cma" => {
            let sigma = sigma.unwrap_or(0.2);
            if !(sigma > 0.0 && sigma <= 1.0) {
                return Err(ctx.err(
                    "optimizer.sigma",
                    format!("must be in (0, 1] (a fraction of each gene's range), got {sigma}"),
                ));
            }
            Ok(OptimizerKind::Cmaes { sigma })
        }
        "random" => {
            if sigma.is_some() {
                return Err(ctx.err("optimizer.sigma", "random search has no sigma; remove it"));
            }
            Ok(OptimizerKind::Random)
        }
        other => Err(ctx.err(
            "optimizer.name",
            format!("unknown optimizer `{other}`; use `cmaes` or `random`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "recipe:\n  - {name: a, merge_method: linear, models: [{model: x, parameters: {weight: 1}}]}\nbudget: {candidates: 5}\ngenes:\n  - {name: w, stage: a, at: 'models[0].parameters.weight', range: [0, 2]}\nobjectives:\n  - {task: t.yaml}\n";

    #[test]
    fn a_minimal_file_parses_with_defaults() {
        let s = SearchSpec::parse(GOOD, Path::new("/s/x.yaml")).unwrap();
        assert_eq!(
            s.genes[0].at,
            vec!["models[0].parameters.weight".to_string()]
        );
        assert_eq!(s.objectives[0].task, PathBuf::from("/s/t.yaml"));
        assert_eq!(s.objectives[0].name, "t");
        assert_eq!(s.optimizer, OptimizerKind::Cmaes { sigma: 0.2 });
        assert_eq!(s.population, 4);
        assert!(s.recipe_text.starts_with("---\n"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let typo = GOOD.replace("budget:", "bugdet:");
        let e = SearchSpec::parse(&typo, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key `bugdet`") && e.contains("did you mean `budget`"),
            "{e}"
        );
        let gene_typo = GOOD.replace("range:", "rnage:");
        let e = SearchSpec::parse(&gene_typo, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`rnage`") && e.contains("genes[0]"), "{e}");
        let bad_range = GOOD.replace("[0, 2]", "[2, 0]");
        let e = SearchSpec::parse(&bad_range, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("genes[0].range"), "{e}");
        let no_budget = GOOD.replace("budget: {candidates: 5}\n", "");
        assert!(SearchSpec::parse(&no_budget, Path::new("x.yaml")).is_err());
        let bad_opt = format!("{GOOD}optimizer: {{name: nsga}}\n");
        let e = SearchSpec::parse(&bad_opt, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown optimizer `nsga`"), "{e}");
        let racing = format!("{GOOD}racing: {{chunk: 40}}\n");
        let s = SearchSpec::parse(&racing, Path::new("x.yaml")).unwrap();
        assert_eq!(
            s.racing,
            Some(RacingSpec {
                chunk: 40,
                confidence: 0.95
            })
        );
        assert_eq!(
            SearchSpec::parse(GOOD, Path::new("x.yaml")).unwrap().racing,
            None
        );
        let bad = format!("{GOOD}racing: {{chunk: 40, confidence: 1.5}}\n");
        let e = SearchSpec::parse(&bad, Path::new("x.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("racing.confidence"), "{e}");
    }
}
