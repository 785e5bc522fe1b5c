//! The executor of multi-stage recipes, shared by `lamarck merge` (stage outputs in
//! folders), the search (stage outputs in memory) and the tests.
//!
//! Every stage has an identity ([`StageIdentity`]) computed from the plan before anything
//! runs: the stage's document after gene substitution, its name, seed, compat profile,
//! [`KERNEL_VERSION`], and the identity of each input — an upstream stage's key, or a
//! fingerprint of an input folder ([`folder_fingerprint`]). Its sha256 is the stage's key.
//! A stage is reused only when a store holds an output recorded under the same key, so a
//! changed upstream stage changes every downstream key and rebuilds everything after it.
//!
//! [`execute`] walks the planned stages in order; a [`StageStore`] decides where outputs
//! live (a folder per stage, or an in-memory cache) and whether it already holds one.
#![allow(clippy::result_large_err)]
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::run::{Error, Result};
use super::sink::TensorSource;
use crate::model::ModelDir;
use crate::plan::{PlannedStage, RecipePlan, StageInput};
use crate::recipe::Recipe;

/// Part of every stage key: bump it when any kernel's output changes for the same inputs,
/// so outputs of an older lamarck are rebuilt rather than reused.
pub const KERNEL_VERSION: &str = "lamarck-kernels-1";

/// The file in a stage's output folder that records its identity.
pub const STAGE_RECORD: &str = "lamarck-stage.json";

/// What a stage's output is a function of. Two stages with equal keys produce the same bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageIdentity {
    /// sha256 over every other field.
    pub key: String,
    pub stage: String,
    /// sha256 of the stage's YAML document (after gene substitution).
    pub text_sha256: String,
    pub seed: u64,
    pub compat: String,
    pub kernel_version: String,
    /// (reference as written, identity): `stage:<key>` or `folder:<fingerprint>`.
    pub inputs: Vec<(String, String)>,
}

impl StageIdentity {
    pub fn new(
        stage: &str,
        text: &str,
        seed: u64,
        compat: &str,
        inputs: Vec<(String, String)>,
    ) -> StageIdentity {
        let mut id = StageIdentity {
            key: String::new(),
            stage: stage.to_string(),
            text_sha256: hex(&Sha256::digest(text.as_bytes())),
            seed,
            compat: compat.to_string(),
            kernel_version: KERNEL_VERSION.to_string(),
            inputs,
        };
        let mut h = Sha256::new();
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        part(&id.stage);
        part(&id.text_sha256);
        part(&id.seed.to_string());
        part(&id.compat);
        part(&id.kernel_version);
        for (reference, identity) in &id.inputs {
            part(reference);
            part(identity);
        }
        id.key = hex(&h.finalize());
        id
    }

    /// Why an output recorded as `old` is not this stage's (empty when the keys match).
    pub fn differences(&self, old: &StageIdentity) -> Vec<String> {
        if self.key == old.key {
            return Vec::new();
        }
        let mut why = Vec::new();
        if self.text_sha256 != old.text_sha256 || self.stage != old.stage {
            why.push("the stage's recipe text changed".to_string());
        }
        if self.seed != old.seed {
            why.push(format!("seed {} was {}", self.seed, old.seed));
        }
        if self.compat != old.compat {
            why.push(format!("profile {} was {}", self.compat, old.compat));
        }
        if self.kernel_version != old.kernel_version {
            why.push(format!(
                "made by kernels `{}`, now `{}`",
                old.kernel_version, self.kernel_version
            ));
        }
        let old_inputs: BTreeMap<&str, &str> = old
            .inputs
            .iter()
            .map(|(r, i)| (r.as_str(), i.as_str()))
            .collect();
        for (reference, identity) in &self.inputs {
            match old_inputs.get(reference.as_str()) {
                Some(o) if *o == identity => {}
                Some(_) if identity.starts_with("stage:") => {
                    why.push(format!("input `{reference}` (a stage) changed"))
                }
                Some(_) => why.push(format!("input folder `{reference}` changed")),
                None => why.push(format!("input `{reference}` is new")),
            }
        }
        if why.is_empty() {
            why.push("its inputs changed".into());
        }
        why
    }

