//! Seeded, counter-based randomness keyed by (seed, stage, tensor): identical whatever the
//! thread count or tensor order.
//!
//! mergekit draws DARE/DELLA masks from torch's global generator, so its masks depend on the
//! order in which tensors are processed, on the device and on the torch version. lamarck
//! instead makes every random draw a pure function of
//! `(seed, stage name, output tensor name, model index, element index)`:
//!
//! 1. [`RngKey::key`] hashes `seed`, `stage` and `tensor` into one 64-bit key (a SplitMix64
//!    finaliser over 8-byte words of the UTF-8 names, lengths included, so `("ab","c")` and
//!    `("a","bc")` differ);
//! 2. [`RngKey::stream`] mixes the model index into that key, giving one [`Stream`] per
//!    (tensor, model);
//! 3. [`Stream::bits`] is element `i` of a SplitMix64 sequence started at the stream key:
//!    `mix(key + (i + 1)·γ)`, with γ = 0x9E3779B97F4A7C15. No state is carried between
//!    elements, so any chunking, thread count or device (the same three integer ops run on a
//!    GPU) gives the same bits.
//!
//! SplitMix64's output function is a bijective 64-bit mixer that passes BigCrush as a
//! sequence generator; the tests below check uniformity (chi-square, mean) and the
//! independence of different keys, models and seeds.

/// Identifies one random stream family: one per (seed, stage name, output tensor name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RngKey {
    pub seed: u64,
    pub stage: String,
    pub tensor: String,
}

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

pub use crate::model::splitmix::mix64;

/// Absorb `bytes` (and its length) into `state`.
fn absorb(state: u64, bytes: &[u8]) -> u64 {
    let mut h = mix64(state ^ (bytes.len() as u64).wrapping_mul(GAMMA));
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix64(h.wrapping_add(GAMMA) ^ u64::from_le_bytes(word));
    }
    h
}

impl RngKey {
    pub fn new(seed: u64, stage: &str, tensor: &str) -> RngKey {
        RngKey {
            seed,
            stage: stage.to_string(),
            tensor: tensor.to_string(),
        }
    }

    /// The 64-bit key of this (seed, stage, tensor).
    pub fn key(&self) -> u64 {
        let h = mix64(self.seed.wrapping_add(GAMMA));
        let h = absorb(h, self.stage.as_bytes());
        absorb(h, self.tensor.as_bytes())
    }

    /// The stream of model `model` (index among the non-base inputs, config order).
    pub fn stream(&self, model: usize) -> Stream {
        let model_word = mix64((model as u64).wrapping_add(1).wrapping_mul(GAMMA));
        Stream {
            key: mix64(self.key() ^ model_word),
        }
    }
}

/// One (seed, stage, tensor, model) random stream: element `i` is a pure function of `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    key: u64,
}

impl Stream {
    /// 64 random bits for element `index`.
    #[inline]
    pub fn bits(&self, index: u64) -> u64 {
        mix64(
            self.key
                .wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA)),
        )
    }

    /// A uniform draw in [0, 1) with 53 random bits for element `index`.
    #[inline]
    pub fn uniform(&self, index: u64) -> f64 {
        self.draw53(index) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Bernoulli(p) for element `index`: true with probability `p` (p ≤ 0 never, p ≥ 1 always).
    #[inline]
    pub fn bernoulli(&self, index: u64, p: f64) -> bool {
        self.uniform(index) < p
    }

    /// [`Stream::bernoulli`] with `p` given as [`threshold`]`(p)`: the same answer for every
    /// index and probability, with one integer comparison per element.
    #[inline]
    pub fn keep(&self, index: u64, threshold: u64) -> bool {
        self.draw53(index) < threshold
    }

    /// The 53-bit integer behind [`Stream::uniform`] and [`Stream::keep`] for element
    /// `index`: `keep(index, t)` is `draw53(index) < t`.
    #[inline]
    pub fn draw53(&self, index: u64) -> u64 {
        self.bits(index) >> 11
    }

    /// [`Stream::draw53`] of the consecutive indices `first, first + 1, …` into `out`.
    /// Element `i`'s counter `key + (first + i + 1)·γ` is the one before it plus γ (the
    /// same wrapping sum), so each draw costs the mixer's two multiplies, not three: AVX2
    /// has no 64-bit vector multiply, and emulates each with three 32-bit ones.
    ///
    /// With AVX2 but not AVX-512 (no 64-bit vector multiply), six draws at a time: four in
    /// a vector and two on the scalar multiplier beside it ([`avx2::draws53`]).
    #[inline(always)]
    pub fn draws53(&self, first: u64, out: &mut [u64]) {
        let counter = self
            .key
            .wrapping_add(first.wrapping_add(1).wrapping_mul(GAMMA));
        #[cfg(target_arch = "x86_64")]
        if crate::model::dtype::has_avx2() && !crate::model::dtype::has_avx512() {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2::draws53(counter, out) };
        }
        draws_from(counter, out)
    }
}

