//! Sums of squares and pairwise products over one reduction chunk, in f64 and in element
//! order (model_stock's ratio, slerp's angle).
use super::{Bits, CHUNK};
use crate::model::dtype::{wide_kernel, Rounding};
use crate::model::DType;

wide_kernel! {
    /// The sums of one stretch of at most [`CHUNK`](super::CHUNK) elements of vectors `ds`
    /// (the same stretch of each): Σ dᵢ² per vector, then Σ r(dᵢ·dⱼ) per pair i < j (`r`
    /// rounds each product to the compute dtype, as mergekit's elementwise product does; f32
    /// leaves it unrounded), each in f64 in element order. model_stock's ratio and slerp's
    /// norms and angle are made of them.
    pub fn chunk_sums(ds: &[&[f32]], dtype: DType) -> Vec<f64> {
        match ds.len() {
            2 => fused_sums::<2>(ds, dtype),
            3 => fused_sums::<3>(ds, dtype),
            4 => fused_sums::<4>(ds, dtype),
            _ => separate_sums(ds, dtype),
        }
    }
}

/// [`chunk_sums`] for `K` ≤ 4 models: every sum keeps its own element order (the same bits
/// as [`separate_sums`]). Per stretch of [`SUMS_SUB`] elements, the terms (squares,
/// rounded products) are computed a whole row at a time, which vectorises; then they are
/// added in element order, the addition chains of all sums interleaved.
#[inline(always)]
fn fused_sums<const K: usize>(ds: &[&[f32]], dtype: DType) -> Vec<f64> {
    #[inline(always)]
    fn run<const K: usize>(ds: &[&[f32]], product: impl Fn(f32, f32) -> f64) -> Vec<f64> {
        let n = ds[0].len();
        let ds: [&[f32]; K] = std::array::from_fn(|i| &ds[i][..n]);
        // the sums: K squares, then the pairs i < j in order
        let m = K + K * (K - 1) / 2;
        let mut terms = [[0f64; SUMS_SUB]; 10];
        // the start value of `Sum for f64`, so each sum equals its own `.sum()`
        let mut sums = [std::iter::empty::<f64>().sum::<f64>(); 10];
        for s in (0..n).step_by(SUMS_SUB) {
            let len = SUMS_SUB.min(n - s);
            let x: [&[f32]; K] = std::array::from_fn(|i| &ds[i][s..s + len]);
            let mut t = 0;
            for x in x {
                for (o, &v) in terms[t][..len].iter_mut().zip(x) {
                    *o = v as f64 * v as f64;
                }
                t += 1;
            }
            for i in 0..K {
                for j in i + 1..K {
                    for ((o, &a), &c) in terms[t][..len].iter_mut().zip(x[i]).zip(x[j]) {
                        *o = product(a, c);
                    }
                    t += 1;
                }
            }
            for e in 0..len {
                for (sum, terms) in sums[..m].iter_mut().zip(&terms) {
                    *sum += terms[e];
                }
            }
        }
        sums[..m].to_vec()
    }
    debug_assert!((2..=4).contains(&K));
    match dtype {
        DType::F32 => run::<K>(ds, |a, c| a as f64 * c as f64),
        _ => crate::model::dtype::with_rounding!(dtype, R => {
            run::<K>(ds, |a, c| R::round(a * c) as f64)
        }),
    }
}

/// Elements per stretch of [`fused_sums`] (its term rows stay in the L1 cache).
const SUMS_SUB: usize = 256;

