//! Dataset repositories as `huggingface-cli download --repo-type dataset ORG/NAME` leaves
//! them (`<cache>/datasets--ORG--NAME/refs/main` → `snapshots/<commit>/`), and the
//! `configs:` a dataset card (README.md front matter) declares. Never the network.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::splits::glob_regex;
use crate::model::resolve::{find_snapshot, hf_hub_cache, hf_repo_id};

/// Where `ORG/NAME` was looked for, for the error of a dataset not found.
pub struct Miss {
    pub tried: Vec<String>,
}

/// Whether `dataset_path` can name a Hub dataset (`ORG/NAME` or `NAME`).
pub fn is_repo_id(dataset_path: &str) -> bool {
    !dataset_path.contains('@') && hf_repo_id(dataset_path).is_some()
}

/// The snapshot folder of dataset `repo` in the hub cache.
pub fn snapshot(repo: &str) -> std::result::Result<PathBuf, Miss> {
    let Some(cache) = hf_hub_cache() else {
        return Err(Miss {
            tried: vec![
                "Hugging Face cache: none (HF_HUB_CACHE, HF_HOME and HOME are unset)".into(),
            ],
        });
    };
    let origin = if std::env::var_os("HF_HUB_CACHE").is_some_and(|v| !v.is_empty()) {
        "$HF_HUB_CACHE"
    } else if std::env::var_os("HF_HOME").is_some_and(|v| !v.is_empty()) {
        "$HF_HOME/hub"
    } else {
        "~/.cache/huggingface/hub"
    };
    find_snapshot(&cache, "datasets", repo, None).map_err(|why| Miss {
        tried: vec![format!(
            "Hugging Face cache {} ({origin}): {why}",
            cache.display()
        )],
    })
}

/// One config of a dataset card: split → glob patterns relative to the repository root.
#[derive(Debug, Clone, PartialEq)]
pub struct CardConfig {
    pub name: String,
    pub default: bool,
    pub data_files: BTreeMap<String, Vec<String>>,
}

/// The `configs:` of `<root>/README.md`'s YAML front matter; empty when there is no card,
/// no front matter or no `configs:` (the file-name rules apply then).
pub fn card_configs(root: &Path) -> std::result::Result<Vec<CardConfig>, String> {
    let Ok(text) = std::fs::read_to_string(root.join("README.md")) else {
        return Ok(Vec::new());
    };
    parse_card(&text)
}

/// [`card_configs`] on the text of a card.
pub fn parse_card(text: &str) -> std::result::Result<Vec<CardConfig>, String> {
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Ok(Vec::new());
    }
    let front: Vec<&str> = lines.take_while(|l| l.trim_end() != "---").collect();
    let meta: Value = serde_yaml_ng::from_str(&front.join("\n"))
        .map_err(|e| format!("README.md front matter is not valid YAML: {e}"))?;
    let Some(configs) = meta.get("configs").and_then(Value::as_sequence) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let at = format!("README.md configs[{i}]");
        let name = c
            .get("config_name")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let default = c.get("default").and_then(Value::as_bool).unwrap_or(false);
        let mut data_files: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let strings = |v: &Value| -> Option<Vec<String>> {
            match v {
                Value::String(s) => Some(vec![s.clone()]),
                Value::Sequence(s) => s.iter().map(|x| x.as_str().map(str::to_string)).collect(),
                _ => None,
            }
        };
        match c.get("data_files") {
            None => data_files.insert("train".into(), vec!["**".into()]),
            Some(v @ Value::String(_)) => {
                data_files.insert("train".into(), strings(v).unwrap_or_default())
            }
            Some(Value::Sequence(items)) => {
                for item in items {
                    match item {
                        Value::String(s) => data_files
                            .entry("train".into())
                            .or_default()
                            .push(s.clone()),
                        Value::Mapping(_) => {
                            let split =
                                item.get("split").and_then(Value::as_str).unwrap_or("train");
                            let paths = item.get("path").and_then(strings).ok_or_else(|| {
                                format!("{at}.data_files: split `{split}` has no `path` (a glob or a list of globs)")
                            })?;
                            data_files
                                .entry(split.to_string())
                                .or_default()
                                .extend(paths);
                        }
                        _ => {
                            return Err(format!(
                                "{at}.data_files: expected globs or {{split, path}} entries"
                            ))
                        }
                    }
                }
                None
            }
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let (Some(split), Some(paths)) = (k.as_str(), strings(v)) else {
                        return Err(format!("{at}.data_files: expected split: glob(s)"));
                    };
                    data_files.insert(split.to_string(), paths);
                }
                None
            }
            Some(_) => {
                return Err(format!(
                    "{at}.data_files: expected globs or {{split, path}} entries"
                ))
            }
        };
        out.push(CardConfig {
            name,
            default,
            data_files,
        });
    }
    Ok(out)
}

/// The config `dataset_name` names (none: the card's default, else its only config, else
/// `default`).
pub fn pick_config<'a>(
    configs: &'a [CardConfig],
    dataset_name: Option<&str>,
) -> std::result::Result<&'a CardConfig, String> {
    let names = || {
        configs
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match dataset_name {
        Some(n) => configs.iter().find(|c| c.name == n),
        None => configs
            .iter()
            .find(|c| c.default)
            .or_else(|| configs.iter().find(|c| c.name == "default"))
            .or(if configs.len() == 1 {
                configs.first()
            } else {
                None
            }),
    };
    found.ok_or_else(|| match dataset_name {
        Some(n) => format!(
            "the dataset card has no config `{n}` (dataset_name); it has: {}",
            names()
        ),
        None => format!(
            "the dataset card has several configs; set dataset_name to one of: {}",
            names()
        ),
    })
}

/// The files of `files` (relative, `/`-separated, sorted) that `globs` match, sorted.
pub fn match_globs(files: &[String], globs: &[String]) -> std::result::Result<Vec<String>, String> {
    let res = globs
        .iter()
        .map(|g| glob_regex(g))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(files
        .iter()
        .filter(|f| res.iter().any(|r| r.is_match(f)))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "---\nlanguage: [en]\nconfigs:\n- config_name: ARC-Challenge\n  data_files:\n  - split: train\n    path: ARC-Challenge/train-*\n  - split: test\n    path: ARC-Challenge/test-*\n- config_name: ARC-Easy\n  default: true\n  data_files: ARC-Easy/*.parquet\n---\n# Card\n";

    #[test]
    fn card_configs_name_their_files() {
        let cs = parse_card(CARD).unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].data_files["test"], ["ARC-Challenge/test-*"]);
        assert_eq!(cs[1].data_files["train"], ["ARC-Easy/*.parquet"]);
        assert_eq!(
            pick_config(&cs, Some("ARC-Challenge")).unwrap().name,
            "ARC-Challenge"
        );
        assert_eq!(pick_config(&cs, None).unwrap().name, "ARC-Easy");
        let e = pick_config(&cs, Some("ARC")).unwrap_err();
        assert!(
            e.contains("no config `ARC`") && e.contains("ARC-Challenge, ARC-Easy"),
            "{e}"
        );
        assert!(parse_card("# no front matter\n").unwrap().is_empty());
    }

    #[test]
    fn globs_pick_files() {
        let files: Vec<String> = [
            "ARC-Challenge/test-00000-of-00001.parquet",
            "ARC-Challenge/train-00000-of-00001.parquet",
            "ARC-Easy/test-00000-of-00001.parquet",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let got = match_globs(&files, &["ARC-Challenge/test-*".into()]).unwrap();
        assert_eq!(got, ["ARC-Challenge/test-00000-of-00001.parquet"]);
    }
}
