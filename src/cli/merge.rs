//! `lamarck merge`: recipe → stages in dependency order → plans → model folders.
//!
//! Every stage is planned (and every input opened and every parameter value validated)
//! before anything is written, so a broken later stage, a bad value or a corrupt input
//! fails fast and leaves nothing behind. `--dry-run` stops after planning and prints the
//! plans, which stages would be reused and why. Stages run through the one executor
//! (`merge::exec`); `--out` and the stages folder are locked while a merge writes them.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;

use crate::merge::exec::{
    execute, folder_fingerprint, identities, Input, StageIdentity, StageStore, STAGE_RECORD,
};
use crate::merge::lock::{lock_path_beside, remove_temp_folders, temp_folders, DirLock};
use crate::merge::run::{estimate_memory, write_folder, FolderFiles, RunOptions};
use crate::model::writer::parse_size;
use crate::model::{ModelDir, ModelMap, WriteOptions};
use crate::plan::{human_bytes, plan_recipe, PlannedStage, RecipeOptions, StageInput};
use crate::recipe::Recipe;
use crate::registry::Compat;

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

// the closure returns the merge module's (large, cold) error type
#[allow(clippy::result_large_err)]
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
        opened: None,
    };
    // Every stage is planned, every parameter value checked and every input validated
    // before anything is written.
    let planned = plan_recipe(&recipe, target, &opts)?;
    let ids = identities(&recipe, &planned, &mut |_, dir| folder_fingerprint(dir))?;
    let out_of = |i: usize| {
        if i == target {
            args.out.clone()
        } else {
            stages_dir.join(recipe.stage_name(i))
        }
    };
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
        let reuse: Vec<Result<(), String>> = planned
            .stages
            .iter()
            .zip(&ids)
            .map(|(p, id)| reuse_decision(&out_of(p.index), id, p.index == target, args.no_reuse))
            .collect();
        print_dry_run(&recipe, &planned.stages, &ids, &out_of, &reuse, &run_opts);
        let folders: Vec<PathBuf> = planned.stages.iter().map(|p| out_of(p.index)).collect();
        print_temp_folders(&folders);
        return Ok(());
    }
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it",
            args.out.display()
        );
    }
    // Lock --out (and the stages folder), then clear what crashed runs left there.
    let mut locks = Vec::new();
    let mut locked = vec![args.out.clone()];
    if planned.stages.len() > 1 {
        locked.push(stages_dir.clone());
    }
    for path in &locked {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let what = format!("lamarck merge {}", args.recipe.display());
        locks.push(DirLock::acquire(path, &lock_path_beside(path), &what)?);
    }
    for p in &planned.stages {
        for gone in remove_temp_folders(&out_of(p.index))? {
            eprintln!(
                "removed {}, left by a merge that did not finish",
                gone.display()
            );
        }
    }
    let mut store = DiskStore {
        recipe: &recipe,
        target,
        out_of: &out_of,
        no_reuse: args.no_reuse,
        write: WriteOptions {
            shard_size,
            force: args.force,
        },
        run_opts: RunOptions {
            threads: args.threads,
            progress: true,
            max_memory,
            ..RunOptions::default()
        },
    };
    execute(&planned, &ids, &mut store)?;
    drop(locks);
    Ok(())
}

/// Stage outputs in folders: `--out` for the output stage, `<stages-dir>/<name>` for the
/// others, each recording its identity ([`STAGE_RECORD`]) for the next run.
struct DiskStore<'a> {
    recipe: &'a Recipe,
    target: usize,
    out_of: &'a dyn Fn(usize) -> PathBuf,
    no_reuse: bool,
    write: WriteOptions,
    run_opts: RunOptions,
}

