//! `lamarck evolve SEARCH.yaml`: run a search (or `--resume results/<run>`), or check it
//! with `--dry-run`.
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::model::writer::parse_size;
use crate::search::dry_run::{dry_run_with, DryRunOptions};
use crate::search::genes::Genome;
use crate::search::run::{evolve, EvolveOptions, Session};
use crate::search::SearchSpec;

#[derive(Args, Debug)]
pub struct EvolveArgs {
    /// The search file (searches/*.yaml). Not needed with --resume.
    #[arg(required_unless_present = "resume")]
    pub search: Option<PathBuf>,
    /// Run folder (default: results/<search file name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in this folder (after an interruption or with a larger budget).
    #[arg(long, conflicts_with_all = ["out", "model_map"])]
    pub resume: Option<PathBuf>,
    /// Validate the genes against the recipe, plan every stage from headers, print the
    /// search space and the per-candidate cost; merge and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Memory for cached stage outputs (K/M/G suffixes ×1e3/1e6/1e9).
    #[arg(long, default_value = "2G")]
    pub cache_mem: String,
    /// Folder for stage outputs beyond --cache-mem, as `<stage hash>.safetensors`
    /// (default: `<run>/stage-cache/`; a resumed run re-uses it).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Disk for the stage cache folder (K/M/G suffixes; 0: no disk cache, stages beyond
    /// --cache-mem are merged again when asked).
    #[arg(long, default_value = "100G")]
    pub cache_disk: String,
    /// Merge threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Override the search file's candidate budget (the starting point counts).
    #[arg(long)]
    pub candidates: Option<u64>,
    /// Override the search file's time budget, in minutes.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// YAML mapping from model reference to local folder (overrides the search file's
    /// `model_map`; remembered by the run).
    #[arg(long)]
    pub model_map: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Score candidates in N worker processes (the search file's `executor:`: local
    /// processes, or Slurm jobs), with no generation barrier. 0: in this process.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// The workers' evaluation device (overrides `eval.device`); `cuda` gives worker i `cuda:i`.
    #[arg(long)]
    pub device: Option<String>,
    /// Seconds without a heartbeat after which a worker's claim goes back to the queue.
    #[arg(long, default_value_t = 30)]
    pub stale: u64,
}

pub fn run(args: EvolveArgs) -> anyhow::Result<()> {
    let cache_mem = parse_size(&args.cache_mem)
        .map_err(|e| anyhow::anyhow!("--cache-mem {}: {e}", args.cache_mem))?;
    if args.dry_run {
        let file = args
            .search
            .as_deref()
            .context("--dry-run needs the search file")?;
        let mut spec = SearchSpec::load(file)?;
        if let Some(m) = &args.model_map {
            spec.model_map = Some(m.clone());
        }
        let genome = Genome::new(&spec.genes, &spec.recipe_text)?;
        let opts = DryRunOptions {
            cache_mem,
            cache_disk: parse_size(&args.cache_disk)
                .map_err(|e| anyhow::anyhow!("--cache-disk {}: {e}", args.cache_disk))?,
            threads: args.threads,
            measure: true,
        };
        print!("{}", dry_run_with(&spec, &genome, &opts)?);
        return Ok(());
    }
    let session = match (&args.resume, &args.search) {
        (Some(dir), _) => {
            Session::open(dir).with_context(|| format!("resuming {}", dir.display()))?
        }
        (None, Some(file)) => {
            let out = args.out.clone().unwrap_or_else(|| {
                let stem = file
                    .file_stem()
                    .map_or("run".into(), |s| s.to_string_lossy().into_owned());
                PathBuf::from("results").join(stem)
            });
            Session::create(file, &out, args.model_map.as_deref())?
        }
        (None, None) => anyhow::bail!("give a search file or --resume results/<run>"),
    };
    eprintln!(
        "evolve: {} gene(s), {} objective(s), population {}; records in {}",
        session.genome.len(),
        session.spec.objectives.len(),
        session.spec.population,
        session.dir.root.display()
    );
    let cache_disk = parse_size(&args.cache_disk)
        .map_err(|e| anyhow::anyhow!("--cache-disk {}: {e}", args.cache_disk))?;
    let opts = EvolveOptions {
        cache_mem,
        cache_dir: args.cache_dir.clone(),
        cache_disk,
        threads: args.threads,
        progress: !args.quiet,
        candidates: args.candidates,
        minutes: args.minutes,
        workers: args.workers,
        device: args.device.clone(),
        stale: std::time::Duration::from_secs(args.stale.max(1)),
    };
    if args.device.is_some() && args.workers == 0 {
        anyhow::bail!("--device is for the workers; give --workers N too (or set `eval.device` in the search file)");
    }
    let summary = evolve(&session, &opts)?;
    eprintln!(
        "evolve: stopped: {}; {} candidate(s) recorded ({} new, {} stopped early by racing, {} failed to merge: failed.csv)",
        summary.stopped, summary.candidates, summary.new, summary.raced, summary.failed
    );
    eprintln!(
        "evolve: {}; this invocation: the model ran on {} items, the response cache answered {}",
        crate::search::report::spent_line(&summary.spent, summary.raced),
        summary.model_items,
        summary.cache_hits
    );
    for w in crate::search::coordinator::worker_times(&session.dir.root)? {
        eprintln!(
            "evolve: worker {}: {} task(s), busy {:.1} s, idle between tasks {:.1} s",
            w.worker, w.tasks, w.busy_s, w.idle_s
        );
    }
    if let (Some(best), Some(start)) = (&summary.best, &summary.start) {
        println!(
            "best #{}: fitness {:.4} (starting recipe {:.4}); `lamarck export {} --best` writes its recipe",
            best.id,
            best.fitness,
            start.fitness,
            session.dir.root.display()
        );
    }
    Ok(())
}
