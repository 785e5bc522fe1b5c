//! `passthrough`: copy one input, optionally scaled (frankenmerges, layer stacking).
//!
//! Formula: `out = X` or `out = scale·X` when the per-model `scale` is set.
//!
//! Reference: mergekit's passthrough method (no paper).
//!
//! | name | scope | default | range |
//! |---|---|---|---|
//! | `scale` | per-model | unset (no scaling) | any real |
//!
//! Matches mergekit 0.1.5 `merge_methods/passthrough.py` (exactly one input, no base). Same
//! in both compat profiles.
//!
//! ```
//! use lamarck::merge::methods::{merge_vectors, Params};
//! let s = Params::from([("scale".to_string(), 0.5)]);
//! assert_eq!(merge_vectors("passthrough", None, &[(&[2.0, -4.0], &s)], &Params::new()).unwrap(), [1.0, -2.0]);
//! assert_eq!(merge_vectors("passthrough", None, &[(&[2.0, -4.0], &Params::new())], &Params::new()).unwrap(), [2.0, -4.0]);
//! ```
use super::{Error, TensorJob};

pub use crate::registry::PASSTHROUGH as SPEC;

pub(super) fn merge(job: &TensorJob) -> Result<Vec<f32>, Error> {
    let model = &job.models[0];
    Ok(match model.params.get("scale") {
        Some(&s) => {
            let s = s as f32;
            model.data.iter().map(|x| x * s).collect()
        }
        None => model.data.to_vec(),
    })
}