impl StageStore for DiskStore<'_> {
    type Output = ModelDir;

    fn reuse(
        &mut self,
        stage: &PlannedStage,
        id: &StageIdentity,
    ) -> crate::merge::run::Result<Option<ModelDir>> {
        let plan = &stage.plan;
        eprintln!(
            "stage `{}` ({}): seed {}, compat {}",
            plan.stage,
            plan.method.name,
            plan.seed,
            plan.compat.name()
        );
        let out = (self.out_of)(stage.index);
        match reuse_decision(&out, id, stage.index == self.target, self.no_reuse) {
            Ok(()) => {
                eprintln!(
                    "  reusing complete output {} (stage hash {}; --no-reuse to rebuild)",
                    out.display(),
                    &id.key[..12]
                );
                Ok(Some(ModelDir::open(&out)?))
            }
            Err(why) => {
                if stage.index != self.target && out.exists() {
                    eprintln!("  rebuilding {}: {why}", out.display());
                }
                Ok(None)
            }
        }
    }

    fn build(
        &mut self,
        stage: &PlannedStage,
        id: &StageIdentity,
        inputs: &[Input<'_, ModelDir>],
    ) -> crate::merge::run::Result<ModelDir> {
        let plan = &stage.plan;
        let out = (self.out_of)(stage.index);
        let models: Vec<&ModelDir> = inputs
            .iter()
            .map(|i| match i {
                Input::Folder(d) => *d,
                Input::Stage(d) => *d,
            })
            .collect();
        let hub_ids = plan
            .models
            .iter()
            .zip(&stage.inputs)
            .filter(|(r, input)| matches!(input, StageInput::Folder(_)) && looks_like_hub_id(r))
            .map(|(r, _)| r.split('@').next().unwrap_or(r).to_string())
            .collect();
        let is_target = stage.index == self.target;
        let files = FolderFiles {
            plan,
            models: &models,
            recipe_text: &self.recipe.stages[stage.index].text,
            hub_ids,
            record: (!is_target).then_some(id),
        };
        // Intermediate stage folders are ours to replace; --out needs --force.
        let write = WriteOptions {
            force: self.write.force || !is_target,
            ..self.write
        };
        let (path, stats) = write_folder(&files, &out, write, &self.run_opts)?;
        eprintln!(
            "  wrote {} ({} tensors, {}, {:.1}s)",
            path.display(),
            stats.tensors,
            human_bytes(stats.bytes_written),
            stats.seconds
        );
        // Later stages read it; the output stage's folder is not read again.
        Ok(match is_target {
            true => ModelDir::open_headers(&path)?,
            false => ModelDir::open(&path)?,
        })
    }
}

/// Whether the folder `out` holds this stage's output: complete, and recorded under the
/// same stage hash. `Err` says why not.
fn reuse_decision(
    out: &Path,
    id: &StageIdentity,
    is_target: bool,
    no_reuse: bool,
) -> Result<(), String> {
    if is_target {
        return Err("the output stage is always written".into());
    }
    if no_reuse {
        return Err("--no-reuse".into());
    }
    let complete = out.join("config.json").is_file()
        && (out.join("model.safetensors").is_file()
            || out.join("model.safetensors.index.json").is_file());
    if !complete {
        return Err(format!("no complete output at {}", out.display()));
    }
    let Some(old) = StageIdentity::read(out) else {
        return Err(format!(
            "{} has no {STAGE_RECORD} (made by an older lamarck or by hand)",
            out.display()
        ));
    };
    let why = id.differences(&old);
    match why.is_empty() {
        true => Ok(()),
        false => Err(why.join("; ")),
    }
}

/// `--dry-run`: temporary folders that crashed merges left beside the outputs (removed by
/// the next real run), or that a running merge is writing.
fn print_temp_folders(folders: &[PathBuf]) {
    for folder in folders {
        let temps = temp_folders(folder);
        if temps.is_empty() {
            continue;
        }
        let lock = lock_path_beside(folder);
        let holder = DirLock::held_by(&lock);
        for t in temps {
            match holder {
                Some(pid) => println!(
                    "temporary folder {} is being written by {}",
                    t.display(),
                    pid.map_or("another process".into(), |p| format!("process {p}"))
                ),
                None => println!(
                    "stale temporary folder {} (a merge that did not finish); the next merge removes it",
                    t.display()
                ),
            }
        }
    }
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
    ids: &[StageIdentity],
    out_of: &dyn Fn(usize) -> PathBuf,
    reuse: &[Result<(), String>],
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
        println!("  output: {}", out_of(p.index).display());
        println!("  stage hash: {}", ids[n].key);
        match &reuse[n] {
            Ok(()) => println!("  reuse: yes (complete, recorded under the same stage hash)"),
            Err(why) => println!("  reuse: no, will be built ({why})"),
        }
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
