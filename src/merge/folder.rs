//! A stage's output folder: the merged weights through [`DirSink`], then `config.json`,
//! the donor's tokenizer files, `mergekit_config.yml` and the model card, all under the
//! writer's temporary name until complete.
#![allow(clippy::result_large_err)]
use std::path::{Path, PathBuf};

use super::run::{run, writer_queue_bytes, Error, Result, RunOptions, RunStats};
use super::sink::{DirSink, TensorSource};
use crate::model::vocab::strip_tokenizer_files;
use crate::model::{Announced, ModelDir, ModelWriter, WriteOptions};
use crate::plan::Plan;

/// The files of a model folder that are not weights: config, tokenizer, recipe, card.
pub struct FolderFiles<'a> {
    pub plan: &'a Plan,
    /// Configs/folders of `plan.models`, same order.
    pub models: &'a [&'a ModelDir],
    /// This stage's recipe text (written as `mergekit_config.yml` and into the card).
    pub recipe_text: &'a str,
    /// References that are Hugging Face ids (for the card's `base_model:` list).
    pub hub_ids: Vec<String>,
    /// The stage's identity, recorded in the folder so a rerun can tell whether to reuse it
    /// (intermediate stages; `None` for the final output).
    pub record: Option<&'a super::exec::StageIdentity>,
}

/// Merge `plan` into the folder `out` (refused if it exists unless `opts.force`). Inputs
/// must already be open (validated); the folder appears only when complete.
pub fn write_folder(
    files: &FolderFiles,
    out: &Path,
    write: WriteOptions,
    opts: &RunOptions,
) -> Result<(PathBuf, RunStats)> {
    let mut writer = ModelWriter::create(out, write)?;
    // The plan knows every output tensor: stream them to disk as they are merged (a
    // bounded background writer) instead of holding a whole shard in memory.
    writer.expect_tensors(&announced(files.plan))?;
    writer.set_queue_bytes(writer_queue_bytes(opts.max_memory));
    let sources: Vec<&dyn TensorSource> = files
        .models
        .iter()
        .map(|m| *m as &dyn TensorSource)
        .collect();
    let mut sink = DirSink { writer };
    let stats = run(files.plan, &sources, &mut sink, opts)?;
    let writer = sink.writer;
    let dir = writer.temp_path().to_path_buf();
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    let plan = files.plan;

    let mut config = files.models[plan.config_donor].config.clone();
    plan.update_config(&mut config);
    config.write(&dir.join("config.json"))?;

    // tokenizer, chat template and generation config travel from the tokenizer donor
    let donor = files.models[plan.tokenizer_donor];
    for name in donor.tag_along_files() {
        let from = donor.path.join(name);
        std::fs::copy(&from, dir.join(name)).map_err(io(from.clone()))?;
    }
    // `tokenizer_source: base` whose tokenizer has ids beyond the base's vocab_size
    if let Some(n) = plan.vocab.as_ref().and_then(|v| v.strip_at) {
        strip_tokenizer_files(&dir, n).map_err(|source| Error::Vocab {
            tensor: "tokenizer.json".into(),
            source,
        })?;
    }
    std::fs::write(dir.join("mergekit_config.yml"), files.recipe_text)
        .map_err(io(dir.join("mergekit_config.yml")))?;
    std::fs::write(dir.join("README.md"), model_card(files, out))
        .map_err(io(dir.join("README.md")))?;
    if let Some(record) = files.record {
        let path = dir.join(super::exec::STAGE_RECORD);
        std::fs::write(&path, record.to_json()).map_err(io(path.clone()))?;
    }
    let path = writer.finish()?;
    Ok((path, stats))
}

/// The README.md model card: front matter (base models, tags), method, models, recipe.
pub fn model_card(files: &FolderFiles, out: &Path) -> String {
    let plan = files.plan;
    let title = out
        .file_name()
        .map_or_else(|| plan.stage.clone(), |n| n.to_string_lossy().into_owned());
    let mut s = String::from("---\n");
    if !files.hub_ids.is_empty() {
        s.push_str("base_model:\n");
        for id in &files.hub_ids {
            s.push_str(&format!("- {id}\n"));
        }
    }
    s.push_str("library_name: transformers\ntags:\n- merge\n- lamarck\n---\n");
    s.push_str(&format!("# {title}\n\nThis is a merge of pre-trained language models created with lamarck {}, which runs mergekit recipes with its own kernels.\n\n", env!("CARGO_PKG_VERSION")));
    s.push_str("## Merge details\n\n");
    let method = plan.method;
    let base = plan
        .tensors
        .iter()
        .find_map(|t| t.base.as_ref())
        .map(|b| plan.models[b.model].clone());
    s.push_str(&format!(
        "- Method: [{}]({})",
        method.pretty_name, method.paper
    ));
    if let Some(b) = &base {
        s.push_str(&format!(", using `{b}` as a base"));
    }
    s.push_str(&format!(
        "\n- Stage: `{}`\n- Seed: {}\n- Compatibility profile: `{}`\n\n### Models merged\n\n",
        plan.stage,
        plan.seed,
        plan.compat.name()
    ));
    let mut used: Vec<usize> = plan
        .tensors
        .iter()
        .flat_map(|t| t.inputs().map(|i| i.model))
        .collect();
    used.sort_unstable();
    used.dedup();
    for m in used {
        s.push_str(&format!("- `{}`\n", plan.models[m]));
    }
    s.push_str("\n### Recipe\n\n```yaml\n");
    s.push_str(files.recipe_text.trim_end());
    s.push_str("\n```\n");
    s
}

/// Every output tensor of `plan`, in plan order, as a streaming writer is told to expect.
pub fn announced(plan: &Plan) -> Vec<Announced> {
    plan.tensors
        .iter()
        .map(|t| Announced {
            name: t.name.clone(),
            dtype: t.out_dtype,
            shape: t.shape.clone(),
        })
        .collect()
}
