//! `doc_to_text` / `doc_to_target` / `doc_to_choice` with minijinja, as lm-eval evaluates
//! them with Jinja2: a field name returns the field; a template `{{ expr }}` made of one
//! expression returns the expression's value (so `{{choices.text}}` is a list, not its
//! printed form); anything else is rendered to text. Python methods real task files use
//! (`list.index`, `str.strip`, `str.split`...) are provided through minijinja's
//! unknown-method callback. A field the template names but the document lacks is an error.
//! A `!function NAME` value runs the built-in hook registered as NAME ([`super::hooks`]).
use minijinja::value::{Value as JValue, ValueKind};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value;
use serde_yaml_ng::Value as YValue;

use super::hooks::{self, Hook};
use crate::eval::{Error, Result};

/// What `doc_to_text` gives for a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The prompt text.
    Text(String),
    /// The gold index of a multiple-input task (lm-eval: `doc_to_text` returned an int,
    /// as winogrande's hook does): the choices are contexts, the target is shared.
    Choice(usize),
}

/// The gold answer of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Index into the choices.
    Index(usize),
    /// Text (generation tasks, or a choice given by its text).
    Text(String),
}

/// Renders a task's templates against documents.
pub struct Templates {
    env: Environment<'static>,
    task: String,
}

impl Templates {
    pub fn new(task: &str) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_unknown_method_callback(python_methods);
        Templates {
            env,
            task: task.to_string(),
        }
    }

    /// `doc_to_text` (or any text template) for document `doc_id`.
    pub fn text(&self, spec: &YValue, doc: &Value, doc_id: usize, key: &str) -> Result<String> {
        Ok(display(&self.value(spec, doc, doc_id, key)?))
    }

    /// `doc_to_text`: text, or a gold index when a hook or a field name gives an integer.
    pub fn input(&self, spec: &YValue, doc: &Value, doc_id: usize, key: &str) -> Result<Input> {
        let raw = matches!(spec, YValue::Tagged(_))
            || spec.as_str().is_some_and(|f| doc.get(f).is_some());
        Ok(match self.value(spec, doc, doc_id, key)? {
            Value::Number(n) if raw && n.as_u64().is_some() => {
                Input::Choice(n.as_u64().unwrap_or(0) as usize)
            }
            v => Input::Text(display(&v)),
        })
    }

    /// `doc_to_target`: an index when the value is an integer (or a digit string and the
    /// task has choices), else text.
    pub fn target(
        &self,
        spec: &YValue,
        doc: &Value,
        doc_id: usize,
        has_choices: bool,
    ) -> Result<Target> {
        let v = self.value(spec, doc, doc_id, "doc_to_target")?;
        Ok(match &v {
            Value::Number(n) if n.as_u64().is_some() => {
                Target::Index(n.as_u64().unwrap_or(0) as usize)
            }
            Value::String(s)
                if has_choices && !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) =>
            {
                Target::Index(s.parse().map_err(|_| {
                    self.err(doc_id, "doc_to_target", format!("bad index `{s}`"), doc)
                })?)
            }
            Value::Array(items) if !items.is_empty() => match &items[0] {
                Value::Number(n) if n.as_u64().is_some() => {
                    Target::Index(n.as_u64().unwrap_or(0) as usize)
                }
                first => Target::Text(display(first)),
            },
            other => Target::Text(display(other)),
        })
    }

    /// `doc_to_choice`: a list field, a one-expression template returning a list, a
    /// template rendering a Python list literal, or a YAML list of templates.
    pub fn choices(&self, spec: &YValue, doc: &Value, doc_id: usize) -> Result<Vec<String>> {
        if let YValue::Sequence(items) = spec {
            return items
                .iter()
                .map(|t| self.text(t, doc, doc_id, "doc_to_choice"))
                .collect();
        }
        let v = self.value(spec, doc, doc_id, "doc_to_choice")?;
        let list = match v {
            Value::Array(items) => items,
            Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
            Value::String(s) => parse_list_literal(&s)
                .ok_or_else(|| {
                    self.err(
                        doc_id,
                        "doc_to_choice",
                        format!("`{s}` is not a list of choices"),
                        doc,
                    )
                })?
                .into_iter()
                .map(Value::String)
                .collect(),
            other => {
                return Err(self.err(
                    doc_id,
                    "doc_to_choice",
                    format!("expected a list, got `{other}`"),
                    doc,
                ))
            }
        };
        Ok(list.iter().map(display).collect())
    }

    /// The value of a field name or template, as JSON.
    fn value(&self, spec: &YValue, doc: &Value, doc_id: usize, key: &str) -> Result<Value> {
        let template = match spec {
            YValue::Tagged(_) => return self.hook(spec, doc, doc_id, key),
            YValue::String(s) => s.as_str(),
            YValue::Number(n) => return Ok(serde_json::to_value(n.as_i64()).unwrap_or(Value::Null)),
            other => {
                return Err(self.err(doc_id, key, format!("unsupported template {other:?}"), doc))
            }
        };
        if let Some(field) = doc.get(template) {
            return Ok(field.clone());
        }
        let ctx = JValue::from_serialize(doc);
        let trimmed = template.trim();
        let single_expr = trimmed
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .filter(|inner| {
                !inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")
            });
        let result = match single_expr {
            Some(expr) => self
                .env
                .compile_expression(expr.trim().trim_start_matches('-').trim_end_matches('-'))
                .and_then(|e| e.eval(&ctx))
                .and_then(|v| {
                    if v.is_undefined() {
                        Err(minijinja::Error::new(
                            ErrorKind::UndefinedError,
                            "undefined value",
                        ))
                    } else {
                        Ok(v)
                    }
                })
                .map(|v| to_json(&v)),
            None => self.env.render_str(template, &ctx).map(Value::String),
        };
        result.map_err(|e| self.err(doc_id, key, format!("template `{template}`: {e:#}"), doc))
    }

    /// Run the built-in hook a `!function NAME` value names.
    fn hook(&self, spec: &YValue, doc: &Value, doc_id: usize, key: &str) -> Result<Value> {
        let base = key.split_whitespace().next().unwrap_or(key);
        let name = super::function_name(spec)
            .ok_or_else(|| self.err(doc_id, key, format!("unsupported value {spec:?}"), doc))?;
        let hook = hooks::lookup(&name, base).map_err(|m| self.err(doc_id, key, m, doc))?;
        let out = match hook {
            Hook::DocToText(f) | Hook::DocToTarget(f) => f(doc),
            Hook::DocToChoice(f) => {
                f(doc).map(|c| Value::Array(c.into_iter().map(Value::String).collect()))
            }
            _ => Err(format!("`{name}` is not a template hook")),
        };
        out.map_err(|m| self.err(doc_id, key, format!("`!function {name}`: {m}"), doc))
    }

    fn err(&self, doc_id: usize, key: &str, message: String, doc: &Value) -> Error {
        let fields: Vec<&str> = doc
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        Error::Template {
            task: self.task.clone(),
            doc_id,
            key: key.to_string(),
            message: format!("{message} (the document has fields: {})", fields.join(", ")),
        }
    }
}

