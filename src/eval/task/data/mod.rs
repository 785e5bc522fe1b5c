//! Task data, offline: one document (a JSON object) per item, from Parquet, JSON, JSON
//! Lines or CSV files, in a local folder or in the Hugging Face hub cache.
//!
//! Where the files of a split are looked up, in order:
//! 1. `dataset_kwargs.data_files[split]` (relative to the task file);
//! 2. `dataset_path` as a file, relative to the task file (every split reads it);
//! 3. `dataset_path` as a folder, relative to the task file;
//! 4. `dataset_path` as a Hub dataset id `ORG/NAME` in the hub cache ([`hub`]).
//!
//! In a folder (3, 4): the dataset card's `configs:` (README.md front matter) pick the
//! config `dataset_name` and its split's files; without a card, the folder
//! `dataset_name` (when it exists) or the folder itself is searched: a file
//! `<split>.{parquet,jsonl,json,csv}` first (lamarck's own layout), then the Hub's rules
//! for split names from file names ([`splits`]; a task asking for a keyword such as
//! `dev` gets the split the rules file it under, `validation`). Every file of a split is
//! read, in path order. A split name may carry a row slice, `train[:270]` ([`splits::parse_slice`]).
pub mod hub;
pub mod parquet;
pub mod splits;
mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::TaskSpec;
use crate::eval::{Error, Result};

/// Data file kinds, by extension.
const EXTENSIONS: &[&str] = &["parquet", "jsonl", "json", "csv"];

/// The documents of `split` (optionally sliced, `train[:100]`), in file order.
pub fn load_split(task: &TaskSpec, split: &str) -> Result<Vec<Value>> {
    let (name, slice) = splits::parse_slice(split).map_err(|m| task_error(task, m))?;
    let files = split_files(task, name)?;
    let mut docs = Vec::new();
    for file in &files {
        docs.extend(split_docs(file, name)?);
    }
    if let Some(slice) = slice {
        let keep = splits::slice_range(docs.len(), slice);
        docs = docs.drain(keep).collect();
    }
    Ok(docs)
}

/// The documents of one file of `split`: a JSON object of split → documents gives that
/// split's list.
fn split_docs(file: &Path, split: &str) -> Result<Vec<Value>> {
    let docs = read_docs(file)?;
    if let Some(Value::Object(by_split)) = docs.first().filter(|_| docs.len() == 1) {
        if let Some(Value::Array(items)) = by_split.get(split) {
            return Ok(items.clone());
        }
    }
    Ok(docs)
}

/// Every document of a parquet, json (array, or object of split → array), jsonl or csv
/// file.
pub fn read_docs(path: &Path) -> Result<Vec<Value>> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("parquet") => parquet::read_rows(path),
        _ => text::read_text_docs(path),
    }
}

fn task_error(task: &TaskSpec, message: String) -> Error {
    Error::Task {
        path: task.file.clone(),
        key: "split".into(),
        message,
    }
}

