//! The list-valued keys of a task file: `generation_kwargs`, `metric_list` and
//! `filter_list`, each checked entry by entry with its YAML path.
use std::path::Path;

use serde_yaml_ng::Value;

use super::hooks;
use super::{function_name, ExactMatchOptions, FilterSpec, FilterStep, MetricSpec, OutputType};
use crate::eval::{Error, Result};

pub(super) type ErrFn<'a> = dyn Fn(&str, String) -> Error + 'a;

pub(super) fn parse_generation(kwargs: Option<&Value>, err: &ErrFn) -> Result<OutputType> {
    let mut until = Vec::new();
    let mut max_gen_toks = 256;
    if let Some(v) = kwargs {
        let m = v
            .as_mapping()
            .ok_or_else(|| err("generation_kwargs", "expected a mapping".into()))?;
        for (k, v) in m {
            let key = k.as_str().unwrap_or("?");
            let path = format!("generation_kwargs.{key}");
            match key {
                "until" => {
                    until = match v {
                        Value::String(s) => vec![s.clone()],
                        Value::Sequence(s) => s
                            .iter()
                            .map(|x| x.as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| err(&path, "expected a list of strings".into()))?,
                        _ => {
                            return Err(err(&path, "expected a string or a list of strings".into()))
                        }
                    }
                }
                "max_gen_toks" => {
                    max_gen_toks = v
                        .as_u64()
                        .ok_or_else(|| err(&path, "expected a positive integer".into()))?
                        as usize
                }
                "do_sample" => {
                    if v.as_bool() == Some(true) {
                        return Err(err(
                            &path,
                            "sampling is not supported; lamarck decodes greedily".into(),
                        ));
                    }
                }
                "temperature" => {
                    if v.as_f64().is_some_and(|t| t != 0.0) {
                        return Err(err(
                            &path,
                            "only temperature 0 (greedy) is supported".into(),
                        ));
                    }
                }
                _ => return Err(err(
                    &path,
                    "unknown key; supported: until, max_gen_toks, do_sample: false, temperature: 0"
                        .into(),
                )),
            }
        }
    }
    Ok(OutputType::GenerateUntil {
        until,
        max_gen_toks,
    })
}

pub(super) fn parse_metrics(
    list: Option<&Value>,
    output: &OutputType,
    custom: bool,
    err: &ErrFn,
    file: &Path,
) -> Result<Vec<MetricSpec>> {
    let allowed: &[&str] = match output {
        OutputType::MultipleChoice => &["acc", "acc_norm"],
        OutputType::GenerateUntil { .. } => &["exact_match"],
    };
    let Some(list) = list else {
        return Ok(vec![MetricSpec {
            name: allowed[0].to_string(),
            exact_match: ExactMatchOptions::default(),
            aggregation: None,
        }]);
    };
    let items = list
        .as_sequence()
        .ok_or_else(|| err("metric_list", "expected a list".into()))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let m = item
            .as_mapping()
            .ok_or_else(|| err(&format!("metric_list[{i}]"), "expected a mapping".into()))?;
        let mut spec = MetricSpec {
            name: String::new(),
            exact_match: ExactMatchOptions::default(),
            aggregation: None,
        };
        for (k, v) in m {
            let key = k.as_str().unwrap_or("?");
            let path = format!("metric_list[{i}].{key}");
            let as_bool = || {
                v.as_bool()
                    .ok_or_else(|| err(&path, "expected true or false".into()))
            };
            match key {
                "metric" => {
                    let name = v
                        .as_str()
                        .ok_or_else(|| err(&path, "expected a name".into()))?;
                    if !custom && !allowed.contains(&name) {
                        return Err(err(
                            &path,
                            format!("`{name}` is not supported here; use one of {allowed:?}"),
                        ));
                    }
                    spec.name = name.to_string();
                }
                "aggregation" => match (v.as_str(), function_name(v)) {
                    (Some("mean"), _) => {}
                    (_, Some(name)) => {
                        hooks::lookup(&name, "aggregation").map_err(|reason| {
                            Error::Unsupported {
                                path: file.to_path_buf(),
                                key: path.clone(),
                                reason,
                            }
                        })?;
                        spec.aggregation = Some(name);
                    }
                    _ => {
                        return Err(err(
                            &path,
                            "only `mean` or a built-in `!function` aggregation is supported".into(),
                        ))
                    }
                },
                "higher_is_better" => {}
                "ignore_case" => spec.exact_match.ignore_case = as_bool()?,
                "ignore_punctuation" => spec.exact_match.ignore_punctuation = as_bool()?,
                "regexes_to_ignore" => {
                    spec.exact_match.regexes_to_ignore = v
                        .as_sequence()
                        .and_then(|s| s.iter().map(|x| x.as_str().map(str::to_string)).collect())
                        .ok_or_else(|| err(&path, "expected a list of regexes".into()))?;
                    for r in &spec.exact_match.regexes_to_ignore {
                        regex::Regex::new(r)
                            .map_err(|e| err(&path, format!("bad regex `{r}`: {e}")))?;
                    }
                }
                _ => return Err(err(&path, "unknown key".into())),
            }
        }
        if spec.name.is_empty() {
            return Err(err(&format!("metric_list[{i}].metric"), "missing".into()));
        }
        out.push(spec);
    }
    Ok(out)
}

