//! An instruction's kwargs as lm-eval reads them: `{k: v for k, v in kwargs.items() if v}`
//! first drops every null, `0`, `""`, `[]` and `false`, then each checker's
//! `build_description` takes what it needs.
use serde_json::{Map, Value};

use super::error::{Error, Result};

/// `less than` / `at least`, lm-eval's `_COMPARISON_RELATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    LessThan,
    AtLeast,
}

impl Relation {
    /// `count < threshold` or `count >= threshold`.
    pub fn holds(self, count: i64, threshold: i64) -> bool {
        match self {
            Relation::LessThan => count < threshold,
            Relation::AtLeast => count >= threshold,
        }
    }
}

/// The truthy kwargs of one instruction, with the instruction id for error messages.
pub struct Kwargs<'a> {
    id: &'a str,
    map: Map<String, Value>,
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

impl<'a> Kwargs<'a> {
    pub fn new(id: &'a str, kwargs: Option<&Map<String, Value>>) -> Kwargs<'a> {
        let map = kwargs
            .into_iter()
            .flatten()
            .filter(|(_, v)| truthy(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Kwargs { id, map }
    }

    pub fn id(&self) -> &str {
        self.id
    }

    pub fn bad(&self, kwarg: &'static str, message: impl Into<String>) -> Error {
        Error::BadKwarg {
            id: self.id.to_string(),
            kwarg,
            message: message.into(),
        }
    }

    fn missing(&self, kwarg: &'static str) -> Error {
        Error::MissingKwarg {
            id: self.id.to_string(),
            kwarg,
        }
    }

    /// An integer kwarg (integral floats too, as Parquet readers may give them).
    pub fn int(&self, kwarg: &'static str) -> Result<i64> {
        let v = self.map.get(kwarg).ok_or_else(|| self.missing(kwarg))?;
        let n = v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
        n.ok_or_else(|| self.bad(kwarg, format!("expected an integer, found {v}")))
    }

    /// An integer kwarg lm-eval redraws at random when negative: required non-negative.
    pub fn count(&self, kwarg: &'static str) -> Result<i64> {
        let n = self.int(kwarg)?;
        if n < 0 {
            return Err(self.bad(
                kwarg,
                format!("{n} is negative (lm-eval would pick a random value)"),
            ));
        }
        Ok(n)
    }

    pub fn str(&self, kwarg: &'static str) -> Result<&str> {
        let v = self.map.get(kwarg).ok_or_else(|| self.missing(kwarg))?;
        v.as_str()
            .ok_or_else(|| self.bad(kwarg, format!("expected a string, found {v}")))
    }

    pub fn str_list(&self, kwarg: &'static str) -> Result<Vec<&str>> {
        let v = self.map.get(kwarg).ok_or_else(|| self.missing(kwarg))?;
        let items = v
            .as_array()
            .ok_or_else(|| self.bad(kwarg, format!("expected a list, found {v}")))?;
        items
            .iter()
            .map(|s| {
                s.as_str()
                    .ok_or_else(|| self.bad(kwarg, format!("expected strings, found {s}")))
            })
            .collect()
    }

    pub fn relation(&self, kwarg: &'static str) -> Result<Relation> {
        match self.str(kwarg)? {
            "less than" => Ok(Relation::LessThan),
            "at least" => Ok(Relation::AtLeast),
            other => Err(self.bad(
                kwarg,
                format!("`{other}`: expected `less than` or `at least`"),
            )),
        }
    }

    /// A user-given pattern, compiled as lm-eval hands it to Python's `re`.
    pub fn regex(
        &self,
        kwarg: &'static str,
        pattern: &str,
        ignore_case: bool,
    ) -> Result<regex::Regex> {
        regex::RegexBuilder::new(pattern)
            .case_insensitive(ignore_case)
            .build()
            .map_err(|e| self.bad(kwarg, format!("`{pattern}` is not a usable regular expression (lm-eval uses it as one): {e}")))
    }
}