/// The files that hold `split` (a slice suffix is ignored), in read order. A dataset
/// not found is an error listing every place tried and the download command.
pub fn split_files(task: &TaskSpec, split: &str) -> Result<Vec<PathBuf>> {
    let (split, _) = splits::parse_slice(split).map_err(|m| task_error(task, m))?;
    let base = task.file.parent().unwrap_or(Path::new("."));
    let context = format!("task `{}` in {}", task.name, task.file.display());
    if !task.data_files.is_empty() {
        let Some(rel) = task.data_files.get(split) else {
            return Err(Error::Data {
                path: task.file.clone(),
                message: format!(
                    "split `{split}` is not in dataset_kwargs.data_files (it has: {}) ({context})",
                    task.data_files
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        };
        let path = base.join(rel);
        if !path.is_file() {
            return Err(Error::Data {
                path,
                message: format!("data file for split `{split}` does not exist ({context})"),
            });
        }
        return Ok(vec![path]);
    }
    let local = base.join(&task.dataset_path);
    if local.is_file() {
        return Ok(vec![local]);
    }
    if local.is_dir() {
        return folder_split(task, &local, split);
    }
    let mut tried = vec![format!(
        "local file or folder {} (relative to the task file): not found",
        local.display()
    )];
    if hub::is_repo_id(&task.dataset_path) {
        match hub::snapshot(&task.dataset_path) {
            Ok(root) => return folder_split(task, &root, split),
            Err(miss) => tried.extend(miss.tried),
        }
    } else {
        tried.push(format!(
            "Hugging Face cache: skipped, `{}` is not a dataset id (ORG/NAME)",
            task.dataset_path
        ));
    }
    let mut message = format!(
        "dataset `{}` of task `{}` not found; lamarck never downloads. Tried:",
        task.dataset_path, task.name
    );
    for t in &tried {
        message.push_str("\n  - ");
        message.push_str(t);
    }
    if hub::is_repo_id(&task.dataset_path) {
        message.push_str(&format!(
            "\nDownload it once (on a machine with network access, then copy the cache):\n  \
             huggingface-cli download --repo-type dataset {}",
            task.dataset_path
        ));
    }
    Err(Error::Data {
        path: task.file.clone(),
        message,
    })
}

/// The files of `split` in the dataset folder `root` (a local folder or a snapshot).
fn folder_split(task: &TaskSpec, root: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let data_err = |path: PathBuf, message: String| Error::Data {
        path,
        message: format!(
            "{message} (task `{}` in {})",
            task.name,
            task.file.display()
        ),
    };
    let configs = hub::card_configs(root).map_err(|m| data_err(root.join("README.md"), m))?;
    let all = list_data_files(root).map_err(|e| Error::io(root, e))?;
    let (by_split, place) = if configs.is_empty() {
        let (prefix, dir) = match task.dataset_name.as_deref() {
            Some(n) if root.join(n).is_dir() => (format!("{n}/"), root.join(n)),
            _ => (String::new(), root.to_path_buf()),
        };
        for ext in EXTENSIONS {
            let own = dir.join(format!("{split}.{ext}"));
            if own.is_file() {
                return Ok(vec![own]);
            }
        }
        let inside: Vec<String> = all
            .iter()
            .filter_map(|f| f.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let by_split: BTreeMap<String, Vec<String>> = splits::infer_splits(&inside)
            .into_iter()
            .map(|(s, fs)| (s, fs.into_iter().map(|f| format!("{prefix}{f}")).collect()))
            .collect();
        (by_split, dir.display().to_string())
    } else {
        let config = hub::pick_config(&configs, task.dataset_name.as_deref())
            .map_err(|m| data_err(root.join("README.md"), m))?;
        let mut by_split = BTreeMap::new();
        for (s, globs) in &config.data_files {
            let files =
                hub::match_globs(&all, globs).map_err(|m| data_err(root.join("README.md"), m))?;
            by_split.insert(s.clone(), files);
        }
        (
            by_split,
            format!(
                "config `{}` of {}",
                config.name,
                root.join("README.md").display()
            ),
        )
    };
    // without a card, `dev-00000-of-00001.parquet` is the Hub's `validation` split; a task
    // asking for `dev` gets it
    let found = by_split.get(split).or_else(|| {
        configs
            .is_empty()
            .then(|| splits::canonical(split))
            .flatten()
            .and_then(|c| by_split.get(c))
    });
    match found {
        Some(files) if !files.is_empty() => Ok(files.iter().map(|f| root.join(f)).collect()),
        Some(_) => Err(data_err(
            root.to_path_buf(),
            format!("split `{split}` of {place}: its data_files match no file"),
        )),
        None => {
            let have: Vec<String> = by_split
                .iter()
                .filter(|(_, fs)| !fs.is_empty())
                .map(|(s, fs)| format!("`{s}` ({} file(s))", fs.len()))
                .collect();
            Err(data_err(
                root.to_path_buf(),
                format!(
                    "no split `{split}` in {place}; it has {}",
                    if have.is_empty() {
                        format!("no data files ({})", EXTENSIONS.join(", "))
                    } else {
                        have.join(", ")
                    }
                ),
            ))
        }
    }
}

/// Data files under `root`, as sorted `/`-separated relative paths; hidden entries
/// (`.git`, `.cache`) and names starting with `_` are skipped, as `datasets` does.
fn list_data_files(root: &Path) -> std::io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let path = entry.path();
            let rel_name = format!("{rel}{name}");
            if path.is_dir() {
                stack.push((path, format!("{rel_name}/")));
            } else if path.is_file()
                && path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e))
            {
                out.push(rel_name);
            }
        }
    }
    out.sort();
    Ok(out)
}
