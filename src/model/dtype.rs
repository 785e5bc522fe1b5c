//! Storage dtypes lamarck reads and writes.

/// A storage dtype. All merge arithmetic happens in f32; this is what is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Parse a recipe/config dtype name: `bfloat16`, `float16`, `float32`, with an optional
    /// `torch.` prefix (as mergekit and `config.json` write them).
    pub fn parse_hf(name: &str) -> Option<DType> {
        match name.strip_prefix("torch.").unwrap_or(name) {
            "bfloat16" => Some(DType::BF16),
            "float16" => Some(DType::F16),
            "float32" => Some(DType::F32),
            _ => None,
        }
    }

    /// The name `config.json` uses.
    pub fn hf_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }

    /// Round an f32 value to this dtype and back (round to nearest even).
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::F32 => x,
            DType::F16 => half::f16::from_f32(x).to_f32(),
            DType::BF16 => half::bf16::from_f32(x).to_f32(),
        }
    }
}
