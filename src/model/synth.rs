//! Random tiny Qwen2-layout checkpoints for tests and benchmarks.
