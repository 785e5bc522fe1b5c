//! `config.json` as real checkpoints write it.
use std::path::Path;

/// A `config.json`, kept whole (every key is preserved when written back) with typed
/// accessors for the keys lamarck needs.
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub raw: serde_json::Map<String, serde_json::Value>,
}

impl HfConfig {
    pub fn from_file(_path: &Path) -> super::Result<HfConfig> {
        todo!("model helper")
    }
    pub fn architecture(&self) -> Option<&str> {
        todo!("model helper")
    }
    pub fn model_type(&self) -> Option<&str> {
        todo!("model helper")
    }
    pub fn num_hidden_layers(&self) -> Option<usize> {
        todo!("model helper")
    }
    pub fn tie_word_embeddings(&self) -> bool {
        todo!("model helper")
    }
}
