//! lm-eval task YAML, the documented subset (see `evals/README.md`).
//!
//! Parsing is strict as recipes are: every key is known or an error names it with its
//! YAML path; keys that cannot change scores are accepted and ignored. `!function` hooks
//! resolve to lamarck's built-in equivalents ([`hooks::HOOKS`]); any other is an error
//! naming it. `include:` works as in lm-eval ([`include`]).
pub mod data;
pub mod hooks;
pub mod include;
mod lists;
pub mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::{Error, Result};
use lists::{parse_filters, parse_generation, parse_metrics};

/// How a task is scored.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputType {
    /// Log-likelihood of each choice; metrics `acc`, `acc_norm`.
    MultipleChoice,
    /// Greedy generation; metric `exact_match` (after filters).
    GenerateUntil {
        until: Vec<String>,
        max_gen_toks: usize,
    },
}

/// `exact_match` options (as HF `evaluate`'s exact_match / lm-eval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactMatchOptions {
    pub ignore_case: bool,
    pub ignore_punctuation: bool,
    pub regexes_to_ignore: Vec<String>,
}

/// One entry of `metric_list`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// `acc`, `acc_norm` or `exact_match`; with `process_results`, any metric it returns.
    pub name: String,
    pub exact_match: ExactMatchOptions,
    /// `aggregation: !function NAME`, a built-in aggregation hook; `None` is the mean.
    pub aggregation: Option<String>,
}

/// One step of a `filter_list` pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterStep {
    Regex {
        pattern: String,
        group_select: i64,
        fallback: String,
    },
    TakeFirst,
    Lowercase,
    Uppercase,
}

/// A named filter pipeline; its metrics are reported as `metric,name`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSpec {
    pub name: String,
    pub steps: Vec<FilterStep>,
}

/// A parsed task file.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub name: String,
    /// The task file (errors name it; data paths are relative to its folder).
    pub file: PathBuf,
    pub dataset_path: String,
    pub dataset_name: Option<String>,
    /// `dataset_kwargs.data_files`: split → file (a single string is the `train` split).
    pub data_files: BTreeMap<String, String>,
    pub test_split: Option<String>,
    pub validation_split: Option<String>,
    pub training_split: Option<String>,
    pub fewshot_split: Option<String>,
    pub description: String,
    pub doc_to_text: Value,
    pub doc_to_target: Value,
    pub doc_to_choice: Option<Value>,
    pub target_delimiter: String,
    pub fewshot_delimiter: String,
    pub num_fewshot: usize,
    pub output_type: OutputType,
    pub metrics: Vec<MetricSpec>,
    pub filters: Vec<FilterSpec>,
    /// `fewshot_config.sampler: first_n` takes the first examples instead of a seeded draw.
    pub fewshot_first_n: bool,
    /// `process_docs: !function NAME`, a built-in hook run on every document.
    pub process_docs: Option<String>,
    /// `process_results: !function NAME`, a built-in hook that computes the metrics.
    pub process_results: Option<String>,
}

/// Keys that do not change scores: accepted and ignored.
const IGNORED: &[&str] = &[
    "should_decontaminate",
    "doc_to_decontamination_query",
    "metadata",
    "tag",
    "group",
    "repeats",
    "unsafe_code",
];
/// Keys that need Python.
const UNSUPPORTED: &[&str] = &[
    "custom_dataset",
    "use_prompt",
    "doc_to_image",
    "doc_to_audio",
];

