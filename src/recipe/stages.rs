//! Multi-document recipes (`mergekit-multi`): split the file into documents, parse each
//! as a [`Stage`], link model references to stages, and order stages by dependency.
//!
//! A reference means a stage's output when it equals the stage's name, `merges/<name>`,
//! or `<org>/<name>` (the last form shadows a Hugging Face id, so it is logged).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::{closest, Error, Result};
use super::raw::{parse_stage, Ctx};
use super::types::Stage;
use crate::registry::Compat;

/// A parsed recipe file: its stages in file order.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub file: PathBuf,
    pub stages: Vec<Stage>,
}

/// Split YAML text into documents at `---` lines. Returns (1-based document number,
/// first line number, text). The content-free prelude before a leading `---` is dropped.
fn split_documents(text: &str) -> Vec<(usize, usize, String)> {
    let mut docs: Vec<(usize, String)> = vec![(1, String::new())];
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---"
            || line.starts_with("--- ")
            || line.starts_with("---\t")
            || (line.starts_with("---") && line[3..].trim_start().starts_with('#'));
        if is_marker {
            let rest = line[3..].trim_start();
            let mut body = String::new();
            if !rest.is_empty() && !rest.starts_with('#') {
                body.push_str(rest);
                body.push('\n');
            }
            docs.push((i + 2, body));
        } else if let Some(last) = docs.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    if docs.len() > 1 && !has_content(&docs[0].1) {
        docs.remove(0);
    }
    docs.into_iter()
        .enumerate()
        .map(|(i, (line, t))| (i + 1, line, t))
        .collect()
}

fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#') && t != "..."
    })
}

