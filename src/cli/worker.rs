//! `lamarck worker --run results/<run>`: claim candidates from the run's queue, merge and
//! score them, hand the results back; the coordinator (`lamarck evolve --workers N`)
//! records them.
use std::path::PathBuf;

use clap::Args;

use crate::model::writer::parse_size;
use crate::search::worker::{work, WorkerOptions};

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The run folder (results/<run>) of a running `lamarck evolve --workers N`.
    #[arg(long)]
    pub run: PathBuf,
    /// This worker's name, unique in the run (default: host and process id).
    #[arg(long)]
    pub name: Option<String>,
    /// Merge threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Memory for cached stage outputs (K/M/G suffixes ×1e3/1e6/1e9).
    #[arg(long, default_value = "2G")]
    pub cache_mem: String,
    /// Evaluation device (overrides the search file's `eval.device`), e.g. `cuda:1`.
    #[arg(long)]
    pub device: Option<String>,
    /// Exit when the coordinator has not beaten for this many seconds.
    #[arg(long, default_value_t = 30)]
    pub stale: u64,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let cache_mem = parse_size(&args.cache_mem)
        .map_err(|e| anyhow::anyhow!("--cache-mem {}: {e}", args.cache_mem))?;
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().replace(['.', '/'], "_"))
            .unwrap_or_else(|_| "host".into());
        format!("{host}_{}", std::process::id())
    });
    let opts = WorkerOptions {
        name,
        threads: args.threads,
        cache_mem,
        device: args.device,
        stale: std::time::Duration::from_secs(args.stale.max(1)),
    };
    let done = work(&args.run, &opts)?;
    eprintln!("worker {}: {done} task(s) done", opts.name);
    Ok(())
}