    /// The record a stage folder holds, if any.
    pub fn read(folder: &Path) -> Option<StageIdentity> {
        let text = std::fs::read_to_string(folder.join(STAGE_RECORD)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// A cheap identity of an input folder: sha256 over `config.json`, the index, every tag-along
/// (tokenizer) file's bytes, and for every safetensors shard its name, size, modification
/// time (ns) and header bytes. Weight data is not read: a 14B model is ~30 GB and hashing it
/// would cost about as much as the merge itself on every run. Any rewrite of a shard changes
/// its mtime (and usually its size and header), so a changed model is noticed; a tool that
/// rewrites a file in place and restores its mtime is not (use `--no-reuse` then).
pub fn folder_fingerprint(dir: &ModelDir) -> Result<String> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    let mut names: Vec<String> = vec!["config.json".into(), "model.safetensors.index.json".into()];
    names.extend(dir.tag_along_files().iter().cloned());
    for name in &names {
        let path = dir.path.join(name);
        if path.is_file() {
            part(name.as_bytes());
            part(&std::fs::read(&path).map_err(io(&path))?);
        }
    }
    for shard in dir.shard_paths() {
        let meta = std::fs::metadata(shard).map_err(io(shard))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        part(
            shard
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_bytes(),
        );
        part(&meta.len().to_le_bytes());
        part(&mtime.to_le_bytes());
        // The header (8-byte length + JSON) was validated when the folder was opened.
        let mut file = std::fs::File::open(shard).map_err(io(shard))?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(io(shard))?;
        let n = u64::from_le_bytes(len).min(meta.len());
        let mut header = Vec::new();
        file.take(n).read_to_end(&mut header).map_err(io(shard))?;
        part(&header);
    }
    Ok(hex(&h.finalize()))
}

/// The identity of every planned stage, in plan order. `fingerprint` gives an input
/// folder's identity (callers may cache it, e.g. [`folder_fingerprint`] once per folder).
pub fn identities(
    recipe: &Recipe,
    planned: &RecipePlan,
    fingerprint: &mut dyn FnMut(&Path, &ModelDir) -> Result<String>,
) -> Result<Vec<StageIdentity>> {
    let mut out: Vec<StageIdentity> = Vec::with_capacity(planned.stages.len());
    for stage in &planned.stages {
        let mut inputs = Vec::with_capacity(stage.inputs.len());
        for (reference, input) in stage.plan.models.iter().zip(&stage.inputs) {
            let identity = match input {
                StageInput::Folder(path) => {
                    let dir = planned.opened.get(path).ok_or_else(|| internal(stage))?;
                    format!("folder:{}", fingerprint(path, dir)?)
                }
                StageInput::Stage(d) => {
                    let pos = planned
                        .stages
                        .iter()
                        .position(|s| s.index == *d)
                        .filter(|&p| p < out.len())
                        .ok_or_else(|| internal(stage))?;
                    format!("stage:{}", out[pos].key)
                }
            };
            inputs.push((reference.clone(), identity));
        }
        out.push(StageIdentity::new(
            &stage.plan.stage,
            &recipe.stages[stage.index].text,
            stage.plan.seed,
            stage.plan.compat.name(),
            inputs,
        ));
    }
    Ok(out)
}

fn internal(stage: &PlannedStage) -> Error {
    Error::Invalid {
        tensor: String::new(),
        message: format!(
            "stage `{}`: an input was not planned or opened before it (internal error)",
            stage.plan.stage
        ),
    }
}

/// One input of a stage being built: an external folder or an earlier stage's output.
pub enum Input<'a, O> {
    Folder(&'a ModelDir),
    Stage(&'a O),
}

impl<O: TensorSource> Input<'_, O> {
    pub fn source(&self) -> &dyn TensorSource {
        match self {
            Input::Folder(d) => *d,
            Input::Stage(o) => *o,
        }
    }
}

/// Where stage outputs live.
pub trait StageStore {
    /// A stage's output, readable by the stages after it.
    type Output: TensorSource;

    /// The output of `stage` recorded under `id.key`, if this store holds a complete one.
    fn reuse(&mut self, stage: &PlannedStage, id: &StageIdentity) -> Result<Option<Self::Output>>;

    /// Merge `stage` from `inputs` (same order as `stage.plan.models`) and keep its output.
    fn build(
        &mut self,
        stage: &PlannedStage,
        id: &StageIdentity,
        inputs: &[Input<'_, Self::Output>],
    ) -> Result<Self::Output>;
}

/// What [`execute`] did.
#[derive(Debug)]
pub struct Executed<O> {
    /// The last (output) stage's output.
    pub output: O,
    pub built: usize,
    pub reused: usize,
}

/// Run every stage of `planned` (dependency order, output stage last) through `store`,
/// reusing what it holds under each stage's key (`ids`, from [`identities`]). Outputs are
/// dropped once no later stage reads them.
pub fn execute<S: StageStore>(
    planned: &RecipePlan,
    ids: &[StageIdentity],
    store: &mut S,
) -> Result<Executed<S::Output>> {
    if ids.len() != planned.stages.len() || planned.stages.is_empty() {
        return Err(Error::Invalid {
            tensor: String::new(),
            message: "no stage to run, or identities do not match the plan (internal error)".into(),
        });
    }
    let last_use: BTreeMap<usize, usize> = planned
        .stages
        .iter()
        .enumerate()
        .flat_map(|(pos, s)| {
            s.inputs.iter().filter_map(move |i| match i {
                StageInput::Stage(d) => Some((*d, pos)),
                StageInput::Folder(_) => None,
            })
        })
        .collect();
    let mut done: BTreeMap<usize, S::Output> = BTreeMap::new();
    let (mut built, mut reused) = (0, 0);
    let mut output = None;
    for (pos, (stage, id)) in planned.stages.iter().zip(ids).enumerate() {
        done.retain(|d, _| last_use.get(d).is_some_and(|&l| l >= pos));
        let out = match store.reuse(stage, id)? {
            Some(out) => {
                reused += 1;
                out
            }
            None => {
                let inputs = stage
                    .inputs
                    .iter()
                    .map(|i| match i {
                        StageInput::Folder(p) => planned.opened.get(p).map(|d| Input::Folder(d)),
                        StageInput::Stage(d) => done.get(d).map(Input::Stage),
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| internal(stage))?;
                built += 1;
                store.build(stage, id, &inputs)?
            }
        };
        if pos + 1 == planned.stages.len() {
            output = Some(out);
        } else {
            done.insert(stage.index, out);
        }
    }
    let output = output.ok_or_else(|| internal(&planned.stages[planned.stages.len() - 1]))?;
    Ok(Executed {
        output,
        built,
        reused,
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str, inputs: &[(&str, &str)]) -> StageIdentity {
        let inputs = inputs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        StageIdentity::new("mid", text, 42, "mergekit", inputs)
    }

    #[test]
    fn the_key_follows_every_part_and_differences_say_which() {
        let a = id("t: 0.5", &[("up", "stage:1"), ("org/b", "folder:9")]);
        assert_eq!(a, id("t: 0.5", &[("up", "stage:1"), ("org/b", "folder:9")]));
        assert!(a.differences(&a.clone()).is_empty());
        let up = id("t: 0.5", &[("up", "stage:2"), ("org/b", "folder:9")]);
        assert_ne!(a.key, up.key);
        assert_eq!(up.differences(&a), ["input `up` (a stage) changed"]);
        let text = id("t: 0.6", &[("up", "stage:1"), ("org/b", "folder:9")]);
        assert_eq!(text.differences(&a), ["the stage's recipe text changed"]);
        let folder = id("t: 0.5", &[("up", "stage:1"), ("org/b", "folder:8")]);
        assert_eq!(folder.differences(&a), ["input folder `org/b` changed"]);
        let mut seed = a.clone();
        seed = StageIdentity::new("mid", "t: 0.5", 7, "mergekit", seed.inputs);
        assert_eq!(seed.differences(&a), ["seed 7 was 42"]);
        let back: StageIdentity = serde_json::from_str(&a.to_json()).unwrap();
        assert_eq!(back, a);
    }
}
