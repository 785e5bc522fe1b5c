use super::*;
use crate::merge::rng::RngKey;

fn stream() -> Stream {
    RngKey::new(1, "s", "t").stream(0)
}

fn args(density: f64, rescale: Rescale) -> SparsifyArgs {
    SparsifyArgs {
        density,
        gamma: 0.0,
        epsilon: 0.0,
        rescale,
        dtype: DType::F32,
        row_len: 1,
    }
}

#[test]
fn top_k_resolves_ties_like_torch() {
    // n ≤ 16: torch's introsort is a plain insertion sort, i.e. stable.
    let x = [1.0, -3.0, 2.0, 3.0, -2.0, 0.5];
    assert_eq!(top_k_mask(&x, 2), [false, true, false, true, false, false]);
    assert_eq!(top_k_mask(&x, 3), [false, true, true, true, false, false]);
    assert_eq!(top_k_mask(&x, 0), [false; 6]);
    assert_eq!(top_k_mask(&x, 9), [true; 6]);
}

#[test]
fn ascending_window_matches_torch_sort_positions() {
    // n ≤ 16: torch's order is the stable one.
    let x = [0.0f32, 2.0, -1.0, 2.0, 0.0, 1.0, -2.0, 3.0];
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].abs().total_cmp(&x[b].abs()).then(a.cmp(&b)));
    for start in 0..=x.len() {
        for end in start..=x.len() {
            let mut expected = vec![false; x.len()];
            for &i in &order[start..end] {
                expected[i] = true;
            }
            assert_eq!(
                ascending_window_mask(&x, start, end),
                expected,
                "{start}..{end}"
            );
        }
    }
}

#[test]
fn magnitude_keeps_floor_density_n_at_least_one_and_rescales_l1() {
    let mut d = vec![0.1, -0.4, 0.3, 0.2];
    sparsify(
        &mut d,
        Sparsifier::Magnitude,
        args(0.5, Rescale::None),
        stream(),
    );
    assert_eq!(d, [0.0, -0.4, 0.3, 0.0]);
    let mut d = vec![0.1, -0.4, 0.3, 0.2];
    sparsify(
        &mut d,
        Sparsifier::Magnitude,
        args(0.1, Rescale::None),
        stream(),
    );
    assert_eq!(d, [0.0, -0.4, 0.0, 0.0]);
    let mut d = vec![0.1, -0.4, 0.3, 0.2];
    sparsify(
        &mut d,
        Sparsifier::Magnitude,
        args(0.5, Rescale::L1),
        stream(),
    );
    // L1 before 1.0, after 0.7: factor 1/0.7.
    let f = (1.0f64 / 0.7) as f32;
    assert_eq!(d, [0.0, -0.4 * f, 0.3 * f, 0.0]);
    assert!((l1_norm(&d) - 1.0).abs() < 1e-6);
}

#[test]
fn density_one_is_identity_and_zero_clears() {
    for m in [
        Sparsifier::Magnitude,
        Sparsifier::Random,
        Sparsifier::MagnitudeOutliers,
        Sparsifier::DellaMagprune,
    ] {
        let mut d = vec![1.0, -2.0, 3.0];
        sparsify(&mut d, m, args(1.0, Rescale::L1), stream());
        assert_eq!(d, [1.0, -2.0, 3.0]);
        sparsify(&mut d, m, args(0.0, Rescale::L1), stream());
        assert_eq!(d, [0.0; 3]);
    }
}

#[test]
fn breadcrumbs_drops_top_gamma_and_bottom() {
    let x: Vec<f32> = (1..=10).map(|v| v as f32).collect();
    let mut d = x.clone();
    let a = SparsifyArgs {
        gamma: 0.2,
        ..args(0.5, Rescale::None)
    };
    sparsify(&mut d, Sparsifier::MagnitudeOutliers, a, stream());
    assert_eq!(d, [0., 0., 0., 4., 5., 6., 7., 8., 0., 0.]);
    // gamma·n < 1: keeps the top `target` (mergekit ≤ 0.1.4 zeroed everything here).
    let mut d = x.clone();
    sparsify(
        &mut d,
        Sparsifier::MagnitudeOutliers,
        args(0.3, Rescale::None),
        stream(),
    );
    assert_eq!(d, [0., 0., 0., 0., 0., 0., 0., 8., 9., 10.]);
}

