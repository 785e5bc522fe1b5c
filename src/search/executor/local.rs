//! Workers as child processes of the coordinator, each with a share of the CPU threads
//! (or its own GPU: `--device cuda` gives worker i `cuda:i`).
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{Ended, Executor, WorkerCommand};
use crate::search::run::EvolveOptions;
use crate::search::{Error, Result};

pub struct Local {
    cmd: WorkerCommand,
    slots: Vec<Option<(String, Child)>>,
    starts: Vec<usize>,
    threads: usize,
    device: Option<String>,
    logs: PathBuf,
}

impl Local {
    pub fn new(cmd: WorkerCommand, opts: &EvolveOptions, logs: PathBuf) -> Local {
        let n = opts.workers.max(1);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let threads = if opts.threads > 0 {
            opts.threads
        } else {
            (cores / n).max(1)
        };
        Local {
            cmd,
            slots: (0..n).map(|_| None).collect(),
            starts: vec![0; n],
            threads,
            device: opts.device.clone(),
            logs,
        }
    }

    fn device(&self, slot: usize) -> Option<String> {
        match self.device.as_deref() {
            Some("cuda") => Some(format!("cuda:{slot}")),
            d => d.map(str::to_string),
        }
    }
}

impl Executor for Local {
    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn start(&mut self, slot: usize) -> Result<()> {
        // the coordinator's pid keeps names unique when workers of a killed coordinator linger
        let name = format!("w{slot}-{}-{}", self.starts[slot], std::process::id());
        self.starts[slot] += 1;
        let log = self.logs.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(&log, e))?;
        let device = self.device(slot);
        let child = Command::new(&self.cmd.exe)
            .args(self.cmd.args(&name, self.threads, device.as_deref()))
            .env("RAYON_NUM_THREADS", self.threads.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io(&self.cmd.exe, e))?;
        self.slots[slot] = Some((name, child));
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<Ended>> {
        let mut ended = Vec::new();
        for (slot, s) in self.slots.iter_mut().enumerate() {
            let Some((name, child)) = s else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                ended.push(Ended {
                    slot,
                    name: name.clone(),
                    how: format!("{status}"),
                });
                *s = None;
            }
        }
        Ok(ended)
    }

    fn names(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(n, _)| n.clone()))
            .collect()
    }

    fn stop(&mut self) {
        // the stop file is written; give each worker a moment to finish, then kill it
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for (_, child) in self.slots.iter_mut().flatten() {
            while std::time::Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
