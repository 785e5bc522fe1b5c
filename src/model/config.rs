//! `config.json` as real checkpoints write it.
//!
//! Checkpoints disagree on a few keys: transformers 5 writes `dtype` and
//! `rope_parameters: {rope_theta}`, older versions write `torch_dtype` and a top-level
//! `rope_theta`; `sliding_window` may be null or absent. [`HfConfig`] keeps the whole JSON
//! object (key order preserved) so that writing it back changes only what a merge changes.
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{DType, Error, Result};

/// A `config.json`, kept whole (every key is preserved when written back) with typed
/// accessors for the keys lamarck needs.
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub raw: serde_json::Map<String, serde_json::Value>,
}

impl HfConfig {
    pub fn from_file(path: &Path) -> Result<HfConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        HfConfig::from_json_str(&text).map_err(|message| Error::invalid(path, message))
    }

    /// Parse config text; the error message does not name a file (the caller adds it).
    pub fn from_json_str(text: &str) -> std::result::Result<HfConfig, String> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(raw)) => Ok(HfConfig { raw }),
            Ok(_) => Err("config.json is not a JSON object".to_string()),
            Err(e) => Err(format!("config.json is not valid JSON: {e}")),
        }
    }

    /// Build from an object already in memory.
    pub fn from_map(raw: Map<String, Value>) -> HfConfig {
        HfConfig { raw }
    }

    /// Write pretty-printed JSON (2-space indent, trailing newline) as transformers does.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(&Value::Object(self.raw.clone()))
            .map_err(|e| Error::invalid(path, format!("cannot serialize config: {e}")))?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    fn str_key(&self, key: &str) -> Option<&str> {
        self.raw.get(key).and_then(Value::as_str)
    }
    fn usize_key(&self, key: &str) -> Option<usize> {
        self.raw
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
    }
    fn f64_key(&self, key: &str) -> Option<f64> {
        self.raw.get(key).and_then(Value::as_f64)
    }

    /// The single entry of `architectures` (None when absent, empty, or several).
    pub fn architecture(&self) -> Option<&str> {
        match self.raw.get("architectures")?.as_array()?.as_slice() {
            [one] => one.as_str(),
            _ => None,
        }
    }
    /// Every entry of `architectures`.
    pub fn architectures(&self) -> Vec<&str> {
        self.raw
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
    pub fn model_type(&self) -> Option<&str> {
        self.str_key("model_type")
    }
    pub fn num_hidden_layers(&self) -> Option<usize> {
        self.usize_key("num_hidden_layers")
    }
    pub fn hidden_size(&self) -> Option<usize> {
        self.usize_key("hidden_size")
    }
    pub fn intermediate_size(&self) -> Option<usize> {
        self.usize_key("intermediate_size")
    }
    pub fn num_attention_heads(&self) -> Option<usize> {
        self.usize_key("num_attention_heads")
    }
    /// `num_key_value_heads`, defaulting to `num_attention_heads` (as transformers does).
    pub fn num_key_value_heads(&self) -> Option<usize> {
        self.usize_key("num_key_value_heads")
            .or_else(|| self.num_attention_heads())
    }
    pub fn vocab_size(&self) -> Option<usize> {
        self.usize_key("vocab_size")
    }
    pub fn max_position_embeddings(&self) -> Option<usize> {
        self.usize_key("max_position_embeddings")
    }
    /// `tie_word_embeddings`; transformers' default is `true` when the key is absent.
    pub fn tie_word_embeddings(&self) -> bool {
        self.raw
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }
    /// Top-level `rope_theta`, else `rope_parameters.rope_theta`.
    pub fn rope_theta(&self) -> Option<f64> {
        self.f64_key("rope_theta").or_else(|| {
            self.raw
                .get("rope_parameters")
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
        })
    }
    pub fn rms_norm_eps(&self) -> Option<f64> {
        self.f64_key("rms_norm_eps")
    }
    /// `sliding_window`; None when null or absent.
    pub fn sliding_window(&self) -> Option<usize> {
        self.usize_key("sliding_window")
    }
    pub fn use_sliding_window(&self) -> bool {
        self.raw
            .get("use_sliding_window")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    pub fn hidden_act(&self) -> Option<&str> {
        self.str_key("hidden_act")
    }
    /// The key this config stores its dtype under: `dtype` (transformers 5) or
    /// `torch_dtype` (older); None when neither is present.
    pub fn dtype_key(&self) -> Option<&'static str> {
        if self.raw.contains_key("dtype") {
            Some("dtype")
        } else if self.raw.contains_key("torch_dtype") {
            Some("torch_dtype")
        } else {
            None
        }
    }
    /// The checkpoint dtype from `dtype` or `torch_dtype` (None if absent or unknown).
    pub fn dtype(&self) -> Option<DType> {
        self.dtype_key()
            .and_then(|k| self.str_key(k))
            .and_then(DType::parse_hf)
    }

    pub fn set_num_hidden_layers(&mut self, n: usize) {
        self.raw.insert("num_hidden_layers".into(), Value::from(n));
    }
    pub fn set_vocab_size(&mut self, n: usize) {
        self.raw.insert("vocab_size".into(), Value::from(n));
    }
    /// Set the dtype under the key(s) the donor used (`dtype` when it had none).
    pub fn set_dtype(&mut self, dtype: DType) {
        let mut set = false;
        for key in ["dtype", "torch_dtype"] {
            if let Some(v) = self.raw.get_mut(key) {
                *v = Value::from(dtype.hf_name());
                set = true;
            }
        }
        if !set {
            self.raw
                .insert("dtype".into(), Value::from(dtype.hf_name()));
        }
    }

    /// A required integer key, or an error naming the file and key.
    pub fn require_usize(&self, key: &str, path: &Path) -> Result<usize> {
        self.usize_key(key).ok_or_else(|| {
            Error::invalid(
                PathBuf::from(path),
                format!("`{key}` is missing or not a non-negative integer"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_generations_of_keys() {
        let old = HfConfig::from_json_str(
            r#"{"architectures":["Qwen2ForCausalLM"],"rope_theta":1000000.0,
                "sliding_window":131072,"torch_dtype":"bfloat16","num_hidden_layers":24}"#,
        )
        .unwrap();
        assert_eq!(old.rope_theta(), Some(1e6));
        assert_eq!(old.dtype(), Some(DType::BF16));
        assert_eq!(old.sliding_window(), Some(131072));
        assert_eq!(old.architecture(), Some("Qwen2ForCausalLM"));
        let new = HfConfig::from_json_str(
            r#"{"rope_parameters":{"rope_theta":10000.0,"rope_type":"default"},
                "sliding_window":null,"dtype":"float32","tie_word_embeddings":false}"#,
        )
        .unwrap();
        assert_eq!(new.rope_theta(), Some(1e4));
        assert_eq!(new.dtype(), Some(DType::F32));
        assert_eq!(new.sliding_window(), None);
        assert!(!new.tie_word_embeddings());
    }

    #[test]
    fn setters_keep_key_names_and_order() {
        let mut c = HfConfig::from_json_str(
            r#"{"b":1,"torch_dtype":"bfloat16","num_hidden_layers":24,"a":2}"#,
        )
        .unwrap();
        c.set_dtype(DType::F16);
        c.set_num_hidden_layers(30);
        c.set_vocab_size(7);
        let keys: Vec<&str> = c.raw.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["b", "torch_dtype", "num_hidden_layers", "a", "vocab_size"]
        );
        assert_eq!(c.dtype(), Some(DType::F16));
        assert!(!c.raw.contains_key("dtype"));
        assert_eq!(c.num_hidden_layers(), Some(30));
        let mut both =
            HfConfig::from_json_str(r#"{"torch_dtype":"float32","dtype":"float32"}"#).unwrap();
        both.set_dtype(DType::BF16);
        assert_eq!(both.raw["torch_dtype"], "bfloat16");
        assert_eq!(both.raw["dtype"], "bfloat16");
        let mut none = HfConfig::from_json_str("{}").unwrap();
        none.set_dtype(DType::F16);
        assert_eq!(none.raw["dtype"], "float16");
    }

    #[test]
    fn write_keeps_every_key_in_order() {
        let text = r#"{"z":1,"architectures":["Qwen2ForCausalLM"],"a":{"nested":[1,2]},"rms_norm_eps":1e-06}"#;
        let c = HfConfig::from_json_str(text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        c.write(&path).unwrap();
        let back = HfConfig::from_file(&path).unwrap();
        assert_eq!(back.raw, c.raw);
        let keys: Vec<&str> = back.raw.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "architectures", "a", "rms_norm_eps"]);
        assert_eq!(back.rms_norm_eps(), Some(1e-6));
    }
}
