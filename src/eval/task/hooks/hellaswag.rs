//! lm-eval's `tinyBenchmarks/utils_hellaswag.py` (a copy of `hellaswag/utils.py`):
//! `process_docs` builds `query`, `choices` and `gold` from the raw HellaSwag fields,
//! cleaning WikiHow's bracket artifacts with `preprocess`.
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::{str_field, HookResult};

static BRACKETS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[.*?\]").expect("a valid literal regex"));

/// `preprocess(text)`: strip, `" [title]"` → `". "`, drop `[...]`, one pass of double
/// spaces → one space (Python's `str.replace`, so `"   "` becomes `"  "`).
pub fn preprocess(text: &str) -> String {
    let text = text.trim().replace(" [title]", ". ");
    let text = BRACKETS.replace_all(&text, "");
    text.replace("  ", " ")
}

/// Python's `str.capitalize()`: first character upper case, the rest lower case.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => first
            .to_uppercase()
            .chain(chars.as_str().to_lowercase().chars())
            .collect(),
    }
}

/// `_process_doc(doc)`: the document with `query`, `choices` and `gold` added (the other
/// fields kept, as `datasets.map` keeps them).
pub fn process_doc(doc: &Value) -> HookResult<Value> {
    let ctx = format!(
        "{} {}",
        str_field(doc, "ctx_a")?,
        capitalize(str_field(doc, "ctx_b")?)
    );
    let query = preprocess(&format!("{}: {ctx}", str_field(doc, "activity_label")?));
    let endings = doc
        .get("endings")
        .and_then(Value::as_array)
        .ok_or("the document has no list field `endings`")?;
    let choices = endings
        .iter()
        .map(|e| {
            e.as_str()
                .map(preprocess)
                .map(Value::String)
                .ok_or_else(|| format!("`endings` holds a non-string: {e}"))
        })
        .collect::<HookResult<Vec<Value>>>()?;
    let gold = match doc.get("label") {
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("field `label` is not an integer: {s:?}"))?,
        Some(other) => return Err(format!("field `label` is not an integer: {other}")),
        None => return Err("the document has no field `label`".into()),
    };
    let mut out = doc
        .as_object()
        .cloned()
        .ok_or("a document is a JSON object")?;
    out.insert("query".into(), Value::String(query));
    out.insert("choices".into(), Value::Array(choices));
    out.insert("gold".into(), Value::from(gold));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_cleans_wikihow_artifacts() {
        assert_eq!(preprocess(" a [title] b [step] c "), "a. b c");
        assert_eq!(capitalize("hELLO world"), "Hello world");
    }
}