impl TaskSpec {
    /// Read one task file.
    pub fn from_file(path: &Path) -> Result<TaskSpec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        TaskSpec::from_yaml(&text, path)
    }

    /// Parse task YAML; `path` labels errors and anchors relative data paths.
    pub fn from_yaml(text: &str, path: &Path) -> Result<TaskSpec> {
        let err = |key: &str, message: String| Error::Task {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let mut fields: BTreeMap<String, Value> = BTreeMap::new();
        let mut hooks: BTreeMap<String, String> = BTreeMap::new();
        for (key, v) in include::task_keys(text, path)? {
            let unsupported = |reason: String| Error::Unsupported {
                path: path.to_path_buf(),
                key: key.clone(),
                reason,
            };
            if HOOK_KEYS.contains(&key.as_str()) {
                if let Some(name) = function_name(&v) {
                    hooks::lookup(&name, &key).map_err(unsupported)?;
                    hooks.insert(key.clone(), name);
                } else if matches!(key.as_str(), "process_docs" | "process_results") {
                    return Err(unsupported(
                        "it needs a `!function` naming one of lamarck's built-in hooks".into(),
                    ));
                }
            } else if key != "metric_list" {
                if let Some(tagged) = find_tag(&v) {
                    return Err(unsupported(format!(
                        "`!{tagged}` hooks run Python code, which lamarck cannot; \
                         replace it with a Jinja template or a field name"
                    )));
                }
            }
            if UNSUPPORTED.contains(&key.as_str()) {
                return Err(unsupported(
                    "it needs Python; preprocess the data file instead".into(),
                ));
            }
            fields.insert(key, v);
        }
        let known = [
            "task",
            "process_docs",
            "process_results",
            "dataset_path",
            "dataset_name",
            "dataset_kwargs",
            "test_split",
            "validation_split",
            "training_split",
            "fewshot_split",
            "description",
            "doc_to_text",
            "doc_to_target",
            "doc_to_choice",
            "target_delimiter",
            "fewshot_delimiter",
            "num_fewshot",
            "output_type",
            "generation_kwargs",
            "metric_list",
            "filter_list",
            "fewshot_config",
        ];
        for key in fields.keys() {
            if !known.contains(&key.as_str()) && !IGNORED.contains(&key.as_str()) {
                return Err(err(
                    key,
                    format!(
                        "unknown key; supported keys: {}; ignored: {}",
                        known.join(", "),
                        IGNORED.join(", ")
                    ),
                ));
            }
        }
        let string = |key: &str| -> Result<Option<String>> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(err(key, format!("expected a string, got {other:?}"))),
            }
        };
        let name = string("task")?
            .ok_or_else(|| err("task", "missing: every task needs a name".into()))?;
        let dataset_path = string("dataset_path")?.ok_or_else(|| {
            err(
                "dataset_path",
                "missing: a data file or folder (relative to the task file)".into(),
            )
        })?;
        let mut data_files = BTreeMap::new();
        if let Some(kwargs) = fields.get("dataset_kwargs") {
            let kwargs = kwargs
                .as_mapping()
                .ok_or_else(|| err("dataset_kwargs", "expected a mapping".into()))?;
            for (k, v) in kwargs {
                match k.as_str() {
                    Some("data_files") => match v {
                        Value::String(s) => {
                            data_files.insert("train".to_string(), s.clone());
                        }
                        Value::Mapping(m) => {
                            for (split, file) in m {
                                let (Some(split), Some(file)) = (split.as_str(), file.as_str())
                                else {
                                    return Err(err(
                                        "dataset_kwargs.data_files",
                                        "expected split: file pairs of strings".into(),
                                    ));
                                };
                                data_files.insert(split.to_string(), file.to_string());
                            }
                        }
                        _ => {
                            return Err(err(
                                "dataset_kwargs.data_files",
                                "expected a file or a mapping split: file".into(),
                            ))
                        }
                    },
                    other => {
                        return Err(err(
                            &format!("dataset_kwargs.{}", other.unwrap_or("?")),
                            "unknown key; only `data_files` is supported".into(),
                        ))
                    }
                }
            }
        }
        let template_field = |key: &str| -> Result<Option<Value>> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v @ Value::Tagged(_)) if hooks.contains_key(key) => Ok(Some(v.clone())),
                Some(v @ (Value::String(_) | Value::Number(_))) => Ok(Some(v.clone())),
                Some(v @ Value::Sequence(_)) if key == "doc_to_choice" => Ok(Some(v.clone())),
                Some(v) => Err(err(
                    key,
                    format!("expected a template or field name, got {v:?}"),
                )),
            }
        };
        let doc_to_text = template_field("doc_to_text")?
            .ok_or_else(|| err("doc_to_text", "missing: a template or field name".into()))?;
        let doc_to_target = template_field("doc_to_target")?
            .ok_or_else(|| err("doc_to_target", "missing: a template or field name".into()))?;
        let doc_to_choice = template_field("doc_to_choice")?;
        let output_kind = string("output_type")?.unwrap_or_else(|| "generate_until".into());
        let output_type = match output_kind.as_str() {
            "multiple_choice" => {
                if doc_to_choice.is_none() {
                    return Err(err(
                        "doc_to_choice",
                        "missing: multiple_choice tasks need choices".into(),
                    ));
                }
                OutputType::MultipleChoice
            }
            "generate_until" => parse_generation(fields.get("generation_kwargs"), &err)?,
            other => {
                return Err(err(
                    "output_type",
                    format!("`{other}` is not supported; use multiple_choice or generate_until"),
                ))
            }
        };
        let process_results = hooks.get("process_results").cloned();
        let metrics = parse_metrics(
            fields.get("metric_list"),
            &output_type,
            process_results.is_some(),
            &err,
            path,
        )?;
        let filters = parse_filters(fields.get("filter_list"), &err)?;
        let num_fewshot = match fields.get("num_fewshot") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| err("num_fewshot", "expected a non-negative integer".into()))?
                as usize,
        };
        let fewshot_first_n = match fields.get("fewshot_config") {
            None | Some(Value::Null) => false,
            Some(Value::Mapping(m)) => {
                let mut first_n = false;
                for (k, v) in m {
                    match (k.as_str(), v.as_str()) {
                        (Some("sampler"), Some("first_n")) => first_n = true,
                        (Some("sampler"), Some("default")) => first_n = false,
                        (k, _) => {
                            return Err(err(
                                &format!("fewshot_config.{}", k.unwrap_or("?")),
                                "only `sampler: default` or `sampler: first_n` is supported".into(),
                            ))
                        }
                    }
                }
                first_n
            }
            Some(_) => return Err(err("fewshot_config", "expected a mapping".into())),
        };
        Ok(TaskSpec {
            fewshot_first_n,
            process_docs: hooks.get("process_docs").cloned(),
            process_results,
            name,
            file: path.to_path_buf(),
            dataset_path,
            dataset_name: string("dataset_name")?,
            data_files,
            test_split: string("test_split")?,
            validation_split: string("validation_split")?,
            training_split: string("training_split")?,
            fewshot_split: string("fewshot_split")?,
            description: string("description")?.unwrap_or_default(),
            doc_to_text,
            doc_to_target,
            doc_to_choice,
            target_delimiter: string("target_delimiter")?.unwrap_or_else(|| " ".into()),
            fewshot_delimiter: string("fewshot_delimiter")?.unwrap_or_else(|| "\n\n".into()),
            num_fewshot,
            output_type,
            metrics,
            filters,
        })
    }

    /// The documents after the task's `process_docs` hook (unchanged without one).
    pub fn process_docs(&self, docs: Vec<serde_json::Value>) -> Result<Vec<serde_json::Value>> {
        let Some(name) = &self.process_docs else {
            return Ok(docs);
        };
        let err = |doc_id: usize, message: String| Error::Template {
            task: self.name.clone(),
            doc_id,
            key: format!("process_docs `{name}`"),
            message,
        };
        let hooks::Hook::ProcessDocs(f) =
            hooks::lookup(name, "process_docs").map_err(|m| err(0, m))?
        else {
            return Err(err(0, "not a process_docs hook".into()));
        };
        docs.iter()
            .enumerate()
            .map(|(i, d)| f(d).map_err(|m| err(i, m)))
            .collect()
    }

    /// The split to evaluate: `requested`, else `test_split`, else `validation_split`.
    /// A requested role name (`test`, `validation`, `train`) means the split the task
    /// assigns that role (`test_split: "train[270:]"`), so one `--split test` reaches
    /// every task's held-out part.
    pub fn eval_split(&self, requested: Option<&str>) -> Result<String> {
        let role = |r: &str| match r {
            "test" => self.test_split.clone(),
            "validation" => self.validation_split.clone(),
            "train" => self.training_split.clone(),
            _ => None,
        };
        requested
            .map(|r| role(r).unwrap_or_else(|| r.to_string()))
            .or_else(|| self.test_split.clone())
            .or_else(|| self.validation_split.clone())
            .ok_or_else(|| Error::Task {
                path: self.file.clone(),
                key: "test_split".into(),
                message:
                    "no split to evaluate: set test_split or validation_split, or pass --split"
                        .into(),
            })
    }

    /// lm-eval's few-shot source: `fewshot_split`, else training, validation, test split.
    pub fn fewshot_source(&self) -> Option<String> {
        self.fewshot_split
            .clone()
            .or_else(|| self.training_split.clone())
            .or_else(|| self.validation_split.clone())
            .or_else(|| self.test_split.clone())
    }
}

/// Keys whose value may be `!function NAME` (a built-in hook).
const HOOK_KEYS: &[&str] = &[
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "process_docs",
    "process_results",
];

/// `NAME` of a `!function NAME` value.
pub fn function_name(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) if t.tag.to_string().trim_start_matches('!') == "function" => {
            t.value.as_str().map(|s| s.trim().to_string())
        }
        _ => None,
    }
}

/// The tag of the first tagged value inside `v` (`!function utils.process`).
fn find_tag(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        Value::Sequence(s) => s.iter().find_map(find_tag),
        Value::Mapping(m) => m.iter().find_map(|(_, v)| find_tag(v)),
        _ => None,
    }
}
