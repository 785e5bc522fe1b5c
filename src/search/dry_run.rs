//! `lamarck evolve --dry-run`: validate the genes against the recipe, plan every stage
//! from headers only (works on header-only stand-ins of 14B models), and print the search
//! space and what one candidate costs.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::genes::Genome;
use super::materialize::{architecture, output_config, DEFAULT_SEED};
use super::spec::{OptimizerKind, RecipeSource, SearchSpec};
use super::Result;
use crate::eval::task::{data, TaskSpec};
use crate::merge::run::{run, MemorySink, RunOptions, TensorSource};
use crate::model::{resolve_model, HfConfig, ModelDir, ModelMap};
use crate::plan::{self, human_bytes, InputModel, Plan};

/// Settings `--dry-run` reports against (the command line's).
#[derive(Debug, Clone)]
pub struct DryRunOptions {
    pub cache_mem: u64,
    /// 0: no disk cache.
    pub cache_disk: u64,
    pub threads: usize,
    /// Time a sample of each stage's kernels (a few MB each).
    pub measure: bool,
}

impl Default for DryRunOptions {
    fn default() -> DryRunOptions {
        DryRunOptions {
            cache_mem: 2_000_000_000,
            cache_disk: 100_000_000_000,
            threads: 0,
            measure: true,
        }
    }
}

/// The dry-run report with default settings.
pub fn dry_run(spec: &SearchSpec, genome: &Genome) -> Result<String> {
    dry_run_with(spec, genome, &DryRunOptions::default())
}

