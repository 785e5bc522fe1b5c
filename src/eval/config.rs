//! `config.json` → candle's `qwen2::Config`.
//!
//! candle's struct wants a top-level `rope_theta`, a non-null `sliding_window` and every
//! field present; real files differ (transformers 5 writes `rope_parameters.rope_theta` and
//! `sliding_window: null`, older files a top-level `rope_theta`). This reads the JSON
//! itself, fills the documented Qwen2 defaults and says which key is wrong when it can't.
use std::path::Path;

use candle_nn::Activation;
use candle_transformers::models::qwen2;
use serde_json::Value;

use super::{Error, Result};

/// Build candle's Qwen2 config from a parsed `config.json`. `path` only labels errors.
pub fn qwen2_config(json: &Value, path: &Path) -> Result<qwen2::Config> {
    let obj = json
        .as_object()
        .ok_or_else(|| Error::model(path, "config.json is not a JSON object"))?;
    if let Some(mt) = obj.get("model_type").and_then(Value::as_str) {
        if mt != "qwen2" {
            return Err(Error::model(
                path,
                format!("model_type `{mt}` is not supported by `lamarck eval` (only qwen2)"),
            ));
        }
    }
    let usize_key = |key: &str| -> Result<usize> {
        obj.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| {
                Error::model(
                    path,
                    format!("`{key}` is missing or not a non-negative integer"),
                )
            })
    };
    let hidden_size = usize_key("hidden_size")?;
    let num_attention_heads = usize_key("num_attention_heads")?;
    let num_key_value_heads = match obj.get("num_key_value_heads") {
        None | Some(Value::Null) => num_attention_heads,
        Some(_) => usize_key("num_key_value_heads")?,
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
    let rope_theta = obj
        .get("rope_theta")
        .and_then(Value::as_f64)
        .or_else(|| {
            obj.get("rope_parameters")
                .and_then(|p| p.get("rope_theta"))
                .and_then(Value::as_f64)
        })
        .unwrap_or(10000.0);
    if let Some(kind) = obj
        .get("rope_parameters")
        .or_else(|| obj.get("rope_scaling"))
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
    let max_position_embeddings = match obj.get("max_position_embeddings") {
        None | Some(Value::Null) => 32768,
        Some(_) => usize_key("max_position_embeddings")?,
    };
    let use_sliding_window = obj
        .get("use_sliding_window")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // A window only applies when enabled; otherwise candle needs a window that never bites.
    let sliding_window = match obj.get("sliding_window").and_then(Value::as_u64) {
        Some(w) if use_sliding_window => w as usize,
        _ => usize::MAX / 2,
    };
    let hidden_act = match obj
        .get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu")
    {
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
        vocab_size: usize_key("vocab_size")?,
        hidden_size,
        intermediate_size: usize_key("intermediate_size")?,
        num_hidden_layers: usize_key("num_hidden_layers")?,
        num_attention_heads,
        num_key_value_heads,
        max_position_embeddings,
        sliding_window,
        max_window_layers: obj
            .get("max_window_layers")
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize,
        tie_word_embeddings: obj
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        rope_theta,
        rms_norm_eps: obj
            .get("rms_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-6),
        use_sliding_window,
        hidden_act,
    })
}

/// Read and parse `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<(Value, qwen2::Config)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| Error::model(&path, format!("not valid JSON: {e}")))?;
    let cfg = qwen2_config(&json, &path)?;
    Ok((json, cfg))
}
