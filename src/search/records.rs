//! The files of `results/<run>/`, written so that `kill -9` at any moment loses nothing:
//!
//! - `run.yaml`: lamarck version, the search file and recipe texts (a resume reads these,
//!   not the files, which may have changed since).
//! - `candidates.csv`, `parents.csv`: one row per scored model, appended and fsynced; a
//!   torn last line (killed mid-write) is cut off when the run is opened again.
//! - `items.jsonl`: per-item outcomes, written (and fsynced) *before* their candidate's row;
//!   lines of a candidate without a row are dropped on resume, so no item is duplicated.
//! - `frontier.csv`, `state.json`: rewritten atomically (temp file, fsync, rename).
//! - `raced.csv` (racing only): candidates stopped early, one partial row each (never on the
//!   frontier); `evaluations.csv`: items scored per candidate or parent, by the model and
//!   from the cache (written before the row; the last line of an id counts);
//!   `responses.jsonl`: the per-item response cache ([`super::cache`]).
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// `run.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    pub lamarck_version: String,
    /// The search file, absolute (relative paths inside it are relative to its folder).
    pub search_file: PathBuf,
    /// Folder `lamarck evolve` ran in (model references are relative to it).
    pub working_dir: PathBuf,
    pub search: String,
    pub recipe: String,
    /// `--model-map` given on the command line (overrides the search file's `model_map`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_map: Option<PathBuf>,
}

/// One row of `candidates.csv` / `frontier.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRow {
    pub id: u64,
    /// 0 for the starting point, then optimizer generation + 1.
    pub generation: u64,
    /// Gene values in gene units.
    pub genes: Vec<f64>,
    pub scores: Vec<f64>,
    pub fitness: f64,
    pub hash: String,
    pub merge_s: f64,
    pub eval_s: f64,
}

/// One row of `parents.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentRow {
    pub model: String,
    pub scores: Vec<f64>,
    pub fitness: f64,
}

pub fn candidate_header(genes: &[String], objectives: &[String]) -> String {
    let mut cols = vec!["id".to_string(), "generation".into()];
    cols.extend(genes.iter().cloned());
    cols.extend(objectives.iter().cloned());
    cols.extend(["fitness", "hash", "merge_s", "eval_s"].map(String::from));
    cols.join(",")
}

pub fn parent_header(objectives: &[String]) -> String {
    let mut cols = vec!["model".to_string()];
    cols.extend(objectives.iter().cloned());
    cols.push("fitness".into());
    cols.join(",")
}

impl CandidateRow {
    pub fn to_line(&self) -> String {
        let mut cols = vec![self.id.to_string(), self.generation.to_string()];
        cols.extend(self.genes.iter().map(|g| g.to_string()));
        cols.extend(self.scores.iter().map(|s| s.to_string()));
        cols.push(self.fitness.to_string());
        cols.push(self.hash.clone());
        cols.push(format!("{:.3}", self.merge_s));
        cols.push(format!("{:.3}", self.eval_s));
        cols.join(",")
    }

    pub fn parse(
        line: &str,
        genes: usize,
        objectives: usize,
    ) -> std::result::Result<CandidateRow, String> {
        let cols: Vec<&str> = line.split(',').collect();
        let want = 2 + genes + objectives + 4;
        if cols.len() != want {
            return Err(format!("{} columns, expected {want}", cols.len()));
        }
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| format!("`{s}` is not a number"))
        };
        let int = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("`{s}` is not an integer"))
        };
        Ok(CandidateRow {
            id: int(cols[0])?,
            generation: int(cols[1])?,
            genes: cols[2..2 + genes]
                .iter()
                .map(|s| num(s))
                .collect::<std::result::Result<_, _>>()?,
            scores: cols[2 + genes..2 + genes + objectives]
                .iter()
                .map(|s| num(s))
                .collect::<std::result::Result<_, _>>()?,
            fitness: num(cols[want - 4])?,
            hash: cols[want - 3].to_string(),
            merge_s: num(cols[want - 2])?,
            eval_s: num(cols[want - 1])?,
        })
    }
}

impl ParentRow {
    pub fn to_line(&self) -> String {
        let mut cols = vec![self.model.clone()];
        cols.extend(self.scores.iter().map(|s| s.to_string()));
        cols.push(self.fitness.to_string());
        cols.join(",")
    }
    pub fn parse(line: &str, objectives: usize) -> std::result::Result<ParentRow, String> {
        let cols: Vec<&str> = line.split(',').collect();
        if cols.len() != objectives + 2 {
            return Err(format!(
                "{} columns, expected {}",
                cols.len(),
                objectives + 2
            ));
        }
        let num = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| format!("`{s}` is not a number"))
        };
        Ok(ParentRow {
            model: cols[0].to_string(),
            scores: cols[1..=objectives]
                .iter()
                .map(|s| num(s))
                .collect::<std::result::Result<_, _>>()?,
            fitness: num(cols[objectives + 1])?,
        })
    }
}

/// Append `line` + newline and fsync.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io(path, e))
}

