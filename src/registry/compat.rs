//! Compatibility profiles: which mergekit version's semantics a recipe asks for.

/// Selected by `--compat` or the recipe key `compat:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compat {
    /// Current mergekit (0.1.3+; goldens from 0.1.5).
    #[default]
    Mergekit,
    /// mergekit <= 0.0.6 (Dec 2024), under which Lamarck-14B-v0.3 was built.
    Mergekit2024,
}

impl Compat {
    pub fn parse(name: &str) -> Option<Compat> {
        match name {
            "mergekit" => Some(Compat::Mergekit),
            "mergekit-2024" => Some(Compat::Mergekit2024),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Compat::Mergekit => "mergekit",
            Compat::Mergekit2024 => "mergekit-2024",
        }
    }
}