impl Recipe {
    /// Read and parse a recipe file.
    pub fn load(path: &Path, compat: Option<Compat>) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Recipe::parse(&text, path, compat)
    }

    /// Parse recipe text; `file` is only used in messages.
    pub fn parse(text: &str, file: &Path, compat: Option<Compat>) -> Result<Recipe> {
        let mut stages = Vec::new();
        for (document, first_line, body) in split_documents(text) {
            if !has_content(&body) {
                continue; // empty document, e.g. after a trailing `---`
            }
            // Pad with blank lines so the parser's line numbers are the file's.
            let padded = "\n".repeat(first_line - 1) + &body;
            let value: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(&padded).map_err(|e| Error::Yaml {
                    file: file.to_path_buf(),
                    document,
                    line: e.location().map_or(first_line, |l| l.line()),
                    message: e.to_string(),
                })?;
            if value.is_null() {
                continue;
            }
            let ctx = Ctx { file, document };
            stages.push(parse_stage(&ctx, &value, &body, compat)?);
        }
        if stages.is_empty() {
            return Err(Error::Stages {
                file: file.to_path_buf(),
                message: "no merge configuration in this file".into(),
            });
        }
        let recipe = Recipe {
            file: file.to_path_buf(),
            stages,
        };
        recipe.check_names()?;
        Ok(recipe)
    }

    fn stages_error(&self, message: String) -> Error {
        Error::Stages {
            file: self.file.clone(),
            message,
        }
    }

    fn check_names(&self) -> Result<()> {
        let mut seen = BTreeSet::new();
        let mut unnamed = Vec::new();
        for s in &self.stages {
            match &s.name {
                Some(n) if !seen.insert(n.as_str()) => {
                    return Err(self.stages_error(format!(
                        "two stages are named `{n}` (document {}); stage names must be unique",
                        s.document
                    )))
                }
                Some(_) => {}
                None => unnamed.push(s.document),
            }
        }
        if unnamed.len() > 1 {
            return Err(self.stages_error(format!(
                "documents {unnamed:?} have no `name:`; at most one stage (the final output) may be unnamed"
            )));
        }
        Ok(())
    }

    /// Display name of stage `i`: its `name`, or `final` when unnamed.
    pub fn stage_name(&self, i: usize) -> &str {
        self.stages[i].name.as_deref().unwrap_or("final")
    }

    /// The stage whose output `reference` means, if any.
    pub fn stage_for_reference(&self, reference: &str) -> Option<usize> {
        let path = reference.split('@').next().unwrap_or(reference);
        self.stages.iter().position(|s| {
            let Some(name) = s.name.as_deref() else {
                return false;
            };
            path == name
                || path.strip_prefix("merges/") == Some(name)
                || (path.matches('/').count() == 1 && path.rsplit('/').next() == Some(name))
        })
    }

    /// Stages that stage `i` reads.
    pub fn dependencies(&self, i: usize) -> Vec<usize> {
        let mut deps: Vec<usize> = Vec::new();
        for r in self.stages[i].model_refs() {
            if let Some(d) = self.stage_for_reference(r) {
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
        }
        deps
    }

    /// The stage `--out` receives: `--stage NAME`, else the unnamed stage, else the one
    /// named stage no other stage uses.
    pub fn output_stage(&self, wanted: Option<&str>) -> Result<usize> {
        if let Some(w) = wanted {
            return self
                .stages
                .iter()
                .position(|s| s.name.as_deref() == Some(w))
                .ok_or_else(|| {
                    let names: Vec<&str> = self
                        .stages
                        .iter()
                        .filter_map(|s| s.name.as_deref())
                        .collect();
                    let hint = closest(w, names.iter().copied())
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    self.stages_error(format!(
                        "no stage is named `{w}`{hint}; stages: {}",
                        names.join(", ")
                    ))
                });
        }
        if let Some(i) = self.stages.iter().position(|s| s.name.is_none()) {
            return Ok(i);
        }
        let used: BTreeSet<usize> = (0..self.stages.len())
            .flat_map(|i| self.dependencies(i))
            .collect();
        let roots: Vec<usize> = (0..self.stages.len())
            .filter(|i| !used.contains(i))
            .collect();
        match roots.as_slice() {
            [one] => Ok(*one),
            [] => Err(self.stages_error("every stage is used by another one (a cycle?)".into())),
            many => Err(self.stages_error(format!(
                "several stages are not used by any other: {}; pick the output with --stage NAME",
                many.iter()
                    .map(|&i| format!("`{}`", self.stage_name(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The stages needed to build `target`, in dependency order (target last).
    /// Cycles anywhere in the file are an error.
    pub fn build_order(&self, target: usize) -> Result<Vec<usize>> {
        for i in 0..self.stages.len() {
            for r in self.stages[i].model_refs() {
                if let Some(d) = self.stage_for_reference(r) {
                    if !r.starts_with("merges/") && r.contains('/') {
                        tracing::warn!(
                            "stage `{}`: `{r}` is taken to mean the output of stage `{}`, not the Hugging Face model of that name",
                            self.stage_name(i), self.stage_name(d)
                        );
                    }
                }
            }
        }
        // 0 = unvisited, 1 = on the stack, 2 = done
        let mut state = vec![0u8; self.stages.len()];
        let mut order = Vec::new();
        for start in std::iter::once(target).chain(0..self.stages.len()) {
            let mut path = Vec::new();
            self.visit(start, &mut state, &mut path, &mut order)?;
        }
        let needed = self.closure(target);
        Ok(order.into_iter().filter(|i| needed.contains(i)).collect())
    }

    fn closure(&self, target: usize) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if out.insert(i) {
                todo.extend(self.dependencies(i));
            }
        }
        out
    }

    fn visit(
        &self,
        i: usize,
        state: &mut [u8],
        path: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<()> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let cycle: Vec<&str> = path[start..]
                    .iter()
                    .chain(std::iter::once(&i))
                    .map(|&p| self.stage_name(p))
                    .collect();
                return Err(self.stages_error(format!(
                    "circular dependency between stages: {}",
                    cycle.join(" -> ")
                )));
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for d in self.dependencies(i) {
            self.visit(d, state, path, order)?;
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_markers() {
        let docs = split_documents("# c\n---\na: 1\n--- # x\nb: 2\n---\n");
        let bodies: Vec<&str> = docs.iter().map(|d| d.2.as_str()).collect();
        assert_eq!(bodies, vec!["a: 1\n", "b: 2\n", ""]);
        assert_eq!((docs[0].0, docs[0].1, docs[1].1), (1, 3, 5));
        let one = split_documents("a: 1\nb: 2\n");
        assert_eq!(one.len(), 1);
    }
}
