//! Where the workers of `lamarck evolve --workers N` run: local processes ([`local`]) or
//! Slurm jobs ([`slurm`], `executor: {kind: slurm, ...}` in the search file). An executor
//! starts a worker in a slot, reports the workers that ended (the coordinator gives their
//! claims back to the queue and starts the slot again), and stops them all.
use std::path::PathBuf;

use super::queue::Queue;
use super::run::{EvolveOptions, Session};
use super::{Error, Result};

pub mod local;
pub mod slurm;

/// `executor:` in the search file.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ExecutorSpec {
    #[default]
    Local,
    Slurm(SlurmSpec),
}

/// `executor: {kind: slurm, partition, account, gres, time, max_jobs, sbatch_extra}`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSpec {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// `--gres`, e.g. `gpu:1`.
    pub gres: Option<String>,
    /// `--time`, e.g. `4:00:00`.
    pub time: Option<String>,
    /// At most this many worker jobs at once.
    pub max_jobs: usize,
    /// More sbatch options, one per entry (`--qos=low`).
    pub sbatch_extra: Vec<String>,
}

/// A worker that ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub slot: usize,
    pub name: String,
    /// How (exit status, job state).
    pub how: String,
}

pub trait Executor {
    /// How many workers run at once.
    fn slots(&self) -> usize;
    /// Start (or start again) the worker of `slot`.
    fn start(&mut self, slot: usize) -> Result<()>;
    /// Workers that ended since the last call.
    fn poll(&mut self) -> Result<Vec<Ended>>;
    /// The names of the current workers, by slot.
    fn names(&self) -> Vec<String>;
    /// Stop every worker (the coordinator leaves).
    fn stop(&mut self);
}

/// The worker command line, after the program: `worker --run DIR --name NAME ...`.
pub struct WorkerCommand {
    pub exe: PathBuf,
    pub run: PathBuf,
    pub cache_mem: u64,
    pub stale_s: u64,
}

impl WorkerCommand {
    pub fn args(&self, name: &str, threads: usize, device: Option<&str>) -> Vec<String> {
        let mut a = vec![
            "worker".to_string(),
            "--run".into(),
            self.run.display().to_string(),
            "--name".into(),
            name.to_string(),
            "--cache-mem".into(),
            self.cache_mem.to_string(),
            "--stale".into(),
            self.stale_s.to_string(),
        ];
        if threads > 0 {
            a.extend(["--threads".into(), threads.to_string()]);
        }
        if let Some(d) = device {
            a.extend(["--device".into(), d.to_string()]);
        }
        a
    }
}

/// The executor of the session's search file, for `opts.workers` workers.
pub fn start<'a>(
    session: &'a Session,
    opts: &EvolveOptions,
    queue: &Queue,
) -> Result<Box<dyn Executor + 'a>> {
    let exe = std::env::current_exe().map_err(|e| Error::io("the lamarck executable", e))?;
    let run =
        std::path::absolute(&session.dir.root).map_err(|e| Error::io(&session.dir.root, e))?;
    let logs = queue.root.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let cmd = WorkerCommand {
        exe,
        run,
        cache_mem: opts.cache_mem,
        stale_s: opts.stale.as_secs().max(1),
    };
    Ok(match &session.spec.executor {
        ExecutorSpec::Local => Box::new(local::Local::new(cmd, opts, logs)),
        ExecutorSpec::Slurm(spec) => Box::new(slurm::Slurm::new(cmd, opts, spec.clone(), logs)?),
    })
}