pub(super) fn parse_filters(list: Option<&Value>, err: &ErrFn) -> Result<Vec<FilterSpec>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    let items = list
        .as_sequence()
        .ok_or_else(|| err("filter_list", "expected a list".into()))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err(&format!("filter_list[{i}].name"), "missing".into()))?;
        let steps_v = item
            .get("filter")
            .and_then(Value::as_sequence)
            .ok_or_else(|| {
                err(
                    &format!("filter_list[{i}].filter"),
                    "expected a list of steps".into(),
                )
            })?;
        let mut steps = Vec::new();
        for (j, s) in steps_v.iter().enumerate() {
            let path = format!("filter_list[{i}].filter[{j}]");
            let function = s
                .get("function")
                .and_then(Value::as_str)
                .ok_or_else(|| err(&path, "missing `function`".into()))?;
            steps.push(match function {
                "regex" => {
                    let pattern = s
                        .get("regex_pattern")
                        .and_then(Value::as_str)
                        .unwrap_or(r"#### (\-?[0-9\.\,]+)")
                        .to_string();
                    regex::Regex::new(&pattern)
                        .map_err(|e| err(&path, format!("bad regex_pattern `{pattern}`: {e}")))?;
                    StepCheck::keys(s, &["function", "regex_pattern", "group_select", "fallback"], &path, err)?;
                    FilterStep::Regex {
                        pattern,
                        group_select: s.get("group_select").and_then(Value::as_i64).unwrap_or(0),
                        fallback: s
                            .get("fallback")
                            .and_then(Value::as_str)
                            .unwrap_or("[invalid]")
                            .to_string(),
                    }
                }
                "take_first" => FilterStep::TakeFirst,
                "lowercase" => FilterStep::Lowercase,
                "uppercase" => FilterStep::Uppercase,
                other => {
                    return Err(err(
                        &path,
                        format!("filter function `{other}` is not supported (regex, take_first, lowercase, uppercase)"),
                    ))
                }
            });
        }
        out.push(FilterSpec {
            name: name.to_string(),
            steps,
        });
    }
    Ok(out)
}

struct StepCheck;
impl StepCheck {
    fn keys(v: &Value, allowed: &[&str], path: &str, err: &ErrFn) -> Result<()> {
        if let Some(m) = v.as_mapping() {
            for (k, _) in m {
                let key = k.as_str().unwrap_or("?");
                if !allowed.contains(&key) {
                    return Err(err(&format!("{path}.{key}"), "unknown key".into()));
                }
            }
        }
        Ok(())
    }
}
