//! lamarck's integration tests, one binary (one link of candle instead of one per file).
//! Each module is one former `tests/*.rs` file; `support` is what they share. Run one with
//! `cargo test --test it MODULE::` (e.g. `cargo test --test it bad_inputs::`).
//!
//! `BLESS=1 cargo test --test it bad_inputs::` rewrites the golden `tests/bad/*.stderr`.

/// Stand-in checkpoints, tensor readers, ulp distances, the `lamarck` runner, goldens.
mod support;

// Bad inputs: every `tests/bad/<case>.yaml` through the binary, golden stderr, nothing written.
mod bad_inputs;
// Parsers never panic: random and mutated safetensors headers, recipes, search and task files.
mod fuzz_parsers;

// The model layer: reference resolution, write/read round trips, corrupt folders, synthetic
// families.
mod model_resolve;
mod model_roundtrip;
mod model_synth;
mod model_validation;

// Recipes: what valid ones mean, and how broken ones are refused (library-level messages).
mod recipe_bad;
mod recipe_parse;

// Merge kernels against mergekit's numbers, tensor by tensor and through the CLI.
mod kernels_e2e_cli;
mod kernels_e2e_tensors;
mod kernels_golden;

// `lamarck merge` end to end: CLI behaviour, the mergekit pipeline goldens, the Lamarck-14B
// recipe, the in-memory sink, differential-tester regressions, streamed kernels, vocabularies.
mod merge_cli;
mod merge_golden;
mod merge_lamarck;
mod merge_memory;
mod merge_regress;
mod merge_stream;
mod vocab_golden;
// One executor: stage hashes, stale-stage rebuilds, kill -9 cleanup, plan-time parameter checks.
mod merge_executor;
// Advisory locks on run folders and merge outputs; the folder import graph is acyclic.
mod locks;
mod module_graph;

// Evaluation: transformers' goldens, lm-eval scoring rules, task files end to end.
mod eval_golden;
// IFEval instruction checkers against lm-eval's verdicts on a committed fixture.
mod eval_ifeval;
mod eval_score;
mod eval_tasks;
// Datasets from the Hugging Face cache (Parquet), scoring saved responses (--responses).
mod eval_dataset;
// Batched generation and prefix-shared multiple choice equal one-at-a-time scoring; bf16 on CPU.
mod eval_batched;
// Built-in lm-eval hooks against lm-eval's own output; its task files unedited, `include:`.
mod eval_hooks;

// The search: the stage cache, `evolve --dry-run`, `evolve` end to end with kill/resume.
mod search_cache;
mod search_dry_run;
mod search_evolve;
// Paired racing, the response cache, the paired bootstrap, the test split never read by evolve.
mod search_racing;
// Failed merges are recorded and skipped; merges.csv says which stages were merged.
mod search_failed;
// Workers: one reproduces the in-process records; kills of workers and coordinator; Slurm.
mod search_workers;

// The zoo: reproducible builds, the committed zoo, the training twin.
mod zoo_build;
mod zoo_committed;
mod zoo_twin;
