//! Hugging Face model folders: resolving references, reading validated safetensors,
//! the architecture table, and writing complete folders atomically.
//!
//! This module imports nothing from `recipe`, `plan` or `merge`.
pub mod arch;
pub mod config;
pub mod dtype;
pub mod error;
pub mod hf_dir;
pub mod resolve;
pub mod safetensors;
pub mod splitmix;
pub mod stream_writer;
pub mod synth;
pub mod vocab;
pub mod writer;

pub use arch::{Architecture, WeightInfo};
pub use config::HfConfig;
pub use dtype::DType;
pub use error::Error;
pub use hf_dir::{ModelDir, TensorInfo};
pub use resolve::{resolve_model, ModelMap};
pub use stream_writer::Announced;
pub use writer::{ModelWriter, WriteOptions};

pub type Result<T, E = Error> = std::result::Result<T, E>;
