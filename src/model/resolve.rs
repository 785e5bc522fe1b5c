//! Model references → local folders: model map, local dir, Hugging Face cache.
//!
//! lamarck never downloads. A reference is looked up, in order, in the `--model-map` YAML,
//! as a local directory, then in the Hugging Face hub cache
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`) with the layout
//! `models--ORG--NAME/{refs/REF, snapshots/COMMIT/}`. `org/name@rev` picks a revision by
//! ref name (a file under `refs/`) or by commit hash (full, or a unique prefix of at least
//! 7 characters). A miss is an error that lists every place tried, so the user can see
//! which one they meant.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// `--model-map FILE`: a YAML mapping from reference string to local directory.
/// Relative directories are relative to the map file's folder.
#[derive(Debug, Clone, Default)]
pub struct ModelMap {
    pub entries: HashMap<String, PathBuf>,
}

impl ModelMap {
    pub fn load(path: &Path) -> Result<ModelMap> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not valid YAML: {e}")))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut entries = HashMap::new();
        match value {
            serde_yaml_ng::Value::Null => {}
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, v) in m {
                    let (Some(key), Some(dir)) = (yaml_scalar(&k), v.as_str()) else {
                        return Err(Error::invalid(
                            path,
                            format!(
                                "entry {k:?}: {v:?} is not `reference: directory` (both strings)"
                            ),
                        ));
                    };
                    let dir = PathBuf::from(dir);
                    let dir = if dir.is_absolute() {
                        dir
                    } else {
                        base.join(dir)
                    };
                    entries.insert(key, dir);
                }
            }
            _ => {
                return Err(Error::invalid(
                    path,
                    "a model map is a YAML mapping `reference: directory`",
                ))
            }
        }
        Ok(ModelMap { entries })
    }
}

fn yaml_scalar(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The Hugging Face hub cache folder from the environment (no check that it exists).
pub fn hf_hub_cache() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("HF_HUB_CACHE")
        .or_else(|| env("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// Resolve `reference` (`path`, `org/name`, `org/name@rev`). The error lists every place tried.
pub fn resolve_model(reference: &str, map: Option<&ModelMap>) -> Result<PathBuf> {
    let mut tried = Vec::new();
    match map {
        Some(map) => match map.entries.get(reference) {
            Some(dir) if dir.is_dir() => return Ok(dir.clone()),
            Some(dir) => tried.push(format!(
                "model map: `{reference}` → {} (not a directory)",
                dir.display()
            )),
            None => tried.push(format!("model map: no entry `{reference}`")),
        },
        None => tried.push("model map: none given (--model-map)".to_string()),
    }
    let local = Path::new(reference);
    if local.is_dir() {
        return Ok(local.to_path_buf());
    }
    let shown = std::env::current_dir()
        .map(|cwd| cwd.join(local))
        .unwrap_or_else(|_| local.to_path_buf());
    tried.push(format!("local directory {} (not found)", shown.display()));

    match hf_repo_id(reference) {
        None => tried.push(format!(
            "Hugging Face cache: skipped, `{reference}` is not a repo id (ORG/NAME[@REV])"
        )),
        Some((repo, rev)) => match hf_hub_cache() {
            None => tried.push(
                "Hugging Face cache: none (HF_HUB_CACHE, HF_HOME and HOME are unset)".to_string(),
            ),
            Some(cache) => match find_in_cache(&cache, repo, rev) {
                Ok(dir) => return Ok(dir),
                Err(why) => tried.push(format!("Hugging Face cache {}: {why}", cache.display())),
            },
        },
    }
    Err(Error::ModelNotFound {
        reference: reference.to_string(),
        tried,
    })
}

/// `org/name[@rev]` → (`org/name`, rev). None for things that cannot be repo ids.
pub fn hf_repo_id(reference: &str) -> Option<(&str, Option<&str>)> {
    let (repo, rev) = match reference.split_once('@') {
        Some((repo, rev)) if !rev.is_empty() => (repo, Some(rev)),
        Some(_) => return None,
        None => (reference, None),
    };
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
        return None;
    }
    Some((repo, rev))
}

/// The snapshot folder of model `repo` at `rev` (default `main`), or why there is none.
fn find_in_cache(
    cache: &Path,
    repo: &str,
    rev: Option<&str>,
) -> std::result::Result<PathBuf, String> {
    let snapshot = find_snapshot(cache, "models", repo, rev)?;
    if !snapshot.join("config.json").exists() {
        return Err(format!(
            "{} has no config.json (incomplete download?)",
            snapshot.display()
        ));
    }
    Ok(snapshot)
}

/// The snapshot folder `<cache>/<kind>--ORG--NAME/snapshots/<commit>` of `repo` at `rev`
/// (default `main`; `kind` is `models` or `datasets`), or why there is none.
pub fn find_snapshot(
    cache: &Path,
    kind: &str,
    repo: &str,
    rev: Option<&str>,
) -> std::result::Result<PathBuf, String> {
    let folder = cache.join(format!("{kind}--{}", repo.replace('/', "--")));
    if !folder.is_dir() {
        return Err(format!("no {}", folder.display()));
    }
    let snapshots = folder.join("snapshots");
    let wanted = rev.unwrap_or("main");
    let ref_file = folder.join("refs").join(wanted);
    let commit = if ref_file.is_file() {
        let text = std::fs::read_to_string(&ref_file)
            .map_err(|e| format!("cannot read {}: {e}", ref_file.display()))?;
        text.trim().to_string()
    } else {
        let available = list_dir(&snapshots);
        if let Some(rev) = rev {
            let matches: Vec<&String> = available
                .iter()
                .filter(|c| *c == rev || (rev.len() >= 7 && c.starts_with(rev)))
                .collect();
            match matches.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(format!(
                        "no ref or snapshot `{rev}` in {} (refs: {}; snapshots: {})",
                        folder.display(),
                        list_or_none(&list_dir(&folder.join("refs"))),
                        list_or_none(&available)
                    ))
                }
                _ => return Err(format!("revision prefix `{rev}` matches several snapshots")),
            }
        } else if let [only] = available.as_slice() {
            tracing::debug!(
                "{}: no refs/main, using the only snapshot {only}",
                folder.display()
            );
            only.clone()
        } else {
            return Err(format!(
                "no refs/main in {} and {} snapshots (pick one with {repo}@REV: {})",
                folder.display(),
                available.len(),
                list_or_none(&available)
            ));
        }
    };
    let snapshot = snapshots.join(&commit);
    if !snapshot.is_dir() {
        return Err(format!(
            "{} (named by refs/{wanted}) does not exist",
            snapshot.display()
        ));
    }
    Ok(snapshot)
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
