//! Seeded, counter-based randomness keyed by (seed, stage, tensor): identical whatever the
//! thread count or tensor order.

/// Identifies one random stream family: one per (seed, stage name, output tensor name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RngKey {
    pub seed: u64,
    pub stage: String,
    pub tensor: String,
}
