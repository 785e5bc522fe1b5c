//! Advisory locks on folders being written: a merge's `--out` and stages folder, a
//! search's run folder. A second process gets an error naming the holder's pid instead of
//! writing beside it.
//!
//! The lock is the operating system's advisory file lock (`flock` on Unix, `LockFileEx` on
//! Windows, through `std::fs::File::try_lock`), on a small file holding the holder's pid and
//! what it does. The kernel drops the lock when its process dies, `kill -9` included, so a
//! crash never leaves a lock behind; the file itself is removed when the holder finishes
//! (and re-checked after locking, so a process that locked a file just unlinked retries).
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{target} is in use by {holder} ({what}, lock file {lock}); wait for it to finish or stop it{kill}, then run again")]
    Held {
        target: PathBuf,
        lock: PathBuf,
        holder: String,
        what: String,
        kill: String,
    },
    #[error("{path}: cannot lock: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held until dropped.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

/// Who holds the lock at `lock`, as recorded in it: (pid, what), if anyone holds it.
fn holder(mut file: &File) -> (Option<u32>, String) {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let what = lines.next().unwrap_or("another lamarck").to_string();
    (pid, what)
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

impl DirLock {
    /// Lock `target` through the lock file `lock` (created if needed; its folder must
    /// exist). `what` says what the holder does, for the other process's message.
    pub fn acquire(target: &Path, lock: &Path, what: &str) -> Result<DirLock, Error> {
        let io = |source| Error::Io {
            path: lock.to_path_buf(),
            source,
        };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(lock)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let (pid, what) = holder(&file);
                    return Err(Error::Held {
                        target: target.to_path_buf(),
                        lock: lock.to_path_buf(),
                        holder: pid.map_or("another process".into(), |p| format!("process {p}")),
                        what,
                        kill: pid.map_or(String::new(), |p| format!(" (`kill {p}`)")),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            // The previous holder may have removed the file between our open and lock.
            if !same_file(&file, lock) {
                continue;
            }
            file.set_len(0).map_err(io)?;
            writeln!(file, "{}\n{what}", std::process::id()).map_err(io)?;
            return Ok(DirLock {
                file,
                path: lock.to_path_buf(),
            });
        }
    }

    /// Whether someone holds the lock file `lock` now (for `--dry-run` reports): the
    /// holder's pid when it is held.
    pub fn held_by(lock: &Path) -> Option<Option<u32>> {
        let file = File::open(lock).ok()?;
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(_) => Some(holder(&file).0),
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Remove first, then unlock: a waiting process that opened the old file sees it
        // is gone after locking and retries on a new one.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// The lock file of a folder `out` written by replacing it (a merge's `--out`): beside it,
/// hidden, since `out` itself appears only when complete.
pub fn lock_path_beside(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!(".{name}.lamarck-lock"))
}

/// Temporary folders a writer of `out` left beside it (`.NAME.lamarck-tmp-PID-N`, and its
/// `-old` form from a replaced output), i.e. those of a process that died mid-write when
/// nobody holds `out`'s lock.
pub fn temp_folders(out: &Path) -> Vec<PathBuf> {
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let prefix = format!(".{name}.lamarck-tmp-");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Remove the temporary folders of `out` (call with `out`'s lock held: they are then
/// leftovers of dead processes). Returns what was removed.
pub fn remove_temp_folders(out: &Path) -> Result<Vec<PathBuf>, Error> {
    let found = temp_folders(out);
    for path in &found {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        removed.map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_lock_goes_with_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let lock = lock_path_beside(&out);
        assert_eq!(lock, tmp.path().join(".out.lamarck-lock"));
        let first = DirLock::acquire(&out, &lock, "lamarck merge").unwrap();
        assert_eq!(DirLock::held_by(&lock), Some(Some(std::process::id())));
        // flock locks are per open file, so a second open in this process conflicts too
        let e = DirLock::acquire(&out, &lock, "lamarck merge")
            .unwrap_err()
            .to_string();
        let pid = std::process::id();
        assert!(
            e.contains(&format!("in use by process {pid} (lamarck merge")) && e.contains("kill"),
            "{e}"
        );
        drop(first);
        assert!(!lock.exists(), "the lock file goes with its holder");
        assert_eq!(DirLock::held_by(&lock), None);
        let _again = DirLock::acquire(&out, &lock, "lamarck merge").unwrap();
    }

    #[test]
    fn temp_folders_of_out_are_found_and_removed_and_others_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        for n in [
            ".out.lamarck-tmp-123-0",
            ".out.lamarck-tmp-123-0-old",
            ".outer.lamarck-tmp-1-0",
        ] {
            std::fs::create_dir(tmp.path().join(n)).unwrap();
        }
        std::fs::write(tmp.path().join(".out.lamarck-tmp-123-0/x"), b"1").unwrap();
        let removed = remove_temp_folders(&out).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(tmp.path().join(".outer.lamarck-tmp-1-0").exists());
        assert!(temp_folders(&out).is_empty());
    }
}
