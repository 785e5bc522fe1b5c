//! lm-eval's `tinyBenchmarks/utils_winogrande.py` (a copy of `winogrande/preprocess_winogrande.py`):
//! partial scoring. The choices are the *contexts* (the sentence up to the blank with each
//! option filled in), the target is the shared continuation after the blank, and
//! `doc_to_text` returns the gold index, which makes lm-eval score the task as
//! "multiple input": one request per context, all with the same continuation.
use serde_json::Value;

use super::{str_field, HookResult};

/// The byte offset of the blank `_` in `sentence` (Python's `str.index("_")`).
fn blank(doc: &Value) -> HookResult<(&str, usize)> {
    let sentence = str_field(doc, "sentence")?;
    let idx = sentence
        .find('_')
        .ok_or_else(|| format!("`sentence` has no blank `_`: {sentence:?}"))?;
    Ok((sentence, idx))
}

/// `doc_to_text`: `{"1": 0, "2": 1}[doc["answer"]]`, the gold index.
pub fn doc_to_text(doc: &Value) -> HookResult<Value> {
    match doc.get("answer") {
        Some(Value::String(s)) if s == "1" => Ok(Value::from(0)),
        Some(Value::String(s)) if s == "2" => Ok(Value::from(1)),
        Some(other) => Err(format!(
            "field `answer` must be \"1\" or \"2\", got {other}"
        )),
        None => Err("the document has no field `answer`".into()),
    }
}

/// `doc_to_target`: the sentence after the blank, stripped.
pub fn doc_to_target(doc: &Value) -> HookResult<Value> {
    let (sentence, idx) = blank(doc)?;
    Ok(Value::String(sentence[idx + 1..].trim().to_string()))
}

/// `doc_to_choice`: the sentence before the blank + each option.
pub fn doc_to_choice(doc: &Value) -> HookResult<Vec<String>> {
    let (sentence, idx) = blank(doc)?;
    Ok(vec![
        format!("{}{}", &sentence[..idx], str_field(doc, "option1")?),
        format!("{}{}", &sentence[..idx], str_field(doc, "option2")?),
    ])
}