/// Append several lines in one write, then fsync.
pub fn append_lines(path: &Path, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut text = lines.join("\n");
    text.push('\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io(path, e))
}

/// Replace `path` with `text` atomically: temp file, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The complete lines of an append-only file after its header, cutting off a torn last
/// line. A missing file is created with `header`; a different header is an error.
pub fn read_rows(path: &Path, header: &str) -> Result<Vec<String>> {
    if !path.exists() {
        write_atomic(path, &format!("{header}\n"))?;
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    if complete.len() != text.len() {
        tracing::warn!(
            "{}: dropping a torn last line (the run was killed while writing it)",
            path.display()
        );
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        f.set_len(complete.len() as u64)
            .and_then(|_| f.sync_all())
            .map_err(|e| Error::io(path, e))?;
    }
    let mut lines = complete.lines();
    match lines.next() {
        None => {
            write_atomic(path, &format!("{header}\n"))?;
            Ok(Vec::new())
        }
        Some(h) if h == header => Ok(lines.filter(|l| !l.is_empty()).map(str::to_string).collect()),
        Some(h) => Err(Error::Records {
            path: path.to_path_buf(),
            message: format!("header `{h}` does not match this search (`{header}`); was the search file changed?"),
        }),
    }
}

/// Drop `items.jsonl` lines whose candidate has no row (written before a crash cut the
/// row off); rewrites the file only when something is dropped.
pub fn prune_items(path: &Path, keep: &BTreeSet<String>) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut kept = String::new();
    let mut dropped = 0;
    for line in text.split_inclusive('\n') {
        let owner = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v.get("candidate")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            });
        match owner {
            Some(c) if line.ends_with('\n') && keep.contains(&c) => kept.push_str(line),
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::info!(
            "{}: dropping {dropped} line(s) of unrecorded candidates",
            path.display()
        );
        write_atomic(path, &kept)?;
    }
    Ok(())
}

/// Paths of a run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn run_yaml(&self) -> PathBuf {
        self.root.join("run.yaml")
    }
    pub fn candidates(&self) -> PathBuf {
        self.root.join("candidates.csv")
    }
    pub fn parents(&self) -> PathBuf {
        self.root.join("parents.csv")
    }
    pub fn items(&self) -> PathBuf {
        self.root.join("items.jsonl")
    }
    pub fn frontier(&self) -> PathBuf {
        self.root.join("frontier.csv")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn raced(&self) -> PathBuf {
        self.root.join("raced.csv")
    }
    pub fn evaluations(&self) -> PathBuf {
        self.root.join("evaluations.csv")
    }
    pub fn responses(&self) -> PathBuf {
        self.root.join("responses.jsonl")
    }

    pub fn read_info(&self) -> Result<RunInfo> {
        let p = self.run_yaml();
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_yaml_ng::from_str(&text).map_err(|e| Error::Records {
            path: p,
            message: format!("not a lamarck run.yaml: {e}"),
        })
    }

    /// Every complete candidate row (read-only: a torn line is ignored, not cut).
    pub fn read_candidates(&self, genes: usize, objectives: usize) -> Result<Vec<CandidateRow>> {
        parse_rows(&self.candidates(), false, |l| {
            CandidateRow::parse(l, genes, objectives)
        })
    }

    pub fn read_parents(&self, objectives: usize) -> Result<Vec<ParentRow>> {
        parse_rows(&self.parents(), true, |l| ParentRow::parse(l, objectives))
    }
}

/// Every complete data row of the CSV record file `p` (after its header), parsed by
/// `parse`; read-only: a torn last line is ignored, not cut. An absent file is no rows when
/// `missing_ok`, else an error.
pub fn parse_rows<T>(
    p: &Path,
    missing_ok: bool,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Vec<T>> {
    if missing_ok && !p.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    text.split_inclusive('\n')
        .skip(1)
        .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            parse(l.trim_end()).map_err(|m| Error::Records {
                path: p.to_path_buf(),
                message: format!("row {}: {m}", i + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_exactly() {
        let row = CandidateRow {
            id: 7,
            generation: 2,
            genes: vec![0.1 + 0.2, 1.0 / 3.0],
            scores: vec![0.25],
            fitness: 0.25,
            hash: "ab12".into(),
            merge_s: 0.5,
            eval_s: 1.25,
        };
        assert_eq!(CandidateRow::parse(&row.to_line(), 2, 1).unwrap(), row);
        assert!(CandidateRow::parse("1,2,3", 2, 1).is_err());
    }

    #[test]
    fn a_torn_last_line_is_cut_and_a_foreign_header_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "id,x\n1,a\n2,b").unwrap();
        assert_eq!(read_rows(&p, "id,x").unwrap(), vec!["1,a"]);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "id,x\n1,a\n");
        assert!(read_rows(&p, "id,y").is_err());
        let items = dir.path().join("i.jsonl");
        std::fs::write(
            &items,
            "{\"candidate\":\"1\"}\n{\"candidate\":\"2\"}\n{\"cand",
        )
        .unwrap();
        prune_items(&items, &BTreeSet::from(["1".to_string()])).unwrap();
        assert_eq!(
            std::fs::read_to_string(&items).unwrap(),
            "{\"candidate\":\"1\"}\n"
        );
    }
}