#[test]
fn dare_keep_fraction_and_inverse_density() {
    let n = 100_000;
    let mut d = vec![1.0f32; n];
    sparsify(
        &mut d,
        Sparsifier::Random,
        args(0.3, Rescale::InverseProbability),
        stream(),
    );
    let kept = d.iter().filter(|&&v| v != 0.0).count() as f64;
    let sd = (n as f64 * 0.3 * 0.7).sqrt();
    assert!((kept - 0.3 * n as f64).abs() < 5.0 * sd);
    assert!(d.iter().all(|&v| v == 0.0 || v == (1.0f64 / 0.3) as f32));
}

#[test]
fn della_probabilities_ramp_per_row() {
    let d = [0.3, -0.1, 0.2, 5.0, 1.0, -2.0];
    let p = della_keep_probabilities(&d, 0.5, 0.2, 3);
    let expect = [0.7f32, 0.3, 0.5, 0.7, 0.3, 0.5];
    for (a, b) in p.iter().zip(expect) {
        assert!((a - b).abs() < 1e-6, "{p:?}");
    }
    // Ties (n ≤ 16, torch's order is stable): lower index ranks lower.
    let p = della_keep_probabilities(&[0.0, 0.0, 0.0], 0.5, 0.2, 3);
    assert!(p[0] < p[1] && p[1] < p[2]);
    assert_eq!(della_keep_probabilities(&[1.0], 0.4, 0.1, 1), [0.4]);
}

#[test]
fn selection_follows_torch_order_when_ties_straddle_the_boundary() {
    // Tie-heavy vector longer than 16: the boundary ties are resolved by the replayed
    // introsort, not by index.
    let x: Vec<f32> = (0..200)
        .map(|i| ((i * 37) % 7) as f32 * 0.5 - 1.5)
        .collect();
    let mags: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let desc = torch_sort::sort_indices(&mags, true);
    let asc = torch_sort::sort_indices(&mags, false);
    for k in [1, 37, 100, 150, 199] {
        let mut want = vec![false; x.len()];
        desc[..k].iter().for_each(|&i| want[i as usize] = true);
        assert_eq!(top_k_mask(&x, k), want, "k = {k}");
    }
    for (start, end) in [(10, 90), (0, 57), (120, 200), (33, 34)] {
        let mut want = vec![false; x.len()];
        asc[start..end]
            .iter()
            .for_each(|&i| want[i as usize] = true);
        assert_eq!(
            ascending_window_mask(&x, start, end),
            want,
            "{start}..{end}"
        );
    }
}

#[test]
fn reductions_do_not_depend_on_thread_count() {
    let xs: Vec<f32> = (0..300_000u64)
        .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
        .collect();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let four = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let a = one.install(|| (l1_norm(&xs), dot_f64(&xs, &xs)));
    let b = four.install(|| (l1_norm(&xs), dot_f64(&xs, &xs)));
    assert_eq!(a.0.to_bits(), b.0.to_bits());
    assert_eq!(a.1.to_bits(), b.1.to_bits());
}

/// The pair-based DELLA probabilities (one `torch_sort::sort_indices` per row): the
/// reference for [`della_keep_probabilities`].
fn della_reference(delta: &[f32], density: f64, epsilon: f64, row_len: usize) -> Vec<f32> {
    let row_len = row_len.max(1).min(delta.len().max(1));
    let (low, span) = ((density - epsilon) as f32, (2.0 * epsilon) as f32);
    let mut probs = vec![0f32; delta.len()];
    for (p_row, d_row) in probs.chunks_mut(row_len).zip(delta.chunks(row_len)) {
        let n = d_row.len();
        if n == 1 {
            p_row[0] = density as f32;
            continue;
        }
        let mags: Vec<f32> = d_row.iter().map(|x| x.abs()).collect();
        for (rank, &idx) in torch_sort::sort_indices(&mags, false).iter().enumerate() {
            p_row[idx as usize] = low + (rank as f32 / (n - 1) as f32) * span;
        }
    }
    probs
}

