//! `lamarck synth`: write random Qwen2-layout checkpoints (a base plus fine-tune-like
//! variants) for tests and benchmarks. Same seed, same bytes.
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::model::synth::{standard_family, write_model, SynthOptions, SynthShape};
use crate::model::writer::parse_size;
use crate::model::{DType, WriteOptions};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// hidden 16, 2 layers, 4/2 heads, intermediate 32, vocab 32, tied, f32.
    Tiny,
    /// Qwen2.5-0.5B's shape: hidden 896, 24 layers, 14/2 heads, intermediate 4864,
    /// vocab 151936, tied, bf16.
    Qwen2_0_5b,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SynthDType {
    F32,
    F16,
    Bf16,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder; the family is written to OUT/base, OUT/ft-dense, OUT/ft-sparse,
    /// OUT/ft-lowrank, OUT/ft-conflict, OUT/ft-layers.
    #[arg(long)]
    pub out: PathBuf,
    /// Starting shape; the flags below override single dimensions.
    #[arg(long, value_enum, default_value = "tiny")]
    pub preset: Preset,
    #[arg(long)]
    pub hidden: Option<usize>,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub kv_heads: Option<usize>,
    #[arg(long)]
    pub intermediate: Option<usize>,
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Write a separate lm_head.weight (tie_word_embeddings: false).
    #[arg(long)]
    pub untied: bool,
    #[arg(long, value_enum)]
    pub dtype: Option<SynthDType>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write only these members of the family (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Write config.json as transformers 5 does (dtype, rope_parameters, sliding_window null).
    #[arg(long)]
    pub transformers5: bool,
    /// Maximum shard size: bytes, or with K/M/G (×1e3/1e6/1e9).
    #[arg(long, value_parser = parse_size, default_value = "5G")]
    pub shard_size: u64,
    /// Replace existing model folders.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let mut shape = match args.preset {
        Preset::Tiny => SynthShape::tiny(),
        Preset::Qwen2_0_5b => SynthShape::qwen2_0_5b(),
    };
    let set = |field: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *field = v;
        }
    };
    set(&mut shape.hidden, args.hidden);
    set(&mut shape.layers, args.layers);
    set(&mut shape.heads, args.heads);
    set(&mut shape.kv_heads, args.kv_heads);
    set(&mut shape.intermediate, args.intermediate);
    set(&mut shape.vocab, args.vocab);
    if args.untied {
        shape.tied = false;
    }
    if let Some(d) = args.dtype {
        shape.dtype = match d {
            SynthDType::F32 => DType::F32,
            SynthDType::F16 => DType::F16,
            SynthDType::Bf16 => DType::BF16,
        };
    }
    shape
        .validate()
        .map_err(|m| anyhow::anyhow!("invalid shape: {m}"))?;
    let family = standard_family(shape.layers);
    for name in &args.only {
        if !family.iter().any(|(n, _)| n == name) {
            let names: Vec<&str> = family.iter().map(|(n, _)| *n).collect();
            anyhow::bail!(
                "--only {name}: no such family member (members: {})",
                names.join(", ")
            );
        }
    }
    let opts = SynthOptions {
        seed: args.seed,
        transformers5: args.transformers5,
        write: WriteOptions {
            shard_size: args.shard_size,
            force: args.force,
        },
    };
    for (name, variant) in family {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        let dir = args.out.join(name);
        let start = std::time::Instant::now();
        write_model(&dir, &shape, &variant, &opts)
            .with_context(|| format!("writing synthetic model {}", dir.display()))?;
        tracing::info!(
            "wrote {} ({} parameters, {:.1}s)",
            dir.display(),
            shape.num_params(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
