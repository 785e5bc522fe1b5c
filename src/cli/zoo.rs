//! `lamarck zoo build`: train the zoo of tiny models. Scoring it is `lamarck merge` +
//! `lamarck eval` (`zoo/table.sh`).
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use lamarck_zoo::{BuildOptions, ZooRecipe};

use crate::zoo as lamarck_zoo;

#[derive(Args, Debug)]
pub struct ZooArgs {
    #[command(subcommand)]
    pub command: ZooCommand,
}

#[derive(Subcommand, Debug)]
pub enum ZooCommand {
    /// Train the zoo (tokenizer, base, generalist, one specialist per skill) from a seed.
    Build(BuildArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Output folder (one sub-folder per model).
    #[arg(long, default_value = "zoo")]
    pub out: PathBuf,
    /// Also write the evaluation tasks (YAML + dev/test jsonl) here.
    #[arg(long)]
    pub evals: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Multiply every phase's steps (1.0 = the shipped zoo; 0.01 builds in seconds).
    #[arg(long, default_value_t = 1.0)]
    pub steps_scale: f64,
    /// Train this recipe (JSON, as the build writes to `<out>/recipe.json`) instead of the
    /// shipped one; `--seed` and `--steps-scale` are then ignored.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Replace existing model folders.
    #[arg(long)]
    pub force: bool,
    /// Specialists trained at the same time, one thread each.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// Development shortcut: keep the base and generalist already in `--out` when they were
    /// built from the same seed, shape and trunk phases, and train only the specialists.
    #[arg(long, hide = true)]
    pub reuse_trunk: bool,
}

pub fn run(args: ZooArgs) -> anyhow::Result<()> {
    // One thread per training run: faster at this size and keeps the bytes reproducible.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    match args.command {
        ZooCommand::Build(a) => run_build(a),
    }
}

fn run_build(a: BuildArgs) -> anyhow::Result<()> {
    if !(a.steps_scale > 0.0 && a.steps_scale.is_finite()) {
        anyhow::bail!(
            "--steps-scale must be a positive number, got {}",
            a.steps_scale
        );
    }
    let recipe = match &a.recipe {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<ZooRecipe>(&text)
                .with_context(|| format!("{}: not a zoo recipe", path.display()))?
        }
        None => ZooRecipe::standard(a.seed, a.steps_scale),
    };
    let opts = BuildOptions {
        out: a.out,
        evals: a.evals,
        force: a.force,
        show_progress: true,
        parallel: a.parallel,
        reuse_trunk: a.reuse_trunk,
    };
    let report = lamarck_zoo::build(&recipe, &opts).context("building the zoo")?;
    for (name, path, loss) in &report.models {
        println!("{name:<22} final loss {loss:.4}  {}", path.display());
    }
    println!("built in {:.1} s", report.seconds);
    Ok(())
}
