//! `lamarck evolve --dry-run`: validate the genes against the recipe, plan every stage
//! from headers only (works on header-only stand-ins of 14B models), and print the search
//! space and what one candidate costs.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::genes::Genome;
use super::materialize::{architecture, output_config, DEFAULT_SEED};
use super::spec::{OptimizerKind, RecipeSource, SearchSpec};
use super::Result;
use crate::eval::task::{data, TaskSpec};
use crate::model::{resolve_model, HfConfig, ModelDir, ModelMap};
use crate::plan::{self, human_bytes, InputModel, Plan};

/// The dry-run report.
pub fn dry_run(spec: &SearchSpec, genome: &Genome) -> Result<String> {
    let mut out = String::new();
    let (_, recipe) = genome.recipe(&genome.start, spec.compat, false)?;
    let target = recipe.output_stage(None)?;
    let order = recipe.build_order(target)?;
    let _ = writeln!(
        out,
        "dry run of {}: nothing merged, nothing written",
        spec.file.display()
    );
    let _ = writeln!(
        out,
        "recipe: {} ({} stage(s), output `{}`)",
        match &spec.recipe_source {
            RecipeSource::File(p) => p.display().to_string(),
            RecipeSource::Inline => "inline".into(),
        },
        recipe.stages.len(),
        recipe.stage_name(target)
    );
    let _ = writeln!(out, "\nsearch space: {} gene(s)", genome.len());
    for (g, s) in spec.genes.iter().zip(&genome.start) {
        let _ = writeln!(
            out,
            "  {:<28} stage `{}`  [{}, {}]  start {s}",
            g.name, g.stage, g.range.0, g.range.1
        );
        for p in &g.at {
            let _ = writeln!(out, "  {:<28}   at {p}", "");
        }
    }
    let opt = match spec.optimizer {
        OptimizerKind::Cmaes { sigma } => format!("CMA-ES (sigma {sigma} of each range)"),
        OptimizerKind::Random => "random search".into(),
    };
    let _ = writeln!(
        out,
        "optimizer: {opt}, population {}, seed {}",
        spec.population, spec.seed
    );
    let _ = writeln!(
        out,
        "budget: {} candidate(s), {}",
        spec.budget
            .candidates
            .map_or("unlimited".into(), |n| n.to_string()),
        spec.budget
            .minutes
            .map_or("no time limit".into(), |m| format!(
                "{m} minute(s) per invocation"
            ))
    );
    let _ = writeln!(out, "\nobjectives (fitness = Σ weight × score):");
    let mut items_total = Some(0usize);
    for o in &spec.objectives {
        let items = TaskSpec::from_file(&o.task).and_then(|t| {
            let split = t.eval_split(o.split.as_deref())?;
            data::load_split(&t, &split).map(|d| (split, d.len()))
        });
        let what = match items {
            Ok((split, n)) => {
                let n = o.limit.map_or(n, |l| l.min(n));
                items_total = items_total.map(|t| t + n);
                format!("split `{split}`, {n} item(s)")
            }
            Err(e) => {
                items_total = None;
                format!("NOT READY: {e}")
            }
        };
        let _ = writeln!(
            out,
            "  {:<16} weight {:<6} {} — {what}",
            o.name,
            o.weight,
            o.task.display()
        );
    }

    let map = spec.model_map.as_deref().map(ModelMap::load).transpose()?;
    let mut opened: BTreeMap<std::path::PathBuf, ModelDir> = BTreeMap::new();
    let mut planned: BTreeMap<usize, (Plan, HfConfig)> = BTreeMap::new();
    let (mut read, mut written, mut params) = (0u64, 0u64, 0u64);
    let _ = writeln!(out, "\nstages (planned from headers):");
    for &i in &order {
        let stage = &recipe.stages[i];
        let name = recipe.stage_name(i).to_string();
        let mut inputs = Vec::new();
        for r in stage.model_refs() {
            if let Some((p, cfg)) = recipe.stage_for_reference(r).and_then(|d| planned.get(&d)) {
                inputs.push(InputModel::from_plan(r, p, cfg));
                continue;
            }
            let path = resolve_model(r, map.as_ref())?;
            if !opened.contains_key(&path) {
                opened.insert(path.clone(), ModelDir::open_headers(&path)?);
            }
            inputs.push(InputModel::from_dir(r, &opened[&path]));
        }
        let seed = spec.merge_seed.or(stage.seed).unwrap_or(DEFAULT_SEED);
        let plan = plan::build(stage, &name, architecture(&inputs, &name)?, &inputs, seed)?;
        let genes: Vec<&str> = spec
            .genes
            .iter()
            .filter(|g| g.stage == name)
            .map(|g| g.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  `{name}` ({}): {} tensors, read {}, write {}; genes: {}",
            plan.method.name,
            plan.tensors.len(),
            human_bytes(plan.bytes_read()),
            human_bytes(plan.bytes_written()),
            if genes.is_empty() {
                "none".into()
            } else {
                genes.join(", ")
            }
        );
        read += plan.bytes_read();
        written += plan.bytes_written();
        if i == target {
            params = plan.tensors.iter().map(|t| t.numel() as u64).sum();
        }
        let cfg = output_config(&plan, &inputs);
        planned.insert(i, (plan, cfg));
    }
    let _ = writeln!(out, "\nper candidate (every stage re-merged; a stage whose genes and inputs are unchanged comes from the --cache-mem stage cache):");
    let _ = writeln!(
        out,
        "  merge: read {}, write {} (in memory, as f32: {})",
        human_bytes(read),
        human_bytes(written),
        human_bytes(written_f32(&planned))
    );
    let _ = writeln!(
        out,
        "  evaluate: a {}-parameter model on {} item(s)",
        if params >= 1_000_000_000 {
            format!("{:.2} B", params as f64 / 1e9)
        } else {
            format!("{:.2} M", params as f64 / 1e6)
        },
        items_total.map_or("? (a task is not ready)".into(), |n| n.to_string())
    );
    Ok(out)
}

fn written_f32(planned: &BTreeMap<usize, (Plan, HfConfig)>) -> u64 {
    planned
        .values()
        .flat_map(|(p, _)| p.tensors.iter())
        .map(|t| t.numel() as u64 * 4)
        .sum()
}
