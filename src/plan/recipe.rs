//! Planning a whole recipe: resolve every model reference of every needed stage (another
//! stage's output, or a folder found through the model map / local path / HF cache), open
//! and validate each external folder once, and plan the stages in dependency order.
//!
//! Nothing is written, so a broken later stage or a corrupt input is reported before any
//! stage runs. `lamarck merge` and the search's in-memory materialization both start here.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::error::{Error, Result};
use super::{build, InputModel, Plan};
use crate::model::{resolve_model, Architecture, HfConfig, ModelDir, ModelMap};
use crate::recipe::Recipe;

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct RecipeOptions<'a> {
    pub map: Option<&'a ModelMap>,
    /// Open folders header-only (`--dry-run`: data may be absent; nothing can be read).
    pub headers_only: bool,
    /// `--seed`; beats each stage's `seed:`; `default_seed` applies when neither is given.
    pub seed: Option<u64>,
    pub default_seed: u64,
    /// Folders opened earlier (the search plans every candidate): used instead of opening
    /// them again.
    pub opened: Option<&'a BTreeMap<PathBuf, Arc<ModelDir>>>,
}

/// Where one model of a planned stage comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageInput {
    /// An external folder (a key of [`RecipePlan::opened`]).
    Folder(PathBuf),
    /// The output of another stage (its index in `Recipe::stages`).
    Stage(usize),
}

/// One planned stage.
#[derive(Debug)]
pub struct PlannedStage {
    /// Index in `Recipe::stages`.
    pub index: usize,
    pub plan: Plan,
    /// Source of each `plan.models` entry, same order.
    pub inputs: Vec<StageInput>,
    /// The `config.json` this stage writes.
    pub output_config: HfConfig,
}

/// Every stage needed for one output, in dependency order (the output stage last).
#[derive(Debug)]
pub struct RecipePlan {
    pub stages: Vec<PlannedStage>,
    /// Every external folder, opened (validated) once.
    pub opened: BTreeMap<PathBuf, Arc<ModelDir>>,
}

impl RecipePlan {
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.index == index)
    }
}

/// Plan the stages needed to build stage `target` of `recipe`.
pub fn plan_recipe(recipe: &Recipe, target: usize, opts: &RecipeOptions) -> Result<RecipePlan> {
    let order = recipe.build_order(target)?;
    let mut out = RecipePlan {
        stages: Vec::new(),
        opened: BTreeMap::new(),
    };
    for i in order {
        let stage = &recipe.stages[i];
        let name = recipe.stage_name(i).to_string();
        let mut models = Vec::new();
        let mut inputs = Vec::new();
        for reference in stage.model_refs() {
            if let Some(d) = recipe.stage_for_reference(reference) {
                let dep = out.stage(d).ok_or_else(|| Error::Invalid {
                    stage: name.clone(),
                    message: format!(
                        "stage `{}` was not planned before it (internal error)",
                        recipe.stage_name(d)
                    ),
                })?;
                models.push(InputModel::from_plan(
                    reference,
                    &dep.plan,
                    &dep.output_config,
                ));
                inputs.push(StageInput::Stage(d));
                continue;
            }
            let model_err = |source| Error::ModelRef {
                stage: name.clone(),
                reference: reference.to_string(),
                source,
            };
            let path = resolve_model(reference, opts.map).map_err(model_err)?;
            if !out.opened.contains_key(&path) {
                let dir = match opts.opened.and_then(|o| o.get(&path)) {
                    Some(dir) => dir.clone(),
                    None if opts.headers_only => {
                        Arc::new(ModelDir::open_headers(&path).map_err(model_err)?)
                    }
                    None => Arc::new(ModelDir::open(&path).map_err(model_err)?),
                };
                out.opened.insert(path.clone(), dir);
            }
            models.push(InputModel::from_dir(reference, &out.opened[&path]));
            inputs.push(StageInput::Folder(path));
        }
        let arch = architecture(&models, &name)?;
        let seed = opts.seed.or(stage.seed).unwrap_or(opts.default_seed);
        let plan = build(stage, &name, arch, &models, seed)?;
        let mut output_config = models[plan.config_donor].config.clone();
        plan.update_config(&mut output_config);
        out.stages.push(PlannedStage {
            index: i,
            plan,
            inputs,
            output_config,
        });
    }
    Ok(out)
}

/// Every input must share one architecture.
fn architecture(models: &[InputModel], stage: &str) -> Result<&'static Architecture> {
    let mut found: Option<(&'static Architecture, &str)> = None;
    for m in models {
        let arch = Architecture::for_config(&m.config).map_err(|source| Error::ModelRef {
            stage: stage.to_string(),
            reference: m.reference.clone(),
            source,
        })?;
        match found {
            Some((a, first)) if a.name != arch.name => {
                return Err(Error::Invalid {
                    stage: stage.to_string(),
                    message: format!(
                        "models `{first}` ({}) and `{}` ({}) have different architectures",
                        a.name, m.reference, arch.name
                    ),
                })
            }
            None => found = Some((arch, &m.reference)),
            _ => {}
        }
    }
    found.map(|(a, _)| a).ok_or_else(|| Error::Invalid {
        stage: stage.to_string(),
        message: "the stage has no models".into(),
    })
}
