//! `lamarck merge`: recipe → stages in dependency order → plans → model folders.
//!
//! Every stage is planned (and every input opened and validated) before anything is
//! written, so a broken later stage or a corrupt input fails fast and leaves nothing
//! behind. `--dry-run` stops after planning and prints the plans.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::merge::run::{write_folder, FolderFiles, RunOptions};
use crate::merge::Compat;
use crate::model::writer::parse_size;
use crate::model::{resolve_model, Architecture, ModelDir, ModelMap, WriteOptions};
use crate::plan::{self, human_bytes, InputModel, Plan};
use crate::recipe::Recipe;

/// The seed used when neither `--seed` nor the recipe's `seed:` gives one.
pub const DEFAULT_SEED: u64 = 42;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The recipe: a mergekit YAML file, one or several `---`-separated documents.
    pub recipe: PathBuf,
    /// Output model folder (refused if it exists, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// YAML mapping from model reference to local folder.
    #[arg(long)]
    pub model_map: Option<PathBuf>,
    /// Worker threads (default: one per core). The output is identical for any value.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Maximum shard size in bytes; K/M/G suffixes (×1e3, ×1e6, ×1e9).
    #[arg(long, default_value = "5G")]
    pub shard_size: String,
    /// Replace an existing --out folder.
    #[arg(long)]
    pub force: bool,
    /// Print the plan (stages, inputs, tensors, bytes, memory) and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Which stage of a multi-document recipe goes to --out.
    #[arg(long)]
    pub stage: Option<String>,
    /// Where intermediate stage outputs go (default: `<out>.stages` beside --out).
    #[arg(long)]
    pub stages_dir: Option<PathBuf>,
    /// Re-run intermediate stages even when a complete output exists.
    #[arg(long)]
    pub no_reuse: bool,
    /// Seed for the stochastic methods (default: the recipe's `seed:`, else 42).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compatibility profile: `mergekit` (current) or `mergekit-2024` (mergekit <= 0.0.6).
    #[arg(long, value_parser = parse_compat)]
    pub compat: Option<Compat>,
}

fn parse_compat(s: &str) -> Result<Compat, String> {
    Compat::parse(s)
        .ok_or_else(|| format!("unknown profile `{s}`; use `mergekit` or `mergekit-2024`"))
}

/// One stage, planned.
struct Planned {
    index: usize,
    plan: Plan,
    out: PathBuf,
    /// Folder of each `plan.models` entry, and whether it is another stage's output.
    folders: Vec<(PathBuf, Option<usize>)>,
    reuse: bool,
}

pub fn run(args: MergeArgs) -> anyhow::Result<()> {
    let recipe = Recipe::load(&args.recipe, args.compat)?;
    let target = recipe.output_stage(args.stage.as_deref())?;
    let order = recipe.build_order(target)?;
    let map = args.model_map.as_deref().map(ModelMap::load).transpose()?;
    let shard_size = parse_size(&args.shard_size)
        .map_err(|e| anyhow::anyhow!("--shard-size {}: {e}", args.shard_size))?;
    let stages_dir = args.stages_dir.clone().unwrap_or_else(|| {
        let mut s = args.out.clone().into_os_string();
        s.push(".stages");
        PathBuf::from(s)
    });

    // Open every external input once (headers validated), plan every stage in order.
    let mut opened: BTreeMap<PathBuf, ModelDir> = BTreeMap::new();
    let mut planned: Vec<Planned> = Vec::new();
    for &i in &order {
        let stage = &recipe.stages[i];
        let name = recipe.stage_name(i).to_string();
        let out = if i == target {
            args.out.clone()
        } else {
            stages_dir.join(&name)
        };
        let reuse = i != target && !args.no_reuse && reusable(&out, stage, args.seed);
        let seed = args.seed.or(stage.seed).unwrap_or(DEFAULT_SEED);
        let mut inputs = Vec::new();
        let mut folders = Vec::new();
        for reference in stage.model_refs() {
            if let Some(d) = recipe.stage_for_reference(reference) {
                let dep = planned
                    .iter()
                    .find(|p| p.index == d)
                    .context("internal: stage planned out of order")?;
                let donor = &inputs_config(
                    &opened,
                    &dep.folders[dep.plan.config_donor].0,
                    &planned,
                    dep,
                )?;
                inputs.push(InputModel::from_plan(reference, &dep.plan, donor));
                folders.push((dep.out.clone(), Some(d)));
                continue;
            }
            let path = resolve_model(reference, map.as_ref())
                .with_context(|| format!("stage `{name}`: model `{reference}`"))?;
            if !opened.contains_key(&path) {
                let dir = if args.dry_run {
                    ModelDir::open_headers(&path)
                } else {
                    ModelDir::open(&path)
                }
                .with_context(|| format!("stage `{name}`: model `{reference}`"))?;
                opened.insert(path.clone(), dir);
            }
            inputs.push(InputModel::from_dir(reference, &opened[&path]));
            folders.push((path, None));
        }
        let arch = architecture(&inputs, &name)?;
        let plan = plan::build(stage, &name, arch, &inputs, seed)?;
        planned.push(Planned {
            index: i,
            plan,
            out,
            folders,
            reuse,
        });
    }

    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    if args.dry_run {
        print_dry_run(&recipe, &planned, threads, shard_size);
        return Ok(());
    }
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it",
            args.out.display()
        );
    }
    let opts = RunOptions {
        threads: args.threads,
        progress: true,
    };
    for p in &planned {
        let stage = &recipe.stages[p.index];
        eprintln!(
            "stage `{}` ({}): seed {}, compat {}",
            p.plan.stage,
            p.plan.method.name,
            p.plan.seed,
            p.plan.compat.name()
        );
        if p.reuse {
            eprintln!(
                "  reusing complete output {} (--no-reuse to rebuild)",
                p.out.display()
            );
            continue;
        }
        for (path, dep) in &p.folders {
            if dep.is_some() && !opened.contains_key(path) {
                let dir = ModelDir::open(path)
                    .with_context(|| format!("opening stage output {}", path.display()))?;
                opened.insert(path.clone(), dir);
            }
        }
        let models: Vec<&ModelDir> = p.folders.iter().map(|(path, _)| &opened[path]).collect();
        let hub_ids = p
            .plan
            .models
            .iter()
            .zip(&p.folders)
            .filter(|(r, (_, dep))| dep.is_none() && looks_like_hub_id(r))
            .map(|(r, _)| r.split('@').next().unwrap_or(r).to_string())
            .collect();
        let files = FolderFiles {
            plan: &p.plan,
            models: &models,
            recipe_text: &stage.text,
            hub_ids,
        };
        let force = args.force || p.index != planned.last().map_or(usize::MAX, |l| l.index);
        let write = WriteOptions { shard_size, force };
        let (path, stats) = write_folder(&files, &p.out, write, &opts)
            .with_context(|| format!("stage `{}`", p.plan.stage))?;
        eprintln!(
            "  wrote {} ({} tensors, {}, {:.1}s)",
            path.display(),
            stats.tensors,
            human_bytes(stats.bytes_written),
            stats.seconds
        );
    }
    Ok(())
}

