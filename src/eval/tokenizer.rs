//! The model's tokenizer as lm-eval uses it: no special tokens added when encoding
//! (HFLM's default for causal models), EOS from `tokenizer_config.json`, and the optional
//! chat template.
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Error, Result};

/// `tokenizer.json` plus what `tokenizer_config.json` / `config.json` say about it.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    /// End-of-text token: lm-eval's prefix for an empty context and a default stop.
    pub eos_id: Option<u32>,
    /// Jinja chat template (`tokenizer_config.json` `chat_template`), if any.
    pub chat_template: Option<String>,
    /// `bos_token` text, passed to chat templates.
    pub bos_token: Option<String>,
}

impl TextTokenizer {
    /// Read `dir/tokenizer.json`, `dir/tokenizer_config.json` (optional) and, for the EOS id
    /// when the tokenizer config names none, `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<TextTokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::Tokenizer {
                path,
                message: "missing: a model folder for `lamarck eval` needs tokenizer.json".into(),
            });
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let tc = read_json_opt(&dir.join("tokenizer_config.json"))?;
        let token_text = |key: &str| -> Option<String> {
            match tc.as_ref()?.get(key)? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        let mut eos_id = token_text("eos_token").and_then(|t| inner.token_to_id(&t));
        if eos_id.is_none() {
            let cfg = read_json_opt(&dir.join("config.json"))?;
            eos_id = cfg.as_ref().and_then(|c| match c.get("eos_token_id")? {
                Value::Number(n) => n.as_u64().map(|v| v as u32),
                Value::Array(a) => a.first()?.as_u64().map(|v| v as u32),
                _ => None,
            });
        }
        let chat_template = tc
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(TextTokenizer {
            inner,
            path,
            eos_id,
            chat_template,
            bos_token: token_text("bos_token"),
        })
    }

    /// Token ids of `text`, without special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| self.err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`; `skip_special` drops special tokens (as lm-eval does for generations).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| self.err(e))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    fn err(&self, e: tokenizers::Error) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

fn read_json_opt(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::model(path, format!("not valid JSON: {e}")))
}
