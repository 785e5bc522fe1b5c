//! Workers as Slurm jobs: one `sbatch` job per worker slot (at most `max_jobs`), watched
//! with `squeue` (and `sacct` for how a job ended, where accounting is configured); a job
//! that ends while the run goes on (preempted, failed, cancelled, out of time) is submitted
//! again and its claim goes back to the queue; every job is `scancel`ed when the
//! coordinator leaves. The coordinator may run on a login node or inside an allocation;
//! the run folder must be on a file system the compute nodes share.
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Ended, Executor, SlurmSpec, WorkerCommand};
use crate::search::run::EvolveOptions;
use crate::search::{Error, Result};

pub struct Slurm {
    cmd: WorkerCommand,
    spec: SlurmSpec,
    /// (worker name, job id) by slot.
    jobs: Vec<Option<(String, String)>>,
    starts: Vec<usize>,
    threads: usize,
    device: Option<String>,
    logs: PathBuf,
    cwd: PathBuf,
    last_poll: Option<Instant>,
}

/// Run a Slurm command; its stdout, or an error naming it and its stderr.
fn slurm(program: &str, args: &[String]) -> Result<String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        Error::Invalid(format!(
            "`{program}` could not run ({e}); the Slurm executor needs Slurm's commands on PATH \
             (try it locally with `tools/slurm/local-cluster.sh up`)"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// States of a job that still holds or waits for its allocation.
const LIVE: &[&str] = &[
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
];

impl Slurm {
    pub fn new(
        cmd: WorkerCommand,
        opts: &EvolveOptions,
        spec: SlurmSpec,
        logs: PathBuf,
    ) -> Result<Slurm> {
        let n = if opts.workers > 0 {
            opts.workers.min(spec.max_jobs)
        } else {
            spec.max_jobs
        };
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        Ok(Slurm {
            cmd,
            spec,
            jobs: vec![None; n],
            starts: vec![0; n],
            threads: opts.threads,
            device: opts.device.clone(),
            logs,
            cwd,
            last_poll: None,
        })
    }

    /// The batch script of one worker.
    pub fn script(&self, name: &str) -> String {
        let mut s = String::from("#!/bin/sh\n");
        let mut opt = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                s.push_str(&format!("#SBATCH --{k}={v}\n"));
            }
        };
        opt("partition", &self.spec.partition);
        opt("account", &self.spec.account);
        opt("gres", &self.spec.gres);
        opt("time", &self.spec.time);
        for extra in &self.spec.sbatch_extra {
            s.push_str(&format!("#SBATCH {extra}\n"));
        }
        let args: Vec<String> = self
            .cmd
            .args(name, self.threads, self.device.as_deref())
            .iter()
            .map(|a| shell_quote(a))
            .collect();
        s.push_str(&format!(
            "exec {} {}\n",
            shell_quote(&self.cmd.exe.display().to_string()),
            args.join(" ")
        ));
        s
    }
}

fn shell_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Executor for Slurm {
    fn slots(&self) -> usize {
        self.jobs.len()
    }

    fn start(&mut self, slot: usize) -> Result<()> {
        let name = format!("s{slot}-{}", self.starts[slot]);
        self.starts[slot] += 1;
        let script = self.logs.join(format!("{name}.sh"));
        std::fs::write(&script, self.script(&name)).map_err(|e| Error::io(&script, e))?;
        let out = slurm(
            "sbatch",
            &[
                "--parsable".into(),
                format!("--job-name=lamarck-{name}"),
                format!(
                    "--output={}",
                    self.logs.join(format!("{name}-%j.log")).display()
                ),
                format!("--chdir={}", self.cwd.display()),
                script.display().to_string(),
            ],
        )?;
        let id = out.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(Error::Invalid(format!(
                "sbatch printed `{}`, not a job id",
                out.trim()
            )));
        }
        tracing::info!("worker {name}: Slurm job {id}");
        self.jobs[slot] = Some((name, id));
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<Ended>> {
        if self
            .last_poll
            .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return Ok(Vec::new());
        }
        self.last_poll = Some(Instant::now());
        let ids: Vec<String> = self.jobs.iter().flatten().map(|(_, j)| j.clone()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // squeue forgets finished jobs after a while; a job it does not list has ended
        let listed = slurm(
            "squeue",
            &[
                "-h".into(),
                "-o".into(),
                "%i %T".into(),
                "-j".into(),
                ids.join(","),
            ],
        )
        .unwrap_or_default();
        let state = |id: &str| {
            listed
                .lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(j, _)| *j == id)
                .map(|(_, s)| s.trim().to_string())
        };
        let mut ended = Vec::new();
        for (slot, job) in self.jobs.iter_mut().enumerate() {
            let Some((name, id)) = job.clone() else {
                continue;
            };
            let how = match state(&id) {
                Some(s) if LIVE.contains(&s.as_str()) => continue,
                Some(s) => s,
                None => sacct_state(&id).unwrap_or_else(|| "no longer in squeue".into()),
            };
            ended.push(Ended {
                slot,
                name,
                how: format!("job {id}: {how}"),
            });
            *job = None;
        }
        Ok(ended)
    }

    fn names(&self) -> Vec<String> {
        self.jobs.iter().flatten().map(|(n, _)| n.clone()).collect()
    }

    fn stop(&mut self) {
        let ids: Vec<String> = self.jobs.iter().flatten().map(|(_, j)| j.clone()).collect();
        if !ids.is_empty() {
            if let Err(e) = slurm("scancel", &ids) {
                tracing::warn!("{e}; cancel the jobs by hand: scancel {}", ids.join(" "));
            }
        }
        self.jobs.iter_mut().for_each(|j| *j = None);
    }
}

/// How a job ended, from accounting (None where `sacct` has no record).
fn sacct_state(id: &str) -> Option<String> {
    let out = slurm(
        "sacct",
        &[
            "-n".into(),
            "-X".into(),
            "-P".into(),
            "-o".into(),
            "State".into(),
            "-j".into(),
            id.into(),
        ],
    )
    .ok()?;
    out.lines()
        .next()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_script_carries_every_setting_and_quotes_paths() {
        let cmd = WorkerCommand {
            exe: PathBuf::from("/opt/my tools/lamarck"),
            run: PathBuf::from("/shared/results/run"),
            cache_mem: 2_000_000_000,
            stale_s: 30,
        };
        let s = Slurm {
            cmd,
            spec: SlurmSpec {
                partition: Some("gpu".into()),
                account: Some("lab".into()),
                gres: Some("gpu:1".into()),
                time: Some("4:00:00".into()),
                max_jobs: 2,
                sbatch_extra: vec!["--qos=low".into()],
            },
            jobs: vec![None; 2],
            starts: vec![0; 2],
            threads: 0,
            device: Some("cuda:0".into()),
            logs: PathBuf::from("/tmp"),
            cwd: PathBuf::from("/tmp"),
            last_poll: None,
        };
        let text = s.script("s1-0");
        for want in [
            "#SBATCH --partition=gpu\n",
            "#SBATCH --account=lab\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --time=4:00:00\n",
            "#SBATCH --qos=low\n",
            "exec '/opt/my tools/lamarck' worker --run /shared/results/run --name s1-0",
            "--device cuda:0",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
    }
}
