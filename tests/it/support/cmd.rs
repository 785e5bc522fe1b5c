//! Running the `lamarck` binary as a user does, and comparing what it prints with golden
//! files (`BLESS=1` rewrites them).
use std::path::Path;
use std::process::Command;

/// Run `lamarck` with `args` in the current directory, `RUST_LOG=warn`; returns (success,
/// stdout, stderr).
pub fn lamarck(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `lamarck` with `args` in `cwd`; returns (success, stdout, stderr).
pub fn lamarck_in(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What one run of the binary gave.
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Run `lamarck` with `args` in `cwd` with a fixed environment: `RUST_LOG` unset, no
/// colours, and the Hugging Face cache pointed into `cwd` so that nothing outside it is
/// read.
pub fn run_in(args: &[&str], cwd: &Path) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("HF_HOME", cwd.join(".hf"))
        .env("HF_HUB_CACHE", cwd.join(".hf/hub"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Whether golden files are to be rewritten (`BLESS=1`) rather than checked.
pub fn blessing() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Compare `actual` with the golden file `path`: `None` when equal (or when blessing, which
/// writes `actual` there), else a description of the first difference.
pub fn check_golden(path: &Path, actual: &str) -> Option<String> {
    if blessing() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return None;
    }
    let Ok(want) = std::fs::read_to_string(path) else {
        return Some(format!(
            "{}: missing golden file; run with BLESS=1 to write it. Got:\n{actual}",
            path.display()
        ));
    };
    if want == actual {
        return None;
    }
    let line = want
        .lines()
        .zip(actual.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(want.lines().count().min(actual.lines().count()));
    Some(format!(
        "{}: differs from line {} (BLESS=1 rewrites it)\n--- expected\n{want}--- actual\n{actual}",
        path.display(),
        line + 1
    ))
}

/// `lamarck merge <recipe> <flags> --out <out>` run from the repository root (golden
/// recipes name their models relative to it); `Err` holds the failure and its stderr.
pub fn merge_from_repo(recipe: &Path, flags: &[&str], out: &Path) -> Result<(), String> {
    let res = Command::new(env!("CARGO_BIN_EXE_lamarck"))
        .current_dir(super::repo())
        .arg("merge")
        .arg(recipe)
        .args(flags)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    if res.status.success() {
        Ok(())
    } else {
        Err(format!(
            "lamarck merge failed:\n{}",
            String::from_utf8_lossy(&res.stderr)
        ))
    }
}
