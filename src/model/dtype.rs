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
    #[inline(always)]
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::F32 => x,
            DType::F16 => half::f16::from_f32(x).to_f32(),
            DType::BF16 => round_bf16(x),
        }
    }
}

/// A dtype's rounding as a type, so that a kernel generic over it is compiled once per dtype
/// with the rounding inlined (a loop calling [`DType::round`] re-tests the dtype per element
/// and does not vectorise). [`DType::with_rounding`] picks the type for a runtime dtype.
pub trait Rounding: Copy + Send + Sync + 'static {
    /// `DType::round` of this dtype.
    fn round(x: f32) -> f32;
}

/// f32: no rounding.
#[derive(Debug, Clone, Copy)]
pub struct RoundF32;
/// Round to f16 and back.
#[derive(Debug, Clone, Copy)]
pub struct RoundF16;
/// Round to bf16 and back.
#[derive(Debug, Clone, Copy)]
pub struct RoundBf16;

impl Rounding for RoundF32 {
    #[inline(always)]
    fn round(x: f32) -> f32 {
        x
    }
}

impl Rounding for RoundF16 {
    #[inline(always)]
    fn round(x: f32) -> f32 {
        half::f16::from_f32(x).to_f32()
    }
}

impl Rounding for RoundBf16 {
    #[inline(always)]
    fn round(x: f32) -> f32 {
        round_bf16(x)
    }
}

/// `$body` with the type `$R` bound to the [`Rounding`] of the runtime dtype `$dtype`:
/// `with_rounding!(dtype, R => kernel::<R>(..))` compiles `kernel` once per dtype.
macro_rules! with_rounding {
    ($dtype:expr, $R:ident => $body:expr) => {
        match $dtype {
            $crate::model::DType::F32 => {
                type $R = $crate::model::dtype::RoundF32;
                $body
            }
            $crate::model::DType::F16 => {
                type $R = $crate::model::dtype::RoundF16;
                $body
            }
            $crate::model::DType::BF16 => {
                type $R = $crate::model::dtype::RoundBf16;
                $body
            }
        }
    };
}
pub(crate) use with_rounding;

/// Whether the element-wise kernels run their copies compiled for AVX2 ([`wide_kernel`];
/// x86-64 only; the CPU is asked once and the answer cached).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx2() -> bool {
    WIDE.load(std::sync::atomic::Ordering::Relaxed) && std::arch::is_x86_feature_detected!("avx2")
}

/// Whether they run their copies compiled for AVX-512 (F, BW, DQ, VL), as [`has_avx2`].
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn has_avx512() -> bool {
    WIDE.load(std::sync::atomic::Ordering::Relaxed)
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

static WIDE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Let the kernels use their AVX2 or AVX-512 copies where the CPU has them (the default),
/// or not.
/// The results are the same bits either way; the tests compare the two.
#[doc(hidden)]
pub fn set_wide_kernels(on: bool) {
    WIDE.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// `fn name(args) -> ret { body }`, with two more copies of the body, compiled for AVX2 and
/// for AVX-512 (F, BW, DQ, VL), the widest the CPU has running instead. All copies perform
/// the same IEEE operations in the same order (Rust never fuses a multiply and an add, nor
/// reorders a sum, on its own): a wide copy only processes more elements per instruction,
/// so the results are the same bits. Helpers the body calls should be `#[inline(always)]`
/// to be compiled into it; a closure the body hands to rayon runs outside it (call a
/// `wide_kernel!` function from the closure instead).
macro_rules! wide_kernel {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn any($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                any($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                any($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::model::dtype::has_avx512() {
                // SAFETY: the CPU has these AVX-512 subsets (checked just above).
                return unsafe { avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::model::dtype::has_avx2() {
                // SAFETY: the CPU has AVX2 (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            any($($arg),*)
        }
    };
}
pub(crate) use wide_kernel;

/// `half::bf16::from_f32(x).to_f32()` as plain bit arithmetic the compiler can inline and
/// vectorise (the merge kernels call it per element): round to nearest even on the upper
/// 16 bits; NaN stays NaN with its quiet bit set, exactly as `half` does.
#[inline(always)]
pub(crate) fn round_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    // Both candidates computed and one selected, without branches (so loops vectorise).
    let nan = bits | 0x0040_0000;
    // Adding 0x7fff and the kept part's lowest bit carries into the upper half exactly
    // when the dropped half is above one half, or equal to it with that bit odd: round to
    // nearest, ties to even. (Only a NaN's bits could carry out of the word.)
    let rounded = bits.wrapping_add(0x7fff + (bits >> 16 & 1));
    let upper = if bits & 0x7FFF_FFFF > 0x7F80_0000 {
        nan
    } else {
        rounded
    };
    f32::from_bits(upper & 0xffff_0000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn bf16_rounding_equals_half_bit_for_bit() {
        let check = |bits: u32| {
            let x = f32::from_bits(bits);
            let want = half::bf16::from_f32(x).to_f32();
            assert_eq!(
                super::round_bf16(x).to_bits(),
                want.to_bits(),
                "{bits:#010x}"
            );
        };
        // every upper half with the low halves that decide rounding, plus a pseudo-random sweep
        for upper in 0..=0xFFFFu32 {
            for lower in [0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF] {
                check(upper << 16 | lower);
            }
        }
        let mut s = 0x9E37_79B9u32;
        for _ in 0..2_000_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            check(s);
        }
    }
}