/// Python's `str()` of a JSON value, as Jinja2 would print it.
fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        other => other.to_string(),
    }
}

fn to_json(v: &JValue) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `['a', "b", 3]` → its items as text (what lm-eval's `ast.literal_eval` accepts here).
pub fn parse_list_literal(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        if c == '\'' || c == '"' {
            chars.next();
            let mut item = String::new();
            loop {
                match chars.next()? {
                    '\\' => match chars.next()? {
                        'n' => item.push('\n'),
                        't' => item.push('\t'),
                        other => item.push(other),
                    },
                    q if q == c => break,
                    other => item.push(other),
                }
            }
            out.push(item);
        } else {
            let item: String = chars.by_ref().take_while(|&c| c != ',').collect();
            out.push(item.trim().to_string());
            continue;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some(',') | None => {}
            Some(_) => return None,
        }
    }
    Some(out)
}

/// Python methods on lists and strings that lm-eval task files call.
fn python_methods(
    _state: &minijinja::State,
    value: &JValue,
    method: &str,
    args: &[JValue],
) -> std::result::Result<JValue, minijinja::Error> {
    let bad = |msg: String| minijinja::Error::new(ErrorKind::InvalidOperation, msg);
    let arg_str =
        |i: usize| -> Option<String> { args.get(i).and_then(|a| a.as_str()).map(str::to_string) };
    match (value.kind(), method) {
        (ValueKind::Seq, "index") => {
            let needle = args
                .first()
                .ok_or_else(|| bad("index() needs an argument".into()))?;
            let items = value.try_iter()?;
            for (i, item) in items.enumerate() {
                if &item == needle {
                    return Ok(JValue::from(i));
                }
            }
            Err(bad(format!("{needle} is not in list")))
        }
        (ValueKind::Seq, "count") => {
            let needle = args
                .first()
                .ok_or_else(|| bad("count() needs an argument".into()))?;
            Ok(JValue::from(
                value.try_iter()?.filter(|x| x == needle).count(),
            ))
        }
        (ValueKind::String, m) => {
            let s = value.as_str().unwrap_or_default();
            let chars = arg_str(0);
            let strip_set = |c: char| {
                chars
                    .as_deref()
                    .map_or(c.is_whitespace(), |set| set.contains(c))
            };
            Ok(match m {
                "strip" => JValue::from(s.trim_matches(strip_set)),
                "lstrip" => JValue::from(s.trim_start_matches(strip_set)),
                "rstrip" => JValue::from(s.trim_end_matches(strip_set)),
                "lower" => JValue::from(s.to_lowercase()),
                "upper" => JValue::from(s.to_uppercase()),
                "split" => match arg_str(0) {
                    Some(sep) if !sep.is_empty() => JValue::from(
                        s.split(sep.as_str())
                            .map(str::to_string)
                            .collect::<Vec<_>>(),
                    ),
                    _ => JValue::from(s.split_whitespace().map(str::to_string).collect::<Vec<_>>()),
                },
                "replace" => match (arg_str(0), arg_str(1)) {
                    (Some(a), Some(b)) => JValue::from(s.replace(&a, &b)),
                    _ => return Err(bad("replace() needs two strings".into())),
                },
                "startswith" => JValue::from(arg_str(0).is_some_and(|p| s.starts_with(&p))),
                "endswith" => JValue::from(arg_str(0).is_some_and(|p| s.ends_with(&p))),
                "join" => {
                    let items: Vec<String> = args
                        .first()
                        .ok_or_else(|| bad("join() needs a list".into()))?
                        .try_iter()?
                        .map(|v| v.to_string())
                        .collect();
                    JValue::from(items.join(s))
                }
                "format" => {
                    let mut out = s.to_string();
                    for a in args {
                        out = out.replacen("{}", &a.to_string(), 1);
                    }
                    JValue::from(out)
                }
                _ => return Err(bad(format!("string method `{m}` is not supported"))),
            })
        }
        _ => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
    }
}
