//! `lamarck merge`: recipe → stages in dependency order → plans → model folders.
//!
//! Every stage is planned (and every input opened and validated) before anything is
//! written, so a broken later stage or a corrupt input fails fast and leaves nothing
//! behind. `--dry-run` stops after planning and prints the plans.
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::merge::run::{estimate_memory, write_folder, FolderFiles, RunOptions};
use crate::merge::Compat;
use crate::model::writer::parse_size;
use crate::model::{ModelDir, ModelMap, WriteOptions};
use crate::plan::{human_bytes, plan_recipe, PlannedStage, RecipeOptions, StageInput};
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
    /// Memory budget for merged tensors in flight, temporaries and the writer's queue
    /// (K/M/G suffixes ×1e3/×1e6/×1e9). Large tensors are merged in blocks sized to it; the
    /// output does not depend on it. The default fits a 14B merge on a 16 GB machine.
    #[arg(long, default_value = "6G")]
    pub max_memory: String,
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

pub fn run(args: MergeArgs) -> anyhow::Result<()> {
    let recipe = Recipe::load(&args.recipe, args.compat)?;
    let target = recipe.output_stage(args.stage.as_deref())?;
    let map = args.model_map.as_deref().map(ModelMap::load).transpose()?;
    let shard_size = parse_size(&args.shard_size)
        .map_err(|e| anyhow::anyhow!("--shard-size {}: {e}", args.shard_size))?;
    let max_memory = parse_size(&args.max_memory)
        .map_err(|e| anyhow::anyhow!("--max-memory {}: {e}", args.max_memory))?;
    if max_memory < 64_000_000 {
        bail!(
            "--max-memory {}: too small; give at least 64M (e.g. --max-memory 1G)",
            args.max_memory
        );
    }
    let stages_dir = args.stages_dir.clone().unwrap_or_else(|| {
        let mut s = args.out.clone().into_os_string();
        s.push(".stages");
        PathBuf::from(s)
    });
    let opts = RecipeOptions {
        map: map.as_ref(),
        headers_only: args.dry_run,
        seed: args.seed,
        default_seed: DEFAULT_SEED,
    };
    // Every stage is planned and every input validated before anything is written.
    let mut planned = plan_recipe(&recipe, target, &opts)?;
    let out_of = |i: usize| {
        if i == target {
            args.out.clone()
        } else {
            stages_dir.join(recipe.stage_name(i))
        }
    };
    let reuse: Vec<bool> = planned
        .stages
        .iter()
        .map(|p| {
            p.index != target
                && !args.no_reuse
                && reusable(&out_of(p.index), &recipe.stages[p.index], args.seed)
        })
        .collect();
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };
    if args.dry_run {
        let run_opts = RunOptions {
            threads,
            max_memory,
            ..RunOptions::default()
        };
        print_dry_run(&recipe, &planned.stages, &out_of, &reuse, &run_opts);
        return Ok(());
    }
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it",
            args.out.display()
        );
    }
    let run_opts = RunOptions {
        threads: args.threads,
        progress: true,
        max_memory,
        ..RunOptions::default()
    };
    for (n, p) in planned.stages.iter().enumerate() {
        let out = out_of(p.index);
        let plan = &p.plan;
        eprintln!(
            "stage `{}` ({}): seed {}, compat {}",
            plan.stage,
            plan.method.name,
            plan.seed,
            plan.compat.name()
        );
        if reuse[n] {
            eprintln!(
                "  reusing complete output {} (--no-reuse to rebuild)",
                out.display()
            );
            continue;
        }
        // Stage outputs this stage reads were written by earlier iterations: open them now.
        for input in &p.inputs {
            if let StageInput::Stage(d) = input {
                let path = out_of(*d);
                if let Entry::Vacant(slot) = planned.opened.entry(path) {
                    let dir = ModelDir::open(slot.key()).with_context(|| {
                        format!("opening the output of stage `{}`", recipe.stage_name(*d))
                    })?;
                    slot.insert(dir);
                }
            }
        }
        let paths: Vec<PathBuf> = p
            .inputs
            .iter()
            .map(|i| match i {
                StageInput::Folder(path) => path.clone(),
                StageInput::Stage(d) => out_of(*d),
            })
            .collect();
        let models: Vec<&ModelDir> = paths.iter().map(|path| &planned.opened[path]).collect();
        let hub_ids = plan
            .models
            .iter()
            .zip(&p.inputs)
            .filter(|(r, input)| matches!(input, StageInput::Folder(_)) && looks_like_hub_id(r))
            .map(|(r, _)| r.split('@').next().unwrap_or(r).to_string())
            .collect();
        let files = FolderFiles {
            plan,
            models: &models,
            recipe_text: &recipe.stages[p.index].text,
            hub_ids,
        };
        // Intermediate stage folders are ours to replace; --out needs --force.
        let write = WriteOptions {
            shard_size,
            force: args.force || p.index != target,
        };
        let (path, stats) = write_folder(&files, &out, write, &run_opts)
            .with_context(|| format!("stage `{}`", plan.stage))?;
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

fn print_dry_run(
    recipe: &Recipe,
    planned: &[PlannedStage],
    out_of: &dyn Fn(usize) -> PathBuf,
    reuse: &[bool],
    opts: &RunOptions,
) {
    let threads = opts.threads;
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
        let reused = if reuse[n] {
            " (complete; will be reused)"
        } else {
            ""
        };
        println!("  output: {}{reused}", out_of(p.index).display());
        println!("  inputs:");
        for (r, input) in plan.models.iter().zip(&p.inputs) {
            match input {
                StageInput::Stage(d) => {
                    println!("    {r} -> output of stage `{}`", recipe.stage_name(*d))
                }
                StageInput::Folder(path) => println!("    {r} -> {}", path.display()),
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
        let peak = estimate_memory(plan, opts, threads);
        println!(
            "  estimated peak memory: {} ({threads} threads, --max-memory {}; inputs are read in blocks)",
            human_bytes(peak),
            human_bytes(opts.max_memory)
        );
    }
}
