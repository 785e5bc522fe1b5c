//! Reading a task file's top-level keys as lm-eval does: `include: other.yaml` (relative
//! to the including file) is read first and the including file's keys override its keys;
//! a key written twice at the top level keeps its last value (PyYAML's rule, which
//! lm-eval's own `tinyGSM8k.yaml` and `tinyMMLU.yaml` rely on: they repeat `num_fewshot`).
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_yaml_ng::Value;

use crate::eval::{Error, Result};

/// How deep `include:` chains may go (a cycle is reported before this).
const MAX_DEPTH: usize = 16;

/// The top-level mapping in file order, later duplicates replacing earlier ones.
struct TopLevel(Vec<(Value, Value)>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a YAML mapping")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<TopLevel, A::Error> {
                let mut out: Vec<(Value, Value)> = Vec::new();
                while let Some(k) = m.next_key::<Value>()? {
                    let v = m.next_value::<Value>()?;
                    match out.iter_mut().find(|(key, _)| *key == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(TopLevel(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The keys of the task file at `path` (text `text`), `include:` resolved.
pub fn task_keys(text: &str, path: &Path) -> Result<Vec<(String, Value)>> {
    let mut chain = vec![path.to_path_buf()];
    keys_of(text, path, &mut chain)
}

fn keys_of(text: &str, path: &Path, chain: &mut Vec<PathBuf>) -> Result<Vec<(String, Value)>> {
    let err = |key: &str, message: String| Error::Task {
        path: path.to_path_buf(),
        key: key.to_string(),
        message,
    };
    let top: TopLevel = serde_yaml_ng::from_str(text).map_err(|e| {
        let message = if e.to_string().contains("expected a YAML mapping") {
            "a task file is a YAML mapping".to_string()
        } else {
            format!("not valid YAML: {e}")
        };
        err("(file)", message)
    })?;
    let mut own = Vec::with_capacity(top.0.len());
    for (k, v) in top.0 {
        let key = k
            .as_str()
            .ok_or_else(|| err("(file)", format!("key {k:?} is not a string")))?;
        own.push((key.to_string(), v));
    }
    let Some(pos) = own.iter().position(|(k, _)| k == "include") else {
        return Ok(own);
    };
    let (_, inc) = own.remove(pos);
    let names: Vec<&str> = match &inc {
        Value::String(s) => vec![s.as_str()],
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if names.is_empty() || matches!(&inc, Value::Sequence(i) if i.len() != names.len()) {
        return Err(err(
            "include",
            "expected a file name or a list of them (relative to this file)".into(),
        ));
    }
    let mut merged: Vec<(String, Value)> = Vec::new();
    for rel in names {
        let target = path.parent().unwrap_or(Path::new(".")).join(rel);
        if chain.iter().any(|p| same_file(p, &target)) || chain.len() > MAX_DEPTH {
            return Err(err(
                "include",
                format!("`{rel}` is included in a cycle ({})", describe(chain)),
            ));
        }
        let inc_text = std::fs::read_to_string(&target).map_err(|e| {
            err(
                "include",
                format!("cannot read `{rel}` ({}): {e}", target.display()),
            )
        })?;
        chain.push(target.clone());
        let keys = keys_of(&inc_text, &target, chain)?;
        chain.pop();
        for (k, v) in keys.into_iter().filter(|(k, _)| k != "task_list") {
            override_key(&mut merged, k, v);
        }
    }
    for (k, v) in own {
        override_key(&mut merged, k, v);
    }
    Ok(merged)
}

fn override_key(keys: &mut Vec<(String, Value)>, k: String, v: Value) {
    match keys.iter_mut().find(|(key, _)| *key == k) {
        Some(slot) => slot.1 = v,
        None => keys.push((k, v)),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn describe(chain: &[PathBuf]) -> String {
    chain
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" → ")
}
