//! Merge kernels ([`methods`]), shared math ([`ops`]), seeded randomness ([`rng`]),
//! and the runner that executes a plan. The method registry and compatibility profiles
//! they read are [`crate::registry`].
pub mod alloc;
pub mod exec;
pub mod folder;
pub mod lock;
pub mod methods;
pub mod ops;
pub mod rng;
pub mod run;
pub mod sink;
pub mod stream;
mod tensor;

pub use methods::TensorJob;