wide_kernel! {
    /// [`chunk_sums`] of each [`CHUNK`](super::CHUNK)-long stretch of `ds` in order (the
    /// last may be shorter): the same bits. For up to four vectors, two whole chunks at a
    /// time: each sum of the two chunks is a pair of vector lanes, so one vector addition
    /// advances two chains (one chunk's chains alone wait on the addition's latency).
    pub fn chunk_sums_each(ds: &[&[f32]], dtype: DType) -> Vec<Vec<f64>> {
        let n = ds.first().map_or(0, |d| d.len());
        let mut out = Vec::with_capacity(n.div_ceil(CHUNK));
        let pairs = match ds.len() {
            2..=4 => n / (2 * CHUNK),
            _ => 0,
        };
        for p in 0..pairs {
            let two: Vec<&[f32]> = ds.iter().map(|d| &d[2 * p * CHUNK..2 * (p + 1) * CHUNK]).collect();
            out.extend(match ds.len() {
                2 => paired_sums::<2>(&two, dtype),
                3 => paired_sums::<3>(&two, dtype),
                _ => paired_sums::<4>(&two, dtype),
            });
        }
        for c in (2 * pairs * CHUNK..n).step_by(CHUNK) {
            let one: Vec<&[f32]> = ds.iter().map(|d| &d[c..(c + CHUNK).min(n)]).collect();
            out.push(match ds.len() {
                2 => fused_sums::<2>(&one, dtype),
                3 => fused_sums::<3>(&one, dtype),
                4 => fused_sums::<4>(&one, dtype),
                _ => separate_sums(&one, dtype),
            });
        }
        out
    }
}

/// [`fused_sums`] of two whole chunks of `K` vectors (`ds`: the two chunks of each, one
/// after the other): element `e` of both chunks at once, lane `l` of every sum chunk `l`'s
/// chain, so each lane adds its chunk's terms in element order (the same bits).
#[inline(always)]
fn paired_sums<const K: usize>(ds: &[&[f32]], dtype: DType) -> [Vec<f64>; 2] {
    #[inline(always)]
    fn run<const K: usize>(ds: &[&[f32]], product: impl Fn(f32, f32) -> f64) -> [Vec<f64>; 2] {
        let ds: [[&[f32]; 2]; K] = std::array::from_fn(|i| {
            let (a, b) = ds[i].split_at(CHUNK);
            [a, &b[..CHUNK]]
        });
        let m = K + K * (K - 1) / 2;
        let start = std::iter::empty::<f64>().sum::<f64>();
        let mut sums = [[start; 2]; 10];
        // (element e of 2K slices at once: an index, not an iterator per slice)
        #[allow(clippy::needless_range_loop)]
        for e in 0..CHUNK {
            let x: [[f32; 2]; K] = std::array::from_fn(|i| [ds[i][0][e], ds[i][1][e]]);
            for i in 0..K {
                for l in 0..2 {
                    sums[i][l] += x[i][l] as f64 * x[i][l] as f64;
                }
            }
            let mut t = K;
            for i in 0..K {
                for j in i + 1..K {
                    for l in 0..2 {
                        sums[t][l] += product(x[i][l], x[j][l]);
                    }
                    t += 1;
                }
            }
        }
        std::array::from_fn(|l| sums[..m].iter().map(|s| s[l]).collect())
    }
    match dtype {
        DType::F32 => run::<K>(ds, |a, c| a as f64 * c as f64),
        _ => crate::model::dtype::with_rounding!(dtype, R => {
            run::<K>(ds, |a, c| R::round(a * c) as f64)
        }),
    }
}

/// [`chunk_sums`], one sum after the other (any number of models).
#[inline(always)]
fn separate_sums(ds: &[&[f32]], dtype: DType) -> Vec<f64> {
    let mut out: Vec<f64> = ds
        .iter()
        .map(|d| d.iter().map(|&x| x as f64 * x as f64).sum::<f64>())
        .collect();
    for i in 0..ds.len() {
        for j in i + 1..ds.len() {
            let (a, c) = (ds[i], ds[j]);
            out.push(match dtype {
                DType::F32 => a.iter().zip(c).map(|(&a, &c)| a as f64 * c as f64).sum(),
                _ => crate::model::dtype::with_rounding!(dtype, R => {
                    a.iter().zip(c).map(|(&a, &c)| R::round(a * c) as f64).sum::<f64>()
                }),
            });
        }
    }
    out
}