/// A seeded LCG's high bits: the random arrays of the `ops` tests (and of `bits` and
/// `torch_sort`).
pub(super) fn lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s >> 33
    }
}

#[test]
fn della_matches_the_pair_replay_on_every_key_path() {
    let mut next = lcg(3);
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<u32>>();
    // (tensor length, row length, value kind): 0 = few bf16 values (duplicates), 1 = all
    // distinct bf16, 2 = f32 with duplicates, 3 = all distinct f32, 4 = a NaN inside.
    let cases = [
        (4000, 100, 0),
        (4003, 100, 0),
        (1000, 17, 1),
        (3000, 1000, 1),
        (65_536, 65_536, 0),
        (4096, 16, 0),
        (2000, 1000, 2),
        (2000, 500, 3),
        (300, 30, 4),
        (7, 1, 0),
        (70_000, 70_000, 0),
        (70_000, 70_000, 1),
        (5000, 5000, 0),
    ];
    for (len, row_len, kind) in cases {
        let distinct = 1 + next() % 6;
        let palette: Vec<u32> = (0..distinct)
            .map(|_| (0x3c00 + next() as u32 % 0x800) << 16)
            .collect();
        let v: Vec<f32> = (0..len)
            .map(|i| {
                let sign = (next() as u32 & 1) << 31;
                let m = match kind {
                    0 => palette[next() as usize % palette.len()],
                    // Distinct within a row: a strictly increasing bf16 sequence, shuffled by sign only.
                    1 => (0x3000 + (i % row_len) as u32 * 7 % 0x4000) << 16,
                    2 => 0x3c00_0000 + next() as u32 % 50,
                    3 => 0x3c00_0000 + (i % row_len) as u32 * 13 + 1,
                    _ if i % 31 == 5 => 0x7fc0_0000,
                    _ => palette[next() as usize % palette.len()],
                };
                f32::from_bits(sign | m)
            })
            .collect();
        for (density, epsilon) in [(0.5, 0.2), (0.3, 0.05)] {
            let got = bits(della_keep_probabilities(&v, density, epsilon, row_len));
            let want = bits(della_reference(&v, density, epsilon, row_len));
            let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
            assert_eq!(first_diff, None, "len {len} row {row_len} kind {kind}");
            assert_eq!(got.len(), want.len());
        }
    }
}

#[test]
fn della_keep_bits_are_the_draws_against_the_replayed_ranks() {
    // Each element is kept when its draw is below the probability its rank in torch's
    // order gives it (the pair replay), except +0.0, which is reported dropped.
    let mut next = lcg(11);
    let stream = crate::merge::rng::RngKey::new(7, "stage", "t.weight").stream(1);
    // (tensor length, row length, kind): 0 = few bf16 values, 1 = bf16 spread over a
    // few octaves (groups of a few), 2 = mostly +0.0, 3 = zeros of both signs, 4 = f32
    // values with duplicates, 5 = a NaN inside, 6 = bf16 over the whole range (far wider
    // than a row: the ranked path), 7 = mostly +0.0 with tiny and large values.
    let cases = [
        (4000, 100, 0),
        (9000, 896, 1),
        (8960, 896, 2),
        (3000, 300, 3),
        (2000, 1000, 4),
        (300, 30, 5),
        (70_000, 70_000, 1),
        (7, 1, 1),
        (1000, 17, 2),
        (3000, 100, 6),
        (4864, 4864, 7),
    ];
    for (len, row_len, kind) in cases {
        let palette: Vec<u32> = (0..1 + next() % 6)
            .map(|_| (0x3c00 + next() as u32 % 0x800) << 16)
            .collect();
        let v: Vec<f32> = (0..len)
            .map(|i| {
                let sign = (next() as u32 & 1) << 31;
                let spread = (120 + next() as u32 % 4) << 23 | (next() as u32 % 128) << 16;
                let m = match kind {
                    0 => palette[next() as usize % palette.len()],
                    1 => spread,
                    2 if next() % 10 != 0 => return 0.0,
                    2 => spread,
                    3 if next() % 3 == 0 => 0,
                    3 => palette[next() as usize % palette.len()],
                    4 => 0x3c00_0000 + next() as u32 % 50,
                    5 if i % 31 == 5 => 0x7fc0_0000,
                    6 => (next() as u32 % 0x7f80) << 16,
                    7 if next() % 4 != 0 => return 0.0,
                    7 => [0x0080 << 16, spread, 0x7f00 << 16][next() as usize % 3],
                    _ => palette[next() as usize % palette.len()],
                };
                f32::from_bits(sign | m)
            })
            .collect();
        let settings = [
            (0.5, 0.1, 0),
            (0.3, 0.25, 640),
            (0.6, 0.0, 64),
            (0.5, -0.2, 0),
        ];
        for (density, epsilon, offset) in settings {
            let p = della_reference(&v, density, epsilon, row_len);
            let got = della_keep_bits(&v, density, epsilon, row_len, stream, offset);
            let want = |i: usize| {
                v[i].to_bits() != 0 && stream.bernoulli((offset + i) as u64, p[i] as f64)
            };
            let first_diff = (0..len).position(|i| got.get(i) != want(i));
            assert_eq!(
                first_diff, None,
                "len {len} row {row_len} kind {kind} ε {epsilon}"
            );
        }
    }
}

