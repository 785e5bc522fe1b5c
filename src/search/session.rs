//! A search bound to its run folder: the search file, the run's records, the optimizer's
//! saved state and the frontier files.
use std::path::Path;

use super::cmaes::Cmaes;
use super::frontier::pareto;
use super::genes::Genome;
use super::optimizer::Optimizer;
use super::random::RandomSearch;
use super::records::{self, CandidateRow, RunDir, RunInfo};
use super::spec::{OptimizerKind, SearchSpec};
use super::{Error, Result};
use crate::model::ModelMap;
use crate::recipe::Recipe;

/// A search bound to its run folder.
pub struct Session {
    pub spec: SearchSpec,
    pub genome: Genome,
    pub dir: RunDir,
    pub info: RunInfo,
}

impl Session {
    /// Start a new run in `out` (which must not exist or be empty).
    pub fn create(search_file: &Path, out: &Path, model_map: Option<&Path>) -> Result<Session> {
        let text = std::fs::read_to_string(search_file).map_err(|e| Error::io(search_file, e))?;
        let abs = std::path::absolute(search_file).map_err(|e| Error::io(search_file, e))?;
        let model_map = model_map
            .map(|m| std::path::absolute(m).map_err(|e| Error::io(m, e)))
            .transpose()?;
        let mut spec = SearchSpec::parse(&text, &abs)?;
        if model_map.is_some() {
            spec.model_map = model_map.clone();
        }
        let genome = Genome::new(&spec.genes, &spec.recipe_text)?;
        // Validate the starting recipe loudly once (recipe warnings show here).
        let (_, recipe) = genome.recipe(&genome.start, spec.compat, false)?;
        recipe.build_order(recipe.output_stage(None)?)?;
        if out.exists()
            && std::fs::read_dir(out)
                .map_err(|e| Error::io(out, e))?
                .next()
                .is_some()
        {
            return Err(Error::Records {
                path: out.to_path_buf(),
                message: "already exists; continue it with `lamarck evolve --resume` or pick another --out".into(),
            });
        }
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let info = RunInfo {
            lamarck_version: env!("CARGO_PKG_VERSION").to_string(),
            search_file: abs,
            working_dir: std::env::current_dir().map_err(|e| Error::io(".", e))?,
            search: text,
            recipe: spec.recipe_text.clone(),
            model_map,
        };
        let dir = RunDir {
            root: out.to_path_buf(),
        };
        let yaml = serde_yaml_ng::to_string(&info).map_err(|e| Error::Invalid(e.to_string()))?;
        records::write_atomic(&dir.run_yaml(), &yaml)?;
        Ok(Session {
            spec,
            genome,
            dir,
            info,
        })
    }

    /// Open an existing run from its `run.yaml`.
    pub fn open(out: &Path) -> Result<Session> {
        let dir = RunDir {
            root: out.to_path_buf(),
        };
        let info = dir.read_info()?;
        let spec =
            SearchSpec::parse_with_recipe(&info.search, &info.search_file, Some(&info.recipe))?;
        let genome = Genome::new(&spec.genes, &spec.recipe_text)?;
        if let Ok(cwd) = std::env::current_dir() {
            if cwd != info.working_dir {
                tracing::warn!(
                    "this run was started in {}; model references are resolved from {} now",
                    info.working_dir.display(),
                    cwd.display()
                );
            }
        }
        Ok(Session {
            spec,
            genome,
            dir,
            info,
        })
    }

    pub fn gene_names(&self) -> Vec<String> {
        self.spec.genes.iter().map(|g| g.name.clone()).collect()
    }
    pub fn objective_names(&self) -> Vec<String> {
        self.spec
            .objectives
            .iter()
            .map(|o| o.name.clone())
            .collect()
    }
    pub fn weights(&self) -> Vec<f64> {
        self.spec.objectives.iter().map(|o| o.weight).collect()
    }

    pub fn model_map(&self) -> Result<Option<ModelMap>> {
        Ok(self
            .spec
            .model_map
            .as_deref()
            .map(ModelMap::load)
            .transpose()?)
    }

    /// The recipe a candidate means.
    pub fn recipe(&self, genes: &[f64]) -> Result<Recipe> {
        Ok(self.genome.recipe(genes, self.spec.compat, true)?.1)
    }

    /// External models the recipe reads (its parents), in build order, without duplicates.
    pub fn parents(&self) -> Result<Vec<String>> {
        let recipe = self.recipe(&self.genome.start)?;
        let order = recipe.build_order(recipe.output_stage(None)?)?;
        let mut out: Vec<String> = Vec::new();
        for i in order {
            for r in recipe.stages[i].model_refs() {
                if recipe.stage_for_reference(r).is_none() && !out.iter().any(|o| o == r) {
                    out.push(r.to_string());
                }
            }
        }
        Ok(out)
    }

    pub(super) fn new_optimizer(&self) -> Optimizer {
        let n = self.genome.len();
        match self.spec.optimizer {
            OptimizerKind::Cmaes { sigma } => Optimizer::Cmaes(Cmaes::new(
                self.genome.to_unit(&self.genome.start),
                sigma,
                self.spec.population,
                self.spec.seed,
            )),
            OptimizerKind::Random => {
                Optimizer::Random(RandomSearch::new(n, self.spec.population, self.spec.seed))
            }
        }
    }

    pub(super) fn load_optimizer(&self) -> Result<Optimizer> {
        let (opt, extra) = self.load_state()?;
        if extra.is_some() {
            return Err(Error::Records {
                path: self.dir.state(),
                message: "this run was started with workers (no generation barrier); continue it with `lamarck evolve --resume DIR --workers N`".into(),
            });
        }
        Ok(opt)
    }

    /// The optimizer of `state.json` and its asynchronous part, when the run has workers.
    pub(super) fn load_state(&self) -> Result<(Optimizer, Option<serde_json::Value>)> {
        let p = self.dir.state();
        if !p.exists() {
            return Ok((self.new_optimizer(), None));
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let bad = |message: String| Error::Records {
            path: p.clone(),
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let opt = v
            .get("optimizer")
            .ok_or_else(|| bad("no `optimizer`".into()))?;
        let opt = Optimizer::from_json(opt).map_err(bad)?;
        Ok((opt, v.get("async").cloned()))
    }

    pub(super) fn save_optimizer(&self, opt: &Optimizer) -> Result<()> {
        self.save_state(opt, None)
    }

    /// Write `state.json` (atomically); `extra`: the asynchronous loop's part.
    pub(super) fn save_state(
        &self,
        opt: &Optimizer,
        extra: Option<serde_json::Value>,
    ) -> Result<()> {
        let mut v = serde_json::json!({
            "genes": self.gene_names(),
            "generation": opt.generation(),
            "optimizer": opt.to_json(),
        });
        if let (Some(extra), Some(o)) = (extra, v.as_object_mut()) {
            o.insert("async".into(), extra);
        }
        records::write_atomic(
            &self.dir.state(),
            &(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"),
        )
    }

    /// Rewrite `frontier.csv` from `rows`.
    pub fn write_frontier(&self, rows: &[CandidateRow]) -> Result<()> {
        let mut text = records::candidate_header(&self.gene_names(), &self.objective_names());
        text.push('\n');
        for i in pareto(rows, &self.weights()) {
            text.push_str(&rows[i].to_line());
            text.push('\n');
        }
        records::write_atomic(&self.dir.frontier(), &text)
    }
}
