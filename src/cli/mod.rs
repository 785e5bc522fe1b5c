//! Command line: one file per subcommand. The only place that uses `anyhow`.
use clap::{Parser, Subcommand};

pub mod bench_eval;
pub mod eval;
pub mod evolve;
pub mod export;
pub mod merge;
pub mod report;
pub mod synth;
pub mod worker;
pub mod zoo;

#[derive(Parser, Debug)]
#[command(
    name = "lamarck",
    version,
    about = "Evaluation-driven, evolutionary LLM merging"
)]
pub struct Cli {
    /// More logging (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a mergekit-style YAML recipe and write a Hugging Face model folder.
    Merge(merge::MergeArgs),
    /// Score a model on tinyeval-style tasks.
    Eval(eval::EvalArgs),
    /// Build or inspect the shipped zoo of tiny trained models.
    Zoo(zoo::ZooArgs),
    /// Write random Qwen2-layout checkpoints (base + fine-tune-like variants) from a seed.
    Synth(synth::SynthArgs),
    /// Benchmark log-likelihood scoring throughput (see tools/eval/bench_eval.py).
    BenchEval(bench_eval::BenchEvalArgs),
    /// Search a recipe's genes (evolutionary merging); records in results/<run>/.
    Evolve(evolve::EvolveArgs),
    /// Write a recorded candidate as a recipe for `lamarck merge`.
    Export(export::ExportArgs),
    /// Summarize a search: frontier, best vs start vs parents, plot.
    Report(report::ReportArgs),
    /// Score candidates of a run started with `evolve --workers N` (started by it, or by hand).
    Worker(worker::WorkerArgs),
}

pub fn parse() -> Cli {
    Cli::parse()
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_tracing(cli.verbose);
    match cli.command {
        Command::Merge(args) => merge::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Zoo(args) => zoo::run(args),
        Command::Synth(args) => synth::run(args),
        Command::BenchEval(args) => bench_eval::run(args),
        Command::Evolve(args) => evolve::run(args),
        Command::Export(args) => export::run(args),
        Command::Report(args) => report::run(args),
        Command::Worker(args) => worker::run(args),
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,lamarck=info",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// The error and its causes joined with ": ", skipping a cause whose text the message
/// before it already contains (library errors often include their source in their own
/// message, and repeating it makes the line unreadable).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("reading config.json: {source}")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn error_chain_does_not_repeat_a_cause_already_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::new(Outer { source: io }).context("stage `final`");
        assert_eq!(
            error_chain(&err),
            "stage `final`: reading config.json: No such file"
        );
    }

    #[test]
    fn error_chain_keeps_distinct_causes() {
        let err = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_chain(&err), "outer: inner cause");
    }
}
