//! Validated safetensors headers and mmapped reads.