/// The config of a planned dependency's donor (a stage output's config derives from it).
fn inputs_config(
    opened: &BTreeMap<PathBuf, ModelDir>,
    path: &Path,
    planned: &[Planned],
    dep: &Planned,
) -> anyhow::Result<crate::model::HfConfig> {
    if let Some(dir) = opened.get(path) {
        return Ok(dir.config.clone());
    }
    // The donor is itself a stage output: follow it.
    let (_, inner) = &dep.folders[dep.plan.config_donor];
    let inner = inner
        .and_then(|d| planned.iter().find(|p| p.index == d))
        .context("internal: unplanned donor stage")?;
    inputs_config(
        opened,
        &inner.folders[inner.plan.config_donor].0,
        planned,
        inner,
    )
}

/// Every input must share one architecture.
fn architecture(inputs: &[InputModel], stage: &str) -> anyhow::Result<&'static Architecture> {
    let mut found: Option<(&'static Architecture, &str)> = None;
    for m in inputs {
        let arch = Architecture::for_config(&m.config)
            .with_context(|| format!("stage `{stage}`: model `{}`", m.reference))?;
        match found {
            Some((a, first)) if a.name != arch.name => {
                bail!("stage `{stage}`: models `{first}` ({}) and `{}` ({}) have different architectures", a.name, m.reference, arch.name)
            }
            None => found = Some((arch, &m.reference)),
            _ => {}
        }
    }
    found.map(|(a, _)| a).context("stage has no models")
}

/// A complete earlier output of the same stage text (and seed) can be reused.
fn reusable(out: &Path, stage: &crate::recipe::Stage, seed: Option<u64>) -> bool {
    let complete = out.join("config.json").is_file()
        && (out.join("model.safetensors").is_file()
            || out.join("model.safetensors.index.json").is_file());
    if !complete {
        return false;
    }
    let same_recipe =
        std::fs::read_to_string(out.join("mergekit_config.yml")).is_ok_and(|t| t == stage.text);
    let seed = seed.or(stage.seed).unwrap_or(DEFAULT_SEED);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap_or_default();
    let same_run = card.contains(&format!("- Seed: {seed}\n"))
        && card.contains(&format!("profile: `{}`", stage.compat.name()));
    if !(same_recipe && same_run) {
        tracing::warn!(
            "{} holds an output of a different recipe, seed or profile; rebuilding it",
            out.display()
        );
    }
    same_recipe && same_run
}

fn looks_like_hub_id(reference: &str) -> bool {
    let id = reference.split('@').next().unwrap_or(reference);
    let mut parts = id.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none() && !Path::new(id).exists()
}

fn print_dry_run(recipe: &Recipe, planned: &[Planned], threads: usize, shard_size: u64) {
    println!(
        "dry run of {}: {} stage(s), nothing written",
        recipe.file.display(),
        planned.len()
    );
    for (n, p) in planned.iter().enumerate() {
        let plan = &p.plan;
        println!();
        println!(
            "stage {} of {}: `{}` ({}), seed {}, compat {}",
            n + 1,
            planned.len(),
            plan.stage,
            plan.method.name,
            plan.seed,
            plan.compat.name()
        );
        println!(
            "  output: {}{}",
            p.out.display(),
            if p.reuse {
                " (complete; will be reused)"
            } else {
                ""
            }
        );
        println!("  inputs:");
        for (r, (path, dep)) in plan.models.iter().zip(&p.folders) {
            match dep {
                Some(d) => println!("    {r} -> output of stage `{}`", recipe.stage_name(*d)),
                None => println!("    {r} -> {}", path.display()),
            }
        }
        let layers = match plan.num_hidden_layers {
            Some(n) => format!("{n} layers"),
            None => "layer count kept from the donor".to_string(),
        };
        println!("  output tensors: {} ({layers})", plan.tensors.len());
        println!(
            "  read: {}, write: {}",
            human_bytes(plan.bytes_read()),
            human_bytes(plan.bytes_written())
        );
        println!(
            "  estimated peak memory: {} ({threads} threads, shard buffer {}; memory-mapped inputs not counted)",
            human_bytes(plan.peak_memory(threads, shard_size)),
            human_bytes(shard_size)
        );
    }
}