wide_kernel! {
    /// L1 norms before and after a mask, per [`CHUNK`](super::CHUNK) of `d` (which starts
    /// on a chunk boundary): (Σ|dᵢ|, Σ|dᵢ| over the `i` whose bit `first + i` of `keep` is
    /// set), each in f64 in element order from the start value of `Sum for f64`, as
    /// [`l1_norm`](super::l1_norm) sums a tensor before and after its other elements were
    /// set to 0; `first` is a multiple of 64. Up to eight whole chunks at a time, their addition chains interleaved (each keeps its
    /// own order, so the bits are those of one chunk after the other).
    pub fn masked_l1_sums(d: &[f32], keep: &Bits, first: usize) -> (Vec<f64>, Vec<f64>) {
        assert!(first.is_multiple_of(64), "masked_l1_sums: mask offset {first} is not a whole word");
        let chunks = d.len().div_ceil(CHUNK);
        let mut sums = (Vec::with_capacity(chunks), Vec::with_capacity(chunks));
        let full = d.len() / CHUNK;
        let mut c = 0;
        while c < full {
            c += match full - c {
                L1_LANES.. => interleave::<L1_LANES>(d, c, first, keep, &mut sums),
                4.. => interleave::<4>(d, c, first, keep, &mut sums),
                2.. => interleave::<2>(d, c, first, keep, &mut sums),
                _ => interleave::<1>(d, c, first, keep, &mut sums),
            };
        }
        if full < chunks {
            let x = &d[full * CHUNK..];
            let ([b], [a]) = interleaved_l1::<1>([x], [first + full * CHUNK], keep);
            sums.0.push(b);
            sums.1.push(a);
        }
        sums
    }
}

/// Most chunks [`masked_l1_sums`] sums at once (callers splitting a tensor into parallel
/// jobs use multiples of `L1_LANES` chunks, so that every job interleaves fully).
pub const L1_LANES: usize = 8;

/// [`masked_l1_sums`] of the `L` whole chunks from chunk `c`, pushed onto `sums`; returns `L`.
#[inline(always)]
fn interleave<const L: usize>(
    d: &[f32],
    c: usize,
    first: usize,
    keep: &Bits,
    sums: &mut (Vec<f64>, Vec<f64>),
) -> usize {
    let xs = std::array::from_fn(|l| &d[(c + l) * CHUNK..(c + l + 1) * CHUNK]);
    let at = std::array::from_fn(|l| first + (c + l) * CHUNK);
    let (b, a) = interleaved_l1::<L>(xs, at, keep);
    sums.0.extend(b);
    sums.1.extend(a);
    L
}

/// [`masked_l1_sums`] of `L` stretches of equal length, stretch `l`'s element `e` having
/// mask bit `at[l] + e` (`at[l]` a multiple of 64): the terms a row of [`SUMS_SUB`] at a
/// time, then the `2L` chains.
#[inline(always)]
fn interleaved_l1<const L: usize>(
    xs: [&[f32]; L],
    at: [usize; L],
    keep: &Bits,
) -> ([f64; L], [f64; L]) {
    let n = xs[0].len();
    let start = std::iter::empty::<f64>().sum::<f64>();
    let (mut before, mut after) = ([start; L], [start; L]);
    let mut all = [[0f64; SUMS_SUB]; L];
    let mut kept = [[0f64; SUMS_SUB]; L];
    for s in (0..n).step_by(SUMS_SUB) {
        let len = SUMS_SUB.min(n - s);
        for l in 0..L {
            let x = &xs[l][s..s + len];
            let at = at[l] + s;
            let terms = all[l][..len]
                .chunks_mut(64)
                .zip(kept[l][..len].chunks_mut(64));
            for (w, ((m, k), x)) in terms.zip(x.chunks(64)).enumerate() {
                let word = keep.word(at / 64 + w);
                for (e, ((m, k), x)) in m.iter_mut().zip(k).zip(x).enumerate() {
                    let v = x.abs() as f64;
                    // all ones when kept (v), else zero (+0.0): a select without a branch
                    let bit = word >> e & 1;
                    *m = v;
                    *k = f64::from_bits(v.to_bits() & bit.wrapping_neg());
                }
            }
        }
        for e in 0..len {
            for l in 0..L {
                before[l] += all[l][e];
                after[l] += kept[l][e];
            }
        }
    }
    (before, after)
}
