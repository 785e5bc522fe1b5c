//! Writing a trained zoo model as an ordinary Hugging Face Qwen2 folder: bf16
//! `model.safetensors`, `config.json` and `generation_config.json` as transformers writes
//! them, and the tokenizer files, written by [`crate::model::ModelWriter`] (the one writer
//! of model folders: temporary name, fsync, rename into place, mode 0644).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::tokenizer::endoftext_id;
use super::twin::ZooShape;
use super::{Error, Result};
use crate::model::{self, ModelWriter, WriteOptions};

/// Files copied into every model folder besides the weights and configs.
pub struct SharedFiles {
    pub tokenizer_json: String,
    pub tokenizer_config_json: String,
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `config.json` for `shape`, keys in the order transformers writes them (sorted).
pub fn config_json(shape: &ZooShape) -> String {
    let eos = endoftext_id();
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": shape.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": shape.intermediate_size,
        "max_position_embeddings": shape.max_position_embeddings,
        "max_window_layers": shape.num_hidden_layers,
        "model_type": "qwen2",
        "num_attention_heads": shape.num_attention_heads,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_key_value_heads": shape.num_key_value_heads,
        "rms_norm_eps": shape.rms_norm_eps,
        "rope_theta": shape.rope_theta,
        "sliding_window": shape.max_position_embeddings,
        "tie_word_embeddings": true,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": shape.vocab_size
    });
    pretty(&config)
}

fn generation_config_json() -> String {
    let eos = endoftext_id();
    pretty(&serde_json::json!({
        "bos_token_id": eos,
        "do_sample": false,
        "eos_token_id": eos,
        "transformers_version": "4.46.3"
    }))
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// A tensor's shape and its bf16 little-endian bytes.
pub type Bf16Tensor = (Vec<usize>, Vec<u8>);

/// bf16 little-endian bytes of every tensor, by name.
pub fn to_bf16_bytes(tensors: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Bf16Tensor>> {
    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bytes: Vec<u8> = values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        out.insert(name.clone(), (t.dims().to_vec(), bytes));
    }
    Ok(out)
}

/// Write the model folder `dir` through the model layer's writer (a hidden temporary
/// folder, fsynced, renamed into place when complete; an existing folder is replaced only
/// if `force`).
pub fn write_model(
    dir: &Path,
    shape: &ZooShape,
    tensors: &BTreeMap<String, Tensor>,
    shared: &SharedFiles,
    force: bool,
) -> Result<PathBuf> {
    let opts = WriteOptions {
        force,
        ..WriteOptions::default()
    };
    let mut writer = ModelWriter::create(dir, opts)?;
    for (name, (dims, data)) in to_bf16_bytes(tensors)? {
        writer.add_tensor(&name, model::DType::BF16, &dims, data)?;
    }
    let files = [
        ("config.json", config_json(shape)),
        ("generation_config.json", generation_config_json()),
        ("tokenizer.json", shared.tokenizer_json.clone()),
        (
            "tokenizer_config.json",
            shared.tokenizer_config_json.clone(),
        ),
    ];
    for (file, text) in files {
        let path = writer.temp_path().join(file);
        std::fs::write(&path, text).map_err(io_err(&path))?;
    }
    Ok(writer.finish()?)
}

/// The f32 tensors of a saved zoo model, read through the evaluator's loader (the model
/// layer's validated, memory-mapped reader).
pub fn read_model(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let tensors = crate::eval::weights::load_dir_tensors(dir, DType::F32, &Device::Cpu)?;
    Ok(tensors.into_iter().collect())
}

/// Write a text file with mode 0644.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(path))?;
    }
    Ok(())
}
