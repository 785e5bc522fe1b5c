//! `lamarck zoo`: build the zoo of tiny trained models, or score it with the zoo's own
//! greedy decoder (a development check; `lamarck eval` is the real evaluator).
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use lamarck_zoo::build::specialist_name;
use lamarck_zoo::score::{
    linear_merge, load_folder, read_items, task_arithmetic, ties_merge, Greedy,
};
use lamarck_zoo::{BuildOptions, Skill, ZooRecipe};

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
    /// Greedy exact-match table of every zoo model and three simple merges on a split.
    Score(ScoreArgs),
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

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[arg(long, default_value = "zoo")]
    pub zoo: PathBuf,
    /// Folder with `<skill>/<split>.jsonl`.
    #[arg(long, default_value = "evals/zoo")]
    pub tasks: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// TIES density for the TIES merge of the specialists.
    #[arg(long, default_value_t = 0.5)]
    pub ties_density: f64,
    /// Weight of each specialist's task vector in the task-arithmetic merge.
    #[arg(long, default_value_t = 0.5)]
    pub ta_weight: f64,
}

pub fn run(args: ZooArgs) -> anyhow::Result<()> {
    // One thread per training run: faster at this size and keeps the bytes reproducible.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    match args.command {
        ZooCommand::Build(a) => run_build(a),
        ZooCommand::Score(a) => run_score(a),
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

fn run_score(a: ScoreArgs) -> anyhow::Result<()> {
    let tok_path = a.zoo.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tok_path.display()))?;
    let mut names = vec!["base".to_string(), "generalist".to_string()];
    names.extend(Skill::ALL.iter().map(|s| specialist_name(*s)));
    let mut models = Vec::new();
    for name in &names {
        let dir = a.zoo.join(name);
        let loaded = load_folder(&dir).with_context(|| format!("loading {}", dir.display()))?;
        models.push((name.clone(), loaded));
    }
    let config = models[0].1 .0.clone();
    let specialists: Vec<_> = models[2..].iter().map(|(_, (_, t))| t).collect();
    let linear = linear_merge(&specialists)?;
    let ties = ties_merge(&models[1].1 .1, &specialists, a.ties_density)?;
    let mut rows = models
        .iter()
        .map(|(n, (_, t))| (n.clone(), t.clone()))
        .collect::<Vec<_>>();
    rows.push(("linear(specialists)".into(), linear));
    rows.push((
        format!("ties(specialists, density {})", a.ties_density),
        ties,
    ));
    let ta = task_arithmetic(&models[1].1 .1, &specialists, a.ta_weight)?;
    rows.push((
        format!("task_arithmetic(specialists, weight {})", a.ta_weight),
        ta,
    ));

    let mut tasks = Vec::new();
    for skill in Skill::ALL {
        let path = a
            .tasks
            .join(skill.name())
            .join(format!("{}.jsonl", a.split));
        tasks.push((skill, read_items(&path)?));
    }
    print!("| model |");
    for (skill, _) in &tasks {
        print!(" {} |", skill.name());
    }
    println!(" mean |\n|---|{}---|", "---|".repeat(tasks.len()));
    for (name, tensors) in rows {
        let mut greedy = Greedy::new(&config, &tensors, tokenizer.clone())?;
        let mut accs = Vec::new();
        for (skill, items) in &tasks {
            accs.push(greedy.accuracy(items, skill.max_answer_chars() + 2)?);
        }
        let mean = accs.iter().sum::<f64>() / accs.len() as f64;
        let cells: Vec<String> = accs.iter().map(|x| format!("{:.1}", 100.0 * x)).collect();
        println!("| {name} | {} | {:.1} |", cells.join(" | "), 100.0 * mean);
    }
    Ok(())
}