/// The dry-run report.
pub fn dry_run_with(spec: &SearchSpec, genome: &Genome, o: &DryRunOptions) -> Result<String> {
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
    // genes each stage depends on: its own and its inputs' (transitively)
    let mut feeds: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut costs: Vec<StageCost> = Vec::new();
    let (mut read, mut written, mut params) = (0u64, 0u64, 0u64);
    let _ = writeln!(out, "\nstages (planned from headers):");
    for &i in &order {
        let stage = &recipe.stages[i];
        let name = recipe.stage_name(i).to_string();
        let mut inputs = Vec::new();
        let mut closure: BTreeSet<String> = spec
            .genes
            .iter()
            .filter(|g| g.stage == name)
            .map(|g| g.name.clone())
            .collect();
        for r in stage.model_refs() {
            if let Some(d) = recipe.stage_for_reference(r) {
                closure.extend(feeds.get(&d).into_iter().flatten().cloned());
            }
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
        let sample = if o.measure {
            sample_seconds(&plan, o.threads)
        } else {
            None
        };
        let _ = writeln!(
            out,
            "      depends on {} gene(s){}; kernels {}",
            closure.len(),
            if closure.is_empty() {
                ": merged once, then from the stage cache".to_string()
            } else {
                format!(
                    " (own {}, upstream {}): merged again by every candidate that moves any of them",
                    genes.len(),
                    closure.len() - genes.len()
                )
            },
            match sample {
                Some((secs, bytes)) => format!(
                    "~{:.1} s (sampled {} in {:.3} s, scaled by bytes read)",
                    secs * plan.bytes_read() as f64 / bytes.max(1) as f64,
                    human_bytes(bytes),
                    secs
                ),
                None => "not sampled".into(),
            }
        );
        costs.push(StageCost {
            rebuilt: !closure.is_empty(),
            read: plan.bytes_read(),
            written: plan.bytes_written(),
            seconds: sample
                .map(|(secs, bytes)| secs * plan.bytes_read() as f64 / bytes.max(1) as f64),
        });
        feeds.insert(i, closure);
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
        "  merge: read {}, write {} (held in each stage's output dtype)",
        human_bytes(read),
        human_bytes(written),
    );
    let rebuilt: Vec<&StageCost> = costs.iter().filter(|c| c.rebuilt).collect();
    let new_bytes: u64 = rebuilt.iter().map(|c| c.written).sum();
    let once: u64 = costs.iter().filter(|c| !c.rebuilt).map(|c| c.written).sum();
    let _ = writeln!(
        out,
        "  a typical candidate (CMA-ES moves every gene): {} of {} stage(s) merged, read {}, write {}",
        rebuilt.len(),
        costs.len(),
        human_bytes(rebuilt.iter().map(|c| c.read).sum()),
        human_bytes(new_bytes)
    );
    let secs: Option<f64> = rebuilt.iter().map(|c| c.seconds).sum();
    let _ = writeln!(
        out,
        "  merge seconds per candidate: {} (kernels on {} thread(s) of this machine, inputs in the page cache; cold reads from disk add their I/O)",
        secs.map_or("not measured".into(), |s| format!("~{s:.1} s")),
        if o.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { o.threads }
    );
    let n = spec.budget.candidates.unwrap_or(200);
    let total = once + new_bytes * n;
    let ram = total.min(o.cache_mem);
    let disk = if o.cache_disk == 0 {
        0
    } else {
        (total - ram).min(o.cache_disk)
    };
    let largest = costs.iter().map(|c| c.written).max().unwrap_or(0);
    // A stage larger than --cache-mem that fits the disk cache is streamed to its file as
    // it is merged (never whole in memory): only the writer's queue is in flight for it.
    let streamed =
        |c: &&StageCost| o.cache_disk > 0 && c.written > o.cache_mem && c.written <= o.cache_disk;
    let queue = crate::merge::run::writer_queue_bytes(crate::merge::run::DEFAULT_MAX_MEMORY);
    let in_flight: u64 = costs
        .iter()
        .map(|c| {
            if streamed(&c) {
                c.written.min(queue)
            } else {
                c.written
            }
        })
        .sum();
    let n_streamed = costs.iter().filter(streamed).count();
    let _ = writeln!(
        out,
        "  stage cache over {n} candidate(s): {} of stage outputs; peak RAM ≤ {} (--cache-mem {}) + up to {} in flight while a candidate merges ({n_streamed} stage(s) larger than --cache-mem streamed to disk as merged); peak disk ≤ {} (--cache-disk {})",
        human_bytes(total),
        human_bytes(ram),
        human_bytes(o.cache_mem),
        human_bytes(in_flight),
        human_bytes(disk),
        if o.cache_disk == 0 { "0: no disk cache".to_string() } else { human_bytes(o.cache_disk) }
    );
    if o.cache_disk > 0 && largest > o.cache_disk {
        let _ = writeln!(
            out,
            "  warning: the largest stage output ({}) exceeds --cache-disk; it is never cached",
            human_bytes(largest)
        );
    }
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

/// One stage's share of a candidate's cost.
struct StageCost {
    /// Some gene feeds it (so a moving candidate merges it again).
    rebuilt: bool,
    read: u64,
    written: u64,
    seconds: Option<f64>,
}

/// Deterministic stand-in values for a sampled input (model `model`), the same whatever
/// the range asked: a base value plus a model-specific perturbation.
struct Synthetic {
    model: u64,
}

impl TensorSource for Synthetic {
    fn read_f32(&self, _name: &str) -> std::result::Result<Vec<f32>, crate::model::Error> {
        Ok(Vec::new())
    }
    fn read_f32_range(
        &self,
        _name: &str,
        range: std::ops::Range<usize>,
    ) -> std::result::Result<Vec<f32>, crate::model::Error> {
        Ok(range
            .map(|i| {
                let h = crate::model::splitmix::mix64(i as u64 ^ (self.model << 48));
                let u = (h >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                0.02 * u + 0.002 * (self.model as f32) * u.abs()
            })
            .collect())
    }
}

/// Time the stage's kernels on a sample: up to three of its 2-D layer tensors, each cut to
/// about 1M elements (whole rows, so row-wise work such as DELLA's ranking is as in the
/// real tensor), synthetic input values. Returns (seconds, bytes of input read) of the
/// faster of two runs, or None when the stage has no such tensor.
fn sample_seconds(plan: &Plan, threads: usize) -> Option<(f64, u64)> {
    const ELEMENTS: usize = 1 << 20;
    let mut sample = plan.clone();
    sample.vocab = None;
    let mut picked = Vec::new();
    for t in plan
        .tensors
        .iter()
        .filter(|t| !t.is_embed && t.shape.len() == 2)
    {
        if picked.len() == 3 {
            break;
        }
        if picked
            .iter()
            .any(|p: &crate::plan::TensorPlan| p.shape[1] == t.shape[1])
        {
            continue;
        }
        let cols = t.shape[1].max(1);
        let rows = (ELEMENTS / cols).clamp(1, t.shape[0]);
        let mut t = t.clone();
        t.shape = vec![rows, cols];
        if let Some(b) = &mut t.base {
            b.shape = vec![rows, cols];
        }
        for m in &mut t.models {
            m.input.shape = vec![rows, cols];
        }
        picked.push(t);
    }
    if picked.is_empty() {
        return None;
    }
    sample.tensors = picked;
    let bytes = sample.bytes_read();
    let sources: Vec<Synthetic> = (0..plan.models.len() as u64)
        .map(|model| Synthetic { model })
        .collect();
    let refs: Vec<&dyn TensorSource> = sources.iter().map(|s| s as &dyn TensorSource).collect();
    let opts = RunOptions {
        threads,
        progress: false,
        ..RunOptions::default()
    };
    let mut best: Option<f64> = None;
    for _ in 0..2 {
        let mut sink = MemorySink::default();
        let started = std::time::Instant::now();
        let ok =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                run(&sample, &refs, &mut sink, &opts)
            });
        if ok.is_err() {
            return None;
        }
        let t = started.elapsed().as_secs_f64();
        best = Some(best.map_or(t, |b: f64| b.min(t)));
    }
    best.map(|b| (b, bytes))
}