/// `out[i] ← mix64(counter + i·γ) >> 11`, one draw after the other.
#[inline(always)]
fn draws_from(mut counter: u64, out: &mut [u64]) {
    for d in out {
        *d = mix64(counter) >> 11;
        counter = counter.wrapping_add(GAMMA);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{draws_from, mix64, GAMMA};

    /// [`super::draws_from`], six draws per step: four in one vector (each 64-bit multiply
    /// emulated with three 32-bit ones) while the scalar multiplier makes the other two,
    /// so both multipliers work at once (the same integers: wrapping products and shifts).
    #[target_feature(enable = "avx2")]
    pub(super) fn draws53(counter: u64, out: &mut [u64]) {
        const M1: u64 = 0xBF58_476D_1CE4_E5B9;
        const M2: u64 = 0x94D0_49BB_1331_11EB;
        let at = |i: u64| counter.wrapping_add(i.wrapping_mul(GAMMA));
        let mut lanes = _mm256_set_epi64x(at(3) as i64, at(2) as i64, at(1) as i64, at(0) as i64);
        let step = _mm256_set1_epi64x(6u64.wrapping_mul(GAMMA) as i64);
        // the counter of the step's fifth draw (its own chain: derived from the vector's,
        // the compiler moves the two scalar draws into vectors too)
        let mut scalar = at(4);
        let mut steps = out.chunks_exact_mut(6);
        for d in &mut steps {
            let mut z = lanes;
            z = _mm256_xor_si256(z, _mm256_srli_epi64::<30>(z));
            z = mul64(z, M1);
            let a = mix64(scalar);
            z = _mm256_xor_si256(z, _mm256_srli_epi64::<27>(z));
            z = mul64(z, M2);
            let b = mix64(scalar.wrapping_add(GAMMA));
            z = _mm256_xor_si256(z, _mm256_srli_epi64::<31>(z));
            let (four, two) = d.split_at_mut(4);
            // SAFETY: `four` is 4 u64s, 32 bytes; an unaligned store.
            unsafe { _mm256_storeu_si256(four.as_mut_ptr().cast(), _mm256_srli_epi64::<11>(z)) };
            two[0] = a >> 11;
            two[1] = b >> 11;
            lanes = _mm256_add_epi64(lanes, step);
            scalar = scalar.wrapping_add(6u64.wrapping_mul(GAMMA));
        }
        draws_from(
            scalar.wrapping_sub(4u64.wrapping_mul(GAMMA)),
            steps.into_remainder(),
        );
    }

    /// Lane-wise wrapping `z · m` (the low 64 bits) from 32-bit multiplies.
    #[inline(always)]
    fn mul64(z: __m256i, m: u64) -> __m256i {
        // SAFETY (of each intrinsic): AVX2, which the caller's target feature enables.
        unsafe {
            let lo = _mm256_set1_epi64x((m & 0xffff_ffff) as i64);
            let hi = _mm256_set1_epi64x((m >> 32) as i64);
            let cross = _mm256_add_epi64(
                _mm256_mul_epu32(_mm256_srli_epi64::<32>(z), lo),
                _mm256_mul_epu32(z, hi),
            );
            _mm256_add_epi64(_mm256_mul_epu32(z, lo), _mm256_slli_epi64::<32>(cross))
        }
    }
}

/// The integer threshold of [`Stream::keep`]: `uniform < p` is `m · 2⁻⁵³ < p` for the
/// 53-bit integer `m = bits >> 11`; scaling by a power of two is exact, and for an integer
/// `m`, `m < P ⟺ m < ⌈P⌉`. The cast saturates (p ≥ 1 keeps every m < 2⁵³) and sends p ≤ 0
/// and NaN to 0 (keeps none), as the float comparison does.
pub fn threshold(p: f64) -> u64 {
    (p * (1u64 << 53) as f64).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u64, stage: &str, tensor: &str) -> RngKey {
        RngKey::new(seed, stage, tensor)
    }

    #[test]
    fn uniform_passes_chi_square_and_mean() {
        let s = key(42, "stage", "model.layers.0.mlp.up_proj.weight").stream(0);
        let n = 200_000u64;
        let bins = 20usize;
        let mut counts = vec![0u64; bins];
        let mut sum = 0.0;
        for i in 0..n {
            let u = s.uniform(i);
            assert!((0.0..1.0).contains(&u));
            sum += u;
            counts[(u * bins as f64) as usize] += 1;
        }
        let expected = n as f64 / bins as f64;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // 19 degrees of freedom: P(chi2 > 43.8) = 0.001.
        assert!(chi2 < 43.8, "chi-square {chi2} too large: {counts:?}");
        let mean = sum / n as f64;
        // sd of the mean = sqrt(1/12 / n) ≈ 6.5e-4; allow 5 sd.
        assert!((mean - 0.5).abs() < 3.3e-3, "mean {mean}");
    }

    #[test]
    fn bernoulli_keep_fraction_is_within_binomial_bounds() {
        for (p, model) in [(0.1, 0), (0.5, 1), (0.9, 2)] {
            let s = key(7, "s", "t").stream(model);
            let n = 100_000u64;
            let kept = (0..n).filter(|&i| s.bernoulli(i, p)).count() as f64;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((kept - n as f64 * p).abs() < 5.0 * sd, "p {p}: kept {kept}");
        }
        let s = key(7, "s", "t").stream(0);
        assert!((0..1000).all(|i| !s.bernoulli(i, 0.0) && s.bernoulli(i, 1.0)));
    }

    /// Fraction of agreeing keep decisions at p = 0.5 between two streams: independent
    /// streams agree on about half of the elements.
    fn agreement(a: Stream, b: Stream) -> f64 {
        let n = 20_000u64;
        (0..n)
            .filter(|&i| a.bernoulli(i, 0.5) == b.bernoulli(i, 0.5))
            .count() as f64
            / n as f64
    }

    #[test]
    fn different_keys_give_independent_streams() {
        let base = key(1, "stage-a", "w");
        let variants = [
            key(2, "stage-a", "w").stream(0),
            key(1, "stage-b", "w").stream(0),
            key(1, "stage-a", "w2").stream(0),
            key(1, "stage-aw", "").stream(0),
            base.stream(1),
        ];
        let reference = base.stream(0);
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, reference, "variant {i} has the same stream key");
            let agree = agreement(reference, *v);
            // sd = sqrt(0.25/20000) ≈ 0.0035; 5 sd.
            assert!(
                (agree - 0.5).abs() < 0.018,
                "variant {i}: agreement {agree}"
            );
        }
    }

    #[test]
    fn same_key_gives_same_bits_and_adjacent_elements_are_uncorrelated() {
        let a = key(9, "x", "y").stream(3);
        let b = key(9, "x", "y").stream(3);
        assert!((0..1000).all(|i| a.bits(i) == b.bits(i)));
        // Lag-1 correlation of uniforms.
        let n = 50_000u64;
        let (mut sxy, mut sx, mut sxx) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let (x, y) = (a.uniform(i), a.uniform(i + 1));
            sxy += x * y;
            sx += x;
            sxx += x * x;
        }
        let nf = n as f64;
        let cov = sxy / nf - (sx / nf).powi(2);
        let var = sxx / nf - (sx / nf).powi(2);
        assert!((cov / var).abs() < 0.025, "lag-1 correlation {}", cov / var);
    }

    #[test]
    fn consecutive_draws_are_the_draws_one_by_one() {
        let s = key(5, "stage", "model.embed_tokens.weight").stream(2);
        // the counter wraps around 2⁶⁴ inside the last run
        for first in [0, 1, 896 * 7, u64::MAX / 3, u64::MAX - 40] {
            let mut out = vec![0u64; 131];
            s.draws53(first, &mut out);
            for (i, &d) in out.iter().enumerate() {
                assert_eq!(
                    d,
                    s.draw53(first.wrapping_add(i as u64)),
                    "first {first} i {i}"
                );
            }
        }
    }

    #[test]
    fn integer_threshold_gives_the_bernoulli_answer() {
        let s = key(3, "s", "t").stream(1);
        let mut probs = vec![
            0.0,
            -0.0,
            -1.0,
            1.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            1e-300,
            0.5,
        ];
        // f32 probabilities as DELLA computes them, and ones that land on a draw exactly
        for i in 0..2000u64 {
            probs.push((0.3f32 + (i as f32 / 1999.0) * 0.2) as f64);
            probs.push(s.uniform(i));
            probs.push(s.uniform(i) + 1e-17);
        }
        for &p in &probs {
            let t = threshold(p);
            for i in 0..300u64 {
                assert_eq!(s.keep(i, t), s.bernoulli(i, p), "p {p} index {i}");
            }
        }
        for i in 0..2000u64 {
            let p = s.uniform(i);
            assert!(!s.keep(i, threshold(p)) && s.keep(i, threshold(p + 1e-16)));
        }
    }

    #[test]
    fn key_is_pinned() {
        // The key derivation is part of the reproducibility promise: a change here changes
        // every DARE/DELLA merge ever made with lamarck. Update only with a changelog entry.
        assert_eq!(key(0, "", "").key(), 0x33fe_8bd4_f9c5_7863);
        let s = key(1234, "stage", "model.embed_tokens.weight").stream(2);
        assert_eq!(s.bits(99), 0xa5aa_ebd0_27bd_a969);
        assert_eq!(s.uniform(5), 0.23481158956043102);
        assert_ne!(key(0, "a", "").key(), key(0, "", "a").key());
    }
}
