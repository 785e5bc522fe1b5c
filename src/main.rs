//! `lamarck` binary: parse flags, run, print the error chain, map to an exit code.
//! Exit codes: 0 success, 1 the command failed, 2 bad command line (clap).
use std::process::ExitCode;

fn main() -> ExitCode {
    lamarck::merge::alloc::keep_freed_memory();
    let cli = lamarck::cli::parse();
    match lamarck::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lamarck: error: {}", lamarck::cli::error_chain(&err));
            ExitCode::from(1)
        }
    }
}
