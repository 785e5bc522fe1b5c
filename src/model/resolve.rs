//! Model references → local folders: model map, local dir, Hugging Face cache.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `--model-map FILE`: a YAML mapping from reference string to local directory.
#[derive(Debug, Clone, Default)]
pub struct ModelMap {
    pub entries: HashMap<String, PathBuf>,
}

impl ModelMap {
    pub fn load(_path: &Path) -> super::Result<ModelMap> {
        todo!("model helper")
    }
}

/// Resolve `reference` (`path`, `org/name`, `org/name@rev`). The error lists every place tried.
pub fn resolve_model(_reference: &str, _map: Option<&ModelMap>) -> super::Result<PathBuf> {
    todo!("model helper")
}
