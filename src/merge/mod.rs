//! Merge kernels ([`methods`]), shared math ([`ops`]), seeded randomness ([`rng`]),
//! compatibility profiles ([`compat`]) and the runner that executes a plan.
pub mod compat;
pub mod methods;
pub mod ops;
pub mod rng;
pub mod run;
pub mod stream;

pub use compat::Compat;
pub use methods::{lookup, MethodSpec, ParamSpec, Params, TensorJob};
