//! Streaming shard output for [`super::ModelWriter`]: tensors go to disk as they arrive, on
//! a background thread, instead of waiting in memory for their shard to fill.
//!
//! A safetensors header (which lists every tensor's offsets) precedes the data, so a file
//! cannot be streamed before its contents are known. When the caller announces every
//! tensor up front ([`super::ModelWriter::expect_tensors`], which a merge plan can do), the
//! shard boundaries, the order inside each shard and every header are computed at once,
//! with exactly the rules of the buffering path, so the files are byte-identical to what
//! buffering would have written. Each tensor is then written at its final offset
//! (`pwrite`) by a writer thread, while the caller computes the next tensors; the bytes
//! queued for that thread are bounded ([`DEFAULT_QUEUE_BYTES`]), and the thread starts
//! the disk writeback (`fdatasync`) every [`SYNC_EVERY`] bytes so that the final fsync
//! does not wait for the whole model.
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::{DType, Error, Result};

/// Bytes that may wait for the writer thread (a larger single tensor is let through alone).
pub const DEFAULT_QUEUE_BYTES: u64 = 256 << 20;
/// The writer thread syncs a shard each time this many bytes were written to it.
pub const SYNC_EVERY: u64 = 256 << 20;

/// One tensor announced to the writer.
#[derive(Debug, Clone)]
pub struct Announced {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl Announced {
    pub fn byte_len(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * self.dtype.size() as u64
    }
}

/// Split `tensors` (in arrival order) into shards: a new shard starts when the next tensor
/// would push a non-empty shard past `shard_size` (mergekit's rule). Inside a shard, larger
/// elements first, then by name (alignment, and independence from arrival order).
pub fn plan_shards(tensors: &[Announced], shard_size: u64) -> Vec<Vec<Announced>> {
    let mut shards: Vec<Vec<Announced>> = Vec::new();
    let mut current: Vec<Announced> = Vec::new();
    let mut bytes = 0u64;
    for t in tensors {
        let len = t.byte_len();
        if !current.is_empty() && bytes + len > shard_size {
            shards.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += len;
        current.push(t.clone());
    }
    if !current.is_empty() {
        shards.push(current);
    }
    for shard in &mut shards {
        sort_for_shard(shard, |t| (t.dtype, t.name.as_str()));
    }
    shards
}

/// The order of tensors inside a shard file.
pub fn sort_for_shard<T>(items: &mut [T], key: impl Fn(&T) -> (DType, &str)) {
    items.sort_by(|a, b| {
        let (da, na) = key(a);
        let (db, nb) = key(b);
        (std::cmp::Reverse(da.size()), na).cmp(&(std::cmp::Reverse(db.size()), nb))
    });
}

struct Job {
    shard: usize,
    offset: u64,
    data: Vec<u8>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    queued_bytes: u64,
    closed: bool,
    /// Set with the first write error, which is handed out once (`error`).
    failed: bool,
    error: Option<Error>,
}

impl State {
    fn failure(&mut self, out: &Path) -> Option<Error> {
        if !self.failed {
            return None;
        }
        Some(
            self.error
                .take()
                .unwrap_or_else(|| Error::invalid(out, "an earlier write to this output failed")),
        )
    }
}

struct Queue {
    state: Mutex<State>,
    changed: Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state (plain fields).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where each announced tensor goes, and the thread that writes it there.
pub struct Streaming {
    /// name → (shard, absolute offset in its file, announced dtype and shape).
    slots: HashMap<String, (usize, u64, Announced)>,
    /// Temporary shard files and their tensor names (file order).
    pub shards: Vec<(PathBuf, Vec<String>)>,
    queue: Arc<Queue>,
    queue_bytes: u64,
    thread: Option<JoinHandle<()>>,
    files: Arc<Vec<File>>,
}

impl Streaming {
    /// Create the shard files in `dir` (`shard-N.tmp`), write their headers, start the
    /// writer thread. `header` builds a header from a shard's tensors (with their byte
    /// lengths); it is the buffering path's own function, so the files are identical.
    pub fn start(
        dir: &Path,
        tensors: &[Announced],
        shard_size: u64,
        header: impl Fn(&Path, &[(&str, DType, &[usize], u64)]) -> Result<Vec<u8>>,
    ) -> Result<Streaming> {
        let mut slots = HashMap::new();
        let mut shards = Vec::new();
        let mut files = Vec::new();
        for (i, shard) in plan_shards(tensors, shard_size).into_iter().enumerate() {
            let path = dir.join(format!("shard-{}.tmp", i + 1));
            let entries: Vec<(&str, DType, &[usize], u64)> = shard
                .iter()
                .map(|t| (t.name.as_str(), t.dtype, t.shape.as_slice(), t.byte_len()))
                .collect();
            let head = header(&path, &entries)?;
            let mut offset = head.len() as u64;
            for t in &shard {
                if slots
                    .insert(t.name.clone(), (i, offset, t.clone()))
                    .is_some()
                {
                    return Err(Error::BadTensor {
                        path: dir.to_path_buf(),
                        tensor: t.name.clone(),
                        message: "announced twice".into(),
                    });
                }
                offset += t.byte_len();
            }
            let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
            write_at(&file, &head, 0).map_err(|e| Error::io(&path, e))?;
            file.set_len(offset).map_err(|e| Error::io(&path, e))?;
            files.push(file);
            shards.push((path, shard.into_iter().map(|t| t.name).collect()));
        }
        let queue = Arc::new(Queue {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let files = Arc::new(files);
        let paths: Vec<PathBuf> = shards.iter().map(|(p, _)| p.clone()).collect();
        let thread = {
            let (queue, files) = (queue.clone(), files.clone());
            std::thread::Builder::new()
                .name("lamarck-writer".into())
                .spawn(move || writer_loop(&queue, &files, &paths))
                .map_err(|e| Error::io(dir, e))?
        };
        Ok(Streaming {
            slots,
            shards,
            queue,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            thread: Some(thread),
            files,
        })
    }

    /// Bound the bytes waiting for the writer thread.
    pub fn set_queue_bytes(&mut self, bytes: u64) {
        self.queue_bytes = bytes.max(1);
    }

    /// Queue one tensor (already checked for size and duplicates by the caller).
    pub fn add(
        &mut self,
        out: &Path,
        name: &str,
        dtype: DType,
        shape: &[usize],
        data: Vec<u8>,
    ) -> Result<()> {
        self.add_part(out, name, dtype, shape, 0, data)
    }

    /// Queue bytes `byte_offset..byte_offset + data.len()` of one tensor (the caller checks
    /// that the part lies inside the tensor and that every byte arrives once).
    pub fn add_part(
        &mut self,
        out: &Path,
        name: &str,
        dtype: DType,
        shape: &[usize],
        byte_offset: u64,
        data: Vec<u8>,
    ) -> Result<()> {
        let (shard, offset, announced) = self.slots.get(name).ok_or_else(|| Error::BadTensor {
            path: out.to_path_buf(),
            tensor: name.to_string(),
            message: "was not among the tensors announced to the writer".into(),
        })?;
        if announced.dtype != dtype || announced.shape != shape {
            return Err(Error::BadTensor {
                path: out.to_path_buf(),
                tensor: name.to_string(),
                message: format!(
                    "announced as {} {:?}, added as {} {shape:?}",
                    announced.dtype.hf_name(),
                    announced.shape,
                    dtype.hf_name()
                ),
            });
        }
        let len = data.len() as u64;
        let mut state = self.queue.lock();
        while !state.failed && state.queued_bytes > 0 && state.queued_bytes + len > self.queue_bytes
        {
            state = self
                .queue
                .changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        if let Some(e) = state.failure(out) {
            return Err(e);
        }
        state.queued_bytes += len;
        state.jobs.push_back(Job {
            shard: *shard,
            offset: *offset + byte_offset,
            data,
        });
        self.queue.changed.notify_all();
        Ok(())
    }

    /// Wait for every queued write, then fsync every shard. `added` = tensors received.
    pub fn finish(&mut self, out: &Path, added: usize) -> Result<()> {
        self.stop();
        if let Some(e) = self.queue.lock().failure(out) {
            return Err(e);
        }
        if added != self.slots.len() {
            let mut missing: Vec<&String> = self.slots.keys().collect();
            missing.sort();
            return Err(Error::invalid(
                out,
                format!(
                    "{} of the {} announced tensors were never added (first: `{}`)",
                    self.slots.len() - added,
                    self.slots.len(),
                    missing.first().map_or("", |s| s.as_str())
                ),
            ));
        }
        for (file, (path, _)) in self.files.iter().zip(&self.shards) {
            file.sync_all().map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    fn stop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                let mut state = self.queue.lock();
                if !state.failed {
                    state.failed = true;
                    state.error = Some(Error::invalid(
                        Path::new("<writer thread>"),
                        "the writer thread panicked",
                    ));
                }
            }
        }
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer_loop(queue: &Queue, files: &[File], paths: &[PathBuf]) {
    let mut since_sync = vec![0u64; files.len()];
    loop {
        let job = {
            let mut state = queue.lock();
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                if state.closed {
                    return;
                }
                state = queue.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let len = job.data.len() as u64;
        let mut result = write_at(&files[job.shard], &job.data, job.offset);
        drop(job.data);
        since_sync[job.shard] += len;
        if result.is_ok() && since_sync[job.shard] >= SYNC_EVERY {
            since_sync[job.shard] = 0;
            result = files[job.shard].sync_data();
        }
        let mut state = queue.lock();
        state.queued_bytes -= len;
        if let Err(e) = result {
            if !state.failed {
                state.failed = true;
                state.error = Some(Error::io(&paths[job.shard], e));
            }
            // Stop writing; the caller sees the error at its next add or at finish.
            state.jobs.clear();
            state.queued_bytes = 0;
        }
        queue.changed.notify_all();
    }
}

#[cfg(unix)]
fn write_at(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(data, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut data: &[u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !data.is_empty() {
        let n = file.seek_write(data, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Announced;
    use crate::model::{DType, ModelWriter, WriteOptions};

    fn tensors() -> Vec<(Announced, Vec<u8>)> {
        let mut out = Vec::new();
        for (i, (dtype, n)) in [
            (DType::BF16, 300),
            (DType::F32, 7),
            (DType::BF16, 1000),
            (DType::F16, 64),
            (DType::F32, 500),
            (DType::BF16, 5),
        ]
        .into_iter()
        .enumerate()
        {
            let a = Announced {
                name: format!("t{}.weight", 9 - i),
                dtype,
                shape: vec![n],
            };
            let data = (0..a.byte_len())
                .map(|b| (b * 31 + i as u64) as u8)
                .collect();
            out.push((a, data));
        }
        out
    }

    fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn write(out: &std::path::Path, shard_size: u64, stream: bool, queue: u64) {
        let opts = WriteOptions {
            shard_size,
            force: false,
        };
        let mut w = ModelWriter::create(out, opts).unwrap();
        let all = tensors();
        if stream {
            let announced: Vec<Announced> = all.iter().map(|(a, _)| a.clone()).collect();
            w.expect_tensors(&announced).unwrap();
            w.set_queue_bytes(queue);
        }
        for (a, data) in all {
            w.add_tensor(&a.name, a.dtype, &a.shape, data).unwrap();
        }
        w.finish().unwrap();
    }

    #[test]
    fn streamed_files_equal_buffered_files_for_any_shard_size() {
        let tmp = tempfile::tempdir().unwrap();
        for (k, shard_size) in [1u64, 700, 2500, 1 << 30].into_iter().enumerate() {
            let a = tmp.path().join(format!("buffered-{k}"));
            let b = tmp.path().join(format!("streamed-{k}"));
            write(&a, shard_size, false, 0);
            write(&b, shard_size, true, 100);
            let (fa, fb) = (files(&a), files(&b));
            assert!(!fa.is_empty());
            assert_eq!(fa, fb, "shard size {shard_size}");
        }
    }

    #[test]
    fn unannounced_or_missing_tensors_are_errors_and_leave_no_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("m");
        let all = tensors();
        let announced: Vec<Announced> = all.iter().map(|(a, _)| a.clone()).collect();

        let mut w = ModelWriter::create(&out, WriteOptions::default()).unwrap();
        w.expect_tensors(&announced[..2]).unwrap();
        let (a, data) = &all[3];
        let e = w
            .add_tensor(&a.name, a.dtype, &a.shape, data.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains(&a.name) && e.contains("not among"), "{e}");
        drop(w);

        let mut w = ModelWriter::create(&out, WriteOptions::default()).unwrap();
        w.expect_tensors(&announced).unwrap();
        let (a, data) = &all[0];
        w.add_tensor(&a.name, a.dtype, &a.shape, data.clone())
            .unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(e.contains("5 of the 6 announced tensors"), "{e}");
        assert!(!out.exists());
        let leftovers = std::fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(leftovers, 0, "temporary folders removed");
    }

    #[test]
    fn a_tensor_added_with_another_shape_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = ModelWriter::create(&tmp.path().join("m"), WriteOptions::default()).unwrap();
        let a = Announced {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![2, 2],
        };
        w.expect_tensors(&[a]).unwrap();
        let e = w
            .add_tensor("x", DType::F32, &[4], vec![0; 16])
            .unwrap_err()
            .to_string();
        assert!(e.contains("announced as float32 [2, 2]"), "{e}");
    }
}