#[test]
fn masked_l1_sums_are_each_chunks_own_ordered_sums() {
    // 13 whole chunks (8 + 4 + 1 interleaved) and a part, from a mask offset of 3 words
    let mut next = lcg(5);
    let n = 13 * CHUNK + 1000;
    let d: Vec<f32> = (0..n)
        .map(|_| (next() % 200_001) as f32 / 7919.0 - 12.5)
        .collect();
    let first = 192;
    let flags: Vec<bool> = (0..first + n).map(|_| next() % 3 != 0).collect();
    let keep = Bits::from_fn(first + n, |i| flags[i]);
    let (before, after) = masked_l1_sums(&d, &keep, first);
    let (mut want_b, mut want_a) = (Vec::new(), Vec::new());
    for (c, x) in d.chunks(CHUNK).enumerate() {
        want_b.push(l1_norm(x));
        let kept: Vec<f32> = (x.iter().enumerate())
            .map(|(j, &v)| {
                if keep.get(first + c * CHUNK + j) {
                    v
                } else {
                    0.0
                }
            })
            .collect();
        want_a.push(l1_norm(&kept));
    }
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&before), bits(&want_b));
    assert_eq!(bits(&after), bits(&want_a));
}

#[test]
fn chunk_sums_each_are_each_chunks_own_ordered_sums() {
    // 5 whole chunks (two pairs and one alone) and a part; 1 to 5 vectors, both dtypes
    let mut next = lcg(11);
    let n = 5 * CHUNK + 777;
    let vectors: Vec<Vec<f32>> = (0..5)
        .map(|_| {
            (0..n)
                .map(|_| DType::BF16.round((next() % 200_001) as f32 / 7919.0 - 12.5))
                .collect()
        })
        .collect();
    for dtype in [DType::F32, DType::BF16] {
        for k in 1..=5 {
            let ds: Vec<&[f32]> = vectors[..k].iter().map(|v| &v[..]).collect();
            let got = chunk_sums_each(&ds, dtype);
            let want: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK))
                .map(|c| {
                    let x: Vec<&[f32]> = ds
                        .iter()
                        .map(|d| &d[c * CHUNK..((c + 1) * CHUNK).min(n)])
                        .collect();
                    let mut sums: Vec<f64> = x
                        .iter()
                        .map(|v| v.iter().map(|&a| a as f64 * a as f64).sum())
                        .collect();
                    for i in 0..k {
                        for j in i + 1..k {
                            // f32 keeps the product unrounded (in f64); others round it
                            let r = |p: f32| dtype.round(p) as f64;
                            sums.push(match dtype {
                                DType::F32 => x[i]
                                    .iter()
                                    .zip(x[j])
                                    .map(|(&a, &b)| a as f64 * b as f64)
                                    .sum(),
                                _ => x[i].iter().zip(x[j]).map(|(&a, &b)| r(a * b)).sum(),
                            });
                        }
                    }
                    sums
                })
                .collect();
            let bits = |v: &[Vec<f64>]| {
                v.iter()
                    .map(|s| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&got), bits(&want), "{k} vectors, {dtype:?}");
        }
    }
}
