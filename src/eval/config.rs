//! A model's [`HfConfig`] (the one `config.json` parser, `crate::model::config`) →
//! candle's `qwen2::Config`.
//!
//! candle's struct wants a top-level `rope_theta`, a non-null `sliding_window` and every
//! field present; real files differ (transformers 5 writes `rope_parameters.rope_theta` and
//! `sliding_window: null`, older files a top-level `rope_theta`). [`HfConfig`] reads both
//! generations of keys and supplies transformers' defaults (`num_key_value_heads` =
//! `num_attention_heads`, `tie_word_embeddings` = true); this fills the documented Qwen2
//! defaults for the rest and says which key is wrong when it can't.
use std::path::Path;

use candle_nn::Activation;
use candle_transformers::models::qwen2;
use serde_json::Value;

use super::{Error, Result};
use crate::model::HfConfig;

/// Build candle's Qwen2 config from a parsed `config.json`. `path` only labels errors.
pub fn qwen2_config(cfg: &HfConfig, path: &Path) -> Result<qwen2::Config> {
    if let Some(mt) = cfg.model_type() {
        if mt != "qwen2" {
            return Err(Error::model(
                path,
                format!("model_type `{mt}` is not supported by `lamarck eval` (only qwen2)"),
            ));
        }
    }
    let require = |key: &str| -> Result<usize> {
        cfg.require_usize(key, path)
            .map_err(|e| Error::Invalid(e.to_string()))
    };
    let hidden_size = require("hidden_size")?;
    let num_attention_heads = require("num_attention_heads")?;
    let num_key_value_heads = match cfg.raw.get("num_key_value_heads") {
        None | Some(Value::Null) => num_attention_heads,
        Some(_) => require("num_key_value_heads")?,
    };
    if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
        return Err(Error::model(
            path,
            format!("hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}"),
        ));
    }
    if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
        return Err(Error::model(
            path,
            format!("num_attention_heads {num_attention_heads} is not a multiple of num_key_value_heads {num_key_value_heads}"),
        ));
    }
    if let Some(kind) = cfg
        .raw
        .get("rope_parameters")
        .or_else(|| cfg.raw.get("rope_scaling"))
        .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
        .and_then(Value::as_str)
    {
        if kind != "default" {
            return Err(Error::model(
                path,
                format!(
                    "rope scaling `{kind}` is not supported (only the default rotary embedding)"
                ),
            ));
        }
    }
    let max_position_embeddings = match cfg.raw.get("max_position_embeddings") {
        None | Some(Value::Null) => 32768,
        Some(_) => require("max_position_embeddings")?,
    };
    let use_sliding_window = cfg.use_sliding_window();
    // A window only applies when enabled; otherwise candle needs a window that never bites.
    let sliding_window = match cfg.sliding_window() {
        Some(w) if use_sliding_window => w,
        _ => usize::MAX / 2,
    };
    let hidden_act = match cfg.hidden_act().unwrap_or("silu") {
        "silu" | "swish" => Activation::Silu,
        "gelu" => Activation::Gelu,
        "gelu_new" | "gelu_pytorch_tanh" => Activation::NewGelu,
        other => {
            return Err(Error::model(
                path,
                format!("hidden_act `{other}` is not supported (silu, gelu, gelu_new)"),
            ))
        }
    };
    Ok(qwen2::Config {
        vocab_size: require("vocab_size")?,
        hidden_size,
        intermediate_size: require("intermediate_size")?,
        num_hidden_layers: require("num_hidden_layers")?,
        num_attention_heads,
        num_key_value_heads,
        max_position_embeddings,
        sliding_window,
        max_window_layers: cfg
            .raw
            .get("max_window_layers")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize,
        tie_word_embeddings: cfg.tie_word_embeddings(),
        rope_theta: cfg.rope_theta().unwrap_or(10000.0),
        rms_norm_eps: cfg.rms_norm_eps().unwrap_or(1e-6),
        use_sliding_window,
        hidden_act,
    })
}

/// Read `dir/config.json` and convert it.
pub fn read_config(dir: &Path) -> Result<(HfConfig, qwen2::Config)> {
    let path = dir.join("config.json");
    let hf = HfConfig::from_file(&path).map_err(|e| Error::Invalid(e.to_string()))?;
    let cfg = qwen2_config(&hf, &path)?;
    Ok((hf, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<qwen2::Config> {
        let hf = HfConfig::from_json_str(text).unwrap();
        qwen2_config(&hf, Path::new("config.json"))
    }

    const SHAPE: &str = r#""hidden_size":8,"num_attention_heads":2,"intermediate_size":16,
        "num_hidden_layers":1,"vocab_size":32"#;

    #[test]
    fn missing_tie_word_embeddings_means_tied_as_in_the_model_layer() {
        let c = config(&format!("{{{SHAPE}}}")).unwrap();
        assert!(c.tie_word_embeddings);
        assert_eq!(c.num_key_value_heads, 2);
        let untied = config(&format!("{{{SHAPE},\"tie_word_embeddings\":false}}")).unwrap();
        assert!(!untied.tie_word_embeddings);
    }

    #[test]
    fn both_generations_of_rope_keys_and_a_null_window() {
        let old = config(&format!(
            "{{{SHAPE},\"rope_theta\":1e6,\"sliding_window\":4096}}"
        ));
        assert_eq!(old.unwrap().rope_theta, 1e6);
        let new = config(&format!(
            "{{{SHAPE},\"rope_parameters\":{{\"rope_theta\":5e5,\"rope_type\":\"default\"}},\"sliding_window\":null}}"
        ))
        .unwrap();
        assert_eq!(new.rope_theta, 5e5);
        assert!(new.sliding_window > 1 << 40);
    }

    #[test]
    fn a_bad_key_is_named() {
        let err = config(r#"{"hidden_size":"8"}"#).unwrap_err().to_string();
        assert!(err.contains("`hidden_size`"), "{err}");
        let err = config(&format!(
            "{{{SHAPE},\"rope_scaling\":{{\"type\":\"yarn\"}}}}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("rope scaling `yarn`"), "{err}");
    }
}
