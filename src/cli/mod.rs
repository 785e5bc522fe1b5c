//! Command line: one file per subcommand. The only place that uses `anyhow`.
use clap::{Parser, Subcommand};

pub mod bench_eval;
pub mod eval;
pub mod merge;
pub mod synth;
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
