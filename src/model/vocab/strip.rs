//! [`strip_tokenizer_files`]: remove the tokens with ids ≥ `vocab_size` from a written
//! tokenizer (mergekit's `get_stripped_tokenizer`), so the output tokenizer matches the
//! output's rows.
use std::path::Path;

use serde_json::Value;

use super::{Error, Result};

/// Rewrite `dir/tokenizer.json` (and `added_tokens_decoder` in `dir/tokenizer_config.json`,
/// if present) without the tokens whose id is ≥ `vocab_size`: added tokens, model-vocabulary
/// entries and the BPE merges that use or produce them. BPE, WordLevel and WordPiece models
/// are supported (mergekit 0.1.5 supports BPE only).
pub fn strip_tokenizer_files(dir: &Path, vocab_size: usize) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let bad = |message: String| Error::Tokenizer {
        path: path.clone(),
        message,
    };
    let mut tok: Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let stripped = strip_json(&mut tok, vocab_size).map_err(bad)?;
    let out = serde_json::to_string_pretty(&tok).map_err(|e| bad(e.to_string()))?;
    // the result must still be a tokenizer
    out.parse::<tokenizers::Tokenizer>().map_err(|e| {
        bad(format!(
            "after removing the tokens with ids >= {vocab_size}, the tokenizer no longer \
             loads: {e}"
        ))
    })?;
    std::fs::write(&path, out).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    tracing::info!(
        "{}: removed {stripped} token(s) with ids >= {vocab_size}",
        path.display()
    );

    let config = dir.join("tokenizer_config.json");
    if config.is_file() {
        let text = std::fs::read_to_string(&config).map_err(|source| Error::Io {
            path: config.clone(),
            source,
        })?;
        let mut cfg: Value = serde_json::from_str(&text).map_err(|e| Error::Tokenizer {
            path: config.clone(),
            message: format!("not valid JSON: {e}"),
        })?;
        if let Some(Value::Object(decoder)) = cfg.get_mut("added_tokens_decoder") {
            decoder.retain(|id, _| id.parse::<usize>().map_or(true, |id| id < vocab_size));
            let out = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Tokenizer {
                path: config.clone(),
                message: e.to_string(),
            })?;
            std::fs::write(&config, out).map_err(|source| Error::Io {
                path: config.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Strip a parsed `tokenizer.json` in place; returns how many tokens were removed.
pub(super) fn strip_json(tok: &mut Value, vocab_size: usize) -> Result<usize, String> {
    let id_of = |v: &Value| v.as_u64().map_or(usize::MAX, |x| x as usize);
    let mut removed: Vec<String> = Vec::new();
    if let Some(Value::Array(added)) = tok.get_mut("added_tokens") {
        added.retain(|e| {
            let keep = e.get("id").is_none_or(|id| id_of(id) < vocab_size);
            if !keep {
                if let Some(c) = e.get("content").and_then(Value::as_str) {
                    removed.push(c.to_string());
                }
            }
            keep
        });
    }
    let model = tok
        .get_mut("model")
        .and_then(Value::as_object_mut)
        .ok_or("no `model` object")?;
    let kind = model
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !matches!(kind.as_str(), "BPE" | "WordLevel" | "WordPiece") {
        return Err(format!(
            "tokens with ids >= vocab_size {vocab_size} would have to be removed, but \
             removing tokens from a `{kind}` tokenizer is not supported (BPE, WordLevel and \
             WordPiece are); use a model's tokenizer as `tokenizer_source` instead"
        ));
    }
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let vocab = model
        .get_mut("vocab")
        .and_then(Value::as_object_mut)
        .ok_or("the model has no `vocab` object")?;
    let mut gone_from_vocab = std::collections::HashSet::new();
    vocab.retain(|t, id| {
        let keep = id_of(id) < vocab_size;
        if !keep {
            gone_from_vocab.insert(t.clone());
        }
        keep
    });
    let count = gone_from_vocab.len()
        + removed
            .iter()
            .filter(|t| !gone_from_vocab.contains(*t))
            .count();
    if let Some(Value::Array(merges)) = model.get_mut("merges") {
        let mut bad = None;
        merges.retain(|m| {
            let parts: Vec<String> = match m {
                Value::String(s) => s.split(' ').map(str::to_string).collect(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => Vec::new(),
            };
            if parts.len() != 2 {
                bad = Some(m.to_string());
                return true;
            }
            let tail = parts[1]
                .strip_prefix(prefix.as_str())
                .filter(|_| !prefix.is_empty());
            let merged = format!("{}{}", parts[0], tail.unwrap_or(&parts[1]));
            !(parts.iter().any(|p| gone_from_vocab.contains(p))
                || gone_from_vocab.contains(&merged))
        });
        if let Some(m) = bad {
            return Err(format!("unexpected merge format: {m}"));
        }
    }
    Ok(count)
}
