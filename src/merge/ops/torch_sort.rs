//! torch's CPU sort order, reproduced: libstdc++'s `std::sort` (introsort) on (value, index)
//! pairs.
//!
//! mergekit selects magnitudes with `torch.argsort` / `torch.sort` (`stable=False`). On CPU,
//! torch copies the values, fills the indices with 0..n and runs `std::sort` on the pairs,
//! comparing values only, so the order among *equal* values is whatever libstdc++'s
//! introsort leaves — neither index order nor random. With bf16 task vectors, whose
//! magnitudes are small multiples of the base's ulp, such ties at the TIES/breadcrumbs
//! threshold are common, and which tied elements survive changes the merged tensor. This
//! module replays the same algorithm step by step (median-of-three pivot at
//! `first+1, mid, last−1`, unguarded partition, depth limit `2·⌊log₂ n⌋` with heapsort
//! fallback, final insertion sort with threshold 16), so lamarck keeps exactly the elements
//! mergekit keeps. Verified against torch 2.15 on tie-heavy vectors
//! (`tests/kernels_golden.rs`).
//!
//! The sorter is generic over the element (a (value, index) pair, or one integer packing
//! both, or a tagged magnitude) and its comparator; only the partition's scans are
//! organised differently (a block at a time, without branches), with the same swaps, and
//! the closing insertion sort runs on each final block as soon as that block is final.

const THRESHOLD: usize = 16;
/// Block length of the partition's branch-free scans (one u64 mask of stops).
const BLOCK: usize = 64;

/// Bit `i` set when `stop(&xs[i])` (`xs.len() ≤ 64`); a full block is a fixed-length loop
/// the compiler turns into vector compares.
#[inline(always)]
fn stop_mask<T>(xs: &[T], stop: impl Fn(&T) -> bool) -> u64 {
    if let Ok(block) = <&[T; BLOCK]>::try_from(xs) {
        let mut flags = [0u8; BLOCK];
        for (f, x) in flags.iter_mut().zip(block) {
            *f = u8::from(stop(x));
        }
        super::bits::pack64(flags)
    } else {
        let mut m = 0u64;
        for (i, x) in xs.iter().enumerate() {
            m |= u64::from(stop(x)) << i;
        }
        m
    }
}

/// libstdc++'s introsort over `a`, ordered by `less` (a strict weak order on whole
/// elements; torch's comparator looks at the value only, so ties keep whatever order the
/// data movement leaves).
struct Sorter<'a, T: Copy, F: Fn(&T, &T) -> bool> {
    a: &'a mut [T],
    less: F,
}

impl<T: Copy, F: Fn(&T, &T) -> bool> Sorter<'_, T, F> {
    #[inline(always)]
    fn comp(&self, i: usize, j: usize) -> bool {
        (self.less)(&self.a[i], &self.a[j])
    }

    #[inline(always)]
    fn move_median_to_first(&mut self, result: usize, x: usize, y: usize, z: usize) {
        let pick = if self.comp(x, y) {
            if self.comp(y, z) {
                y
            } else if self.comp(x, z) {
                z
            } else {
                x
            }
        } else if self.comp(x, z) {
            x
        } else if self.comp(y, z) {
            z
        } else {
            y
        };
        self.a.swap(result, pick);
    }

    /// libstdc++'s `__unguarded_partition` of `[first, last)` around `a[pivot]` (which lies
    /// outside the range and does not move), with the same result, faster.
    ///
    /// Hoare's scans stop at the positions that hold, *originally*, an element `x` with
    /// `!(x < pivot)` (left, ascending) and `!(pivot < x)` (right, descending), and swap the
    /// j-th left stop with the j-th right stop while the left one is below the right one:
    /// a swap only touches positions both scans have passed, so the stops up to the
    /// crossing are those of the original range. While the unscanned middle is wide, the
    /// stops are therefore collected a block at a time as bit masks, without branches on
    /// the comparisons, and swapped pairwise in order (BlockQuicksort). After the last of
    /// those swaps, Hoare's loop stands at `(first, last)` with every position between
    /// them as it was: the same partition of that narrower range (its guards are the
    /// swapped elements at `first − 1` and `last`), which [`Self::narrow_partition`]
    /// finishes once it fits one mask.
    #[inline(always)]
    fn unguarded_partition(&mut self, mut first: usize, mut last: usize, pivot: usize) -> usize {
        let p = self.a[pivot];
        loop {
            if last - first < BLOCK - 1 {
                return self.narrow_partition(first, last, &p);
            }
            // Unscanned positions: [ls, rs). Pending stops as bit masks, each taken lowest
            // bit first (in its scan's order): left stops at `lbase + bit`, right stops at
            // `rtop − bit`.
            let (mut ls, mut rs) = (first, last);
            let (mut lm, mut lbase) = (0u64, 0usize);
            let (mut rm, mut rtop) = (0u64, 0usize);
            let mut swapped = false;
            loop {
                // Full blocks while the middle is wide, then what is left of it, shared.
                let gap = rs - ls;
                let (lb, rb) = match (lm == 0, rm == 0) {
                    (true, true) => ((gap / 2).min(BLOCK), (gap - gap / 2).min(BLOCK)),
                    (true, false) => (gap.min(BLOCK), 0),
                    (false, _) => (0, gap.min(BLOCK)),
                };
                if lb + rb == 0 {
                    break;
                }
                if lb > 0 {
                    lbase = ls;
                    lm = self.mask_up(ls, lb, |x| !(self.less)(x, &p));
                    ls += lb;
                }
                if rb > 0 {
                    rtop = rs - 1;
                    rm = self
                        .mask_down(rs, rb, |x| !(self.less)(&p, x))
                        .reverse_bits()
                        >> (BLOCK - rb);
                    rs -= rb;
                }
                // (each mask's only loop-carried step is clearing its lowest bit)
                let n = lm.count_ones().min(rm.count_ones());
                for _ in 0..n {
                    let l = lbase + lm.trailing_zeros() as usize;
                    let r = rtop - rm.trailing_zeros() as usize;
                    lm &= lm - 1;
                    rm &= rm - 1;
                    self.a.swap(l, r);
                    (first, last) = (l + 1, r);
                }
                swapped |= n > 0;
            }
            if !swapped {
                // Every stop seen and none paired: Hoare's first scans cross at once.
                return self.hoare_partition(first, last, pivot);
            }
        }
    }

    /// The Hoare loop of `[first, last)` (fewer than 63 positions, `first ≥ 1`) around
    /// value `p`, the element at `first − 1` being ≤ p and the one at `last` (if the scan
    /// gets there) ≥ p. As in the block loop, the k-th left stop `l_k` (ascending) swaps
    /// with the k-th right stop `r_k` (descending) of the original range while
    /// `l_k < r_k`; at the first k where not, the left scan stops at `l_k`, or at `r_{k−1}`
    /// (the last element swapped to the right, ≥ p) if that comes first. The guards stand
    /// in for missing stops: `last` (bit m + 1) on the left, `first − 1` (bit 0) on the
    /// right.
    #[inline(always)]
    fn narrow_partition(&mut self, first: usize, last: usize, p: &T) -> usize {
        let base = first - 1;
        let m = last - first;
        // bit i ↔ position base + i for the left stops; bit i ↔ position last − i for the
        // right stops, so that both are taken lowest bit first.
        let mut lm = (self.mask_up(first, m, |x| !(self.less)(x, p)) << 1) | 1 << (m + 1);
        let rfwd = (self.mask_up(first, m, |x| !(self.less)(p, x)) << 1) | 1;
        let mut rm = rfwd.reverse_bits() >> (BLOCK - 2 - m);
        let mut prev_r = m + 1;
        loop {
            let l = lm.trailing_zeros() as usize;
            let r = m + 1 - rm.trailing_zeros() as usize;
            if l >= r {
                return base + l.min(prev_r);
            }
            self.a.swap(base + l, base + r);
            lm &= lm - 1;
            rm &= rm - 1;
            prev_r = r;
        }
    }

    /// Stop mask of `a[from..from + len]` (`len ≤ 64`): bit i for position `from + i`.
    /// A short block reads a whole 64-element window where the slice allows it (one fixed
    /// loop, vectorised) and keeps its low bits.
    #[inline(always)]
    fn mask_up(&self, from: usize, len: usize, stop: impl Fn(&T) -> bool) -> u64 {
        if len < BLOCK && from + BLOCK <= self.a.len() {
            stop_mask(&self.a[from..from + BLOCK], stop) & ((1u64 << len) - 1)
        } else {
            stop_mask(&self.a[from..from + len], stop)
        }
    }

    /// Stop mask of `a[to − len..to]` (`len ≤ 64`): bit i for position `to − len + i`.
    #[inline(always)]
    fn mask_down(&self, to: usize, len: usize, stop: impl Fn(&T) -> bool) -> u64 {
        if len < BLOCK && to >= BLOCK {
            stop_mask(&self.a[to - BLOCK..to], stop) >> (BLOCK - len)
        } else {
            stop_mask(&self.a[to - len..to], stop)
        }
    }

    /// The plain loop of `__unguarded_partition`.
    fn hoare_partition(&mut self, mut first: usize, mut last: usize, pivot: usize) -> usize {
        loop {
            while self.comp(first, pivot) {
                first += 1;
            }
            last -= 1;
            while self.comp(pivot, last) {
                last -= 1;
            }
            if first >= last {
                return first;
            }
            self.a.swap(first, last);
            first += 1;
        }
    }

    fn adjust_heap(&mut self, first: usize, mut hole: usize, len: usize, value: T) {
        let top = hole;
        let mut child = hole;
        while child < (len - 1) / 2 {
            child = 2 * (child + 1);
            if self.comp(first + child, first + child - 1) {
                child -= 1;
            }
            self.a[first + hole] = self.a[first + child];
            hole = child;
        }
        if len & 1 == 0 && child == (len - 2) / 2 {
            child = 2 * (child + 1);
            self.a[first + hole] = self.a[first + child - 1];
            hole = child - 1;
        }
        // push_heap
        while hole > top {
            let parent = (hole - 1) / 2;
            if !(self.less)(&self.a[first + parent], &value) {
                break;
            }
            self.a[first + hole] = self.a[first + parent];
            hole = parent;
        }
        self.a[first + hole] = value;
    }

    fn heap_sort(&mut self, first: usize, mut last: usize) {
        let len = last - first;
        if len >= 2 {
            let mut parent = (len - 2) / 2;
            loop {
                let value = self.a[first + parent];
                self.adjust_heap(first, parent, len, value);
                if parent == 0 {
                    break;
                }
                parent -= 1;
            }
        }
        while last - first > 1 {
            last -= 1;
            let value = self.a[last];
            self.a[last] = self.a[first];
            self.adjust_heap(first, 0, last - first, value);
        }
    }

    /// A stable sort of `a[first..last]` (at most THRESHOLD elements): what the closing
    /// insertion sort does to one final block.
    #[inline(always)]
    fn small_stable_sort(&mut self, first: usize, last: usize) {
        if last - first < 2 {
            return;
        }
        debug_assert!(last - first <= THRESHOLD);
        for i in first + 1..last {
            let value = self.a[i];
            let mut hole = i;
            while hole > first && (self.less)(&value, &self.a[hole - 1]) {
                self.a[hole] = self.a[hole - 1];
                hole -= 1;
            }
            self.a[hole] = value;
        }
    }

    /// `__introsort_loop`, and then for each final block (≤ THRESHOLD elements) at once
    /// what std::sort's closing insertion sort does to it later: every block is ≤ the next,
    /// so that pass moves no element across a block edge and sorts each block stably, and
    /// nothing else touches a block once it is final.
    ///
    /// Restricted to the ranges `wanted(first, last)` accepts (the whole sort accepts every
    /// range), where `wanted` holds for every range that contains an accepted range: a
    /// range left alone keeps the same *set* of elements whatever its internal order, and
    /// an accepted range is processed exactly as the whole sort processes it (its contents
    /// depend only on the ranges that contain it, which are accepted too).
    ///
    /// A loop over a stack of ranges rather than a recursion, so that it inlines into the
    /// caller (a kernel compiled for wider vectors, see `wide_kernel!`): the ranges are
    /// disjoint, so the order they are processed in does not matter.
    #[inline(always)]
    fn introsort_where(
        &mut self,
        first: usize,
        last: usize,
        depth: u32,
        wanted: &impl Fn(usize, usize) -> bool,
    ) {
        // Pending ranges' depths strictly decrease up the stack: at most depth + 1.
        let mut pending = Vec::with_capacity(depth as usize + 1);
        pending.push((first, last, depth));
        while let Some((first, mut last, mut depth)) = pending.pop() {
            loop {
                if !wanted(first, last) {
                    break;
                }
                if last - first <= THRESHOLD {
                    // A final block: std::sort's closing insertion sort acts on it alone (no
                    // element crosses a block edge: every block is ≤ the next), stably.
                    self.small_stable_sort(first, last);
                    break;
                }
                if depth == 0 {
                    self.heap_sort(first, last);
                    break;
                }
                depth -= 1;
                let mid = first + (last - first) / 2;
                self.move_median_to_first(first, first + 1, mid, last - 1);
                let cut = self.unguarded_partition(first + 1, last, first);
                pending.push((cut, last, depth));
                last = cut;
            }
        }
    }

    fn sort(&mut self) {
        let n = self.a.len();
        if n < 2 {
            return;
        }
        // The closing insertion sort is done block by block inside.
        self.introsort_where(0, n, 2 * n.ilog2(), &|_, _| true);
    }
}

/// Sort `a` exactly as libstdc++'s `std::sort(a, less)` does (same comparisons, same moves).
/// `less` must be a strict weak order; elements it calls equal end up in the order the
/// introsort's data movement leaves, which is what torch's unstable CPU sort gives when the
/// elements are (value, index) pairs compared by value.
pub fn sort_by<T: Copy>(a: &mut [T], less: impl Fn(&T, &T) -> bool) {
    Sorter { a, less }.sort();
}

/// Reorder `a` as [`sort_by`] would, but only as far as needed for the *sets* between
/// consecutive `bounds` positions: afterwards `a[..b]` holds exactly the elements that
/// `sort_by` puts there, for every `b` in `bounds` (their order inside is unspecified).
/// Expected O(n): only the partitions of std::sort that straddle a boundary are replayed
/// (step for step), plus the closing insertion sort of the final blocks holding one.
#[inline(always)]
pub fn select_by<T: Copy>(a: &mut [T], less: impl Fn(&T, &T) -> bool, bounds: &[usize]) {
    let n = a.len();
    if n >= 2 {
        let straddled = |first: usize, last: usize| bounds.iter().any(|&b| first < b && b < last);
        Sorter { a, less }.introsort_where(0, n, 2 * n.ilog2(), &straddled);
    }
}

/// Reorder `a` as [`sort_by`] would, but only as far as needed for the positions in
/// `ranges` (half-open, ascending, disjoint): afterwards `a[q]` is what `sort_by` puts
/// there for every `q` inside one, and every other position holds an element that
/// `sort_by` puts outside them. Only the partitions of std::sort whose range overlaps one of
/// `ranges` are replayed (step for step), plus the final blocks that do.
#[inline(always)]
pub fn sort_ranges_by<T: Copy>(
    a: &mut [T],
    less: impl Fn(&T, &T) -> bool,
    ranges: &[(usize, usize)],
) {
    let n = a.len();
    if n >= 2 {
        let overlapped = |first: usize, last: usize| {
            let i = ranges.partition_point(|&(_, hi)| hi <= first);
            last - first >= 2 && ranges.get(i).is_some_and(|&(lo, _)| lo < last)
        };
        Sorter { a, less }.introsort_where(0, n, 2 * n.ilog2(), &overlapped);
    }
}

fn pairs(values: &[f32]) -> Vec<(f32, u32)> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, i as u32))
        .collect()
}

/// The permutation `torch.sort(values, descending, stable=False).indices` gives on CPU
/// (values without NaN).
pub fn sort_indices(values: &[f32], descending: bool) -> Vec<u32> {
    let mut pairs = pairs(values);
    if descending {
        sort_by(&mut pairs, |x, y| x.0 > y.0);
    } else {
        sort_by(&mut pairs, |x, y| x.0 < y.0);
    }
    pairs.into_iter().map(|(_, i)| i).collect()
}

/// Like [`sort_indices`], but only the *sets* of indices between consecutive `bounds`
/// positions are guaranteed (not their order inside): `result[..b]` holds exactly the
/// indices of `sort_indices(values, descending)[..b]` for every `b` in `bounds`. Expected
/// O(n) (a quickselect that replays only the partitions of std::sort that straddle a
/// boundary) instead of O(n log n).
pub fn select_indices(values: &[f32], descending: bool, bounds: &[usize]) -> Vec<u32> {
    let mut pairs = pairs(values);
    if descending {
        select_by(&mut pairs, |x, y| x.0 > y.0, bounds);
    } else {
        select_by(&mut pairs, |x, y| x.0 < y.0, bounds);
    }
    pairs.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::merge::ops::tests::lcg;

    /// libstdc++'s `std::sort` transcribed as it is (Hoare's loop, closing insertion sort):
    /// the reference the faster partition and block sort must move exactly like.
    fn reference_sort<T: Copy>(a: &mut [T], less: impl Fn(&T, &T) -> bool) {
        fn lp<T: Copy, F: Fn(&T, &T) -> bool>(
            s: &mut Sorter<T, F>,
            first: usize,
            mut last: usize,
            mut depth: u32,
        ) {
            while last - first > THRESHOLD {
                if depth == 0 {
                    s.heap_sort(first, last);
                    return;
                }
                depth -= 1;
                let mid = first + (last - first) / 2;
                s.move_median_to_first(first, first + 1, mid, last - 1);
                let cut = s.hoare_partition(first + 1, last, first);
                lp(s, cut, last, depth);
                last = cut;
            }
        }
        fn unguarded_linear_insert<T: Copy, F: Fn(&T, &T) -> bool>(
            s: &mut Sorter<T, F>,
            mut last: usize,
        ) {
            let value = s.a[last];
            let mut next = last - 1;
            while (s.less)(&value, &s.a[next]) {
                s.a[last] = s.a[next];
                last = next;
                next -= 1;
            }
            s.a[last] = value;
        }
        fn insertion_sort<T: Copy, F: Fn(&T, &T) -> bool>(
            s: &mut Sorter<T, F>,
            first: usize,
            last: usize,
        ) {
            for i in first + 1..last {
                if s.comp(i, first) {
                    let value = s.a[i];
                    s.a.copy_within(first..i, first + 1);
                    s.a[first] = value;
                } else {
                    unguarded_linear_insert(s, i);
                }
            }
        }
        let n = a.len();
        let mut s = Sorter { a, less };
        if n < 2 {
            return;
        }
        lp(&mut s, 0, n, 2 * n.ilog2());
        if n > THRESHOLD {
            insertion_sort(&mut s, 0, THRESHOLD);
            for i in THRESHOLD..n {
                unguarded_linear_insert(&mut s, i);
            }
        } else {
            insertion_sort(&mut s, 0, n);
        }
    }

    #[test]
    fn sorts_exactly_like_libstdcxx() {
        // Tie-heavy and nearly tie-free arrays of (value, index) keys packed in one u32,
        // both orders, sizes around the insertion-sort threshold and far above it.
        let mut next = lcg(9);
        for trial in 0..3000 {
            let n = (next() % if trial % 5 == 0 { 6000 } else { 300 }) as usize;
            let distinct = 1 + next() % [2, 7, 60, 1 << 15][trial % 4];
            let v: Vec<u32> = (0..n)
                .map(|i| (next() % distinct) as u32 * 65536 + i as u32)
                .collect();
            let descending = trial % 3 == 0;
            let less = |x: &u32, y: &u32| {
                if descending {
                    x >> 16 > y >> 16
                } else {
                    x >> 16 < y >> 16
                }
            };
            let (mut a, mut b) = (v.clone(), v.clone());
            sort_by(&mut a, less);
            reference_sort(&mut b, less);
            assert_eq!(a, b, "trial {trial} n {n} distinct {distinct}");
        }
    }

    #[test]
    fn matches_torch_on_a_tie_heavy_vector() {
        // torch 2.15 CPU: w = [1,2,2,1,2,0,1]*3; torch.argsort(w, descending=True) and
        // torch.sort(w).indices.
        let w: Vec<f32> = [1.0, 2.0, 2.0, 1.0, 2.0, 0.0, 1.0].repeat(3);
        assert_eq!(
            sort_indices(&w, true),
            [1, 2, 4, 18, 16, 8, 9, 15, 11, 20, 0, 17, 14, 13, 10, 7, 6, 3, 12, 5, 19]
        );
        assert_eq!(
            sort_indices(&w, false),
            [19, 5, 12, 10, 20, 17, 14, 13, 0, 7, 6, 3, 9, 8, 11, 4, 15, 16, 18, 2, 1]
        );
    }

    #[test]
    fn block_partition_moves_exactly_like_hoares_loop() {
        let mut next = lcg(5);
        for trial in 0..2000 {
            let n = 17 + (next() % if trial % 4 == 0 { 5000 } else { 700 }) as usize;
            let distinct = 1 + next() % if trial % 2 == 0 { 4 } else { 5000 };
            let v: Vec<u32> = (0..n).map(|_| (next() % distinct) as u32).collect();
            let descending = trial % 3 == 0;
            let less = |x: &u32, y: &u32| if descending { x > y } else { x < y };
            let (mut a, mut b) = (v.clone(), v.clone());
            let mut sa = Sorter { a: &mut a, less };
            sa.move_median_to_first(0, 1, n / 2, n - 1);
            let cut_a = sa.unguarded_partition(1, n, 0);
            let mut sb = Sorter { a: &mut b, less };
            sb.move_median_to_first(0, 1, n / 2, n - 1);
            let cut_b = sb.hoare_partition(1, n, 0);
            assert_eq!((cut_a, &a), (cut_b, &b), "n {n} distinct {distinct}");
        }
    }

    #[test]
    fn sorts() {
        let w: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 613) as f32).collect();
        let idx = sort_indices(&w, false);
        assert!(idx.windows(2).all(|p| w[p[0] as usize] <= w[p[1] as usize]));
        let mut seen = vec![false; w.len()];
        idx.iter().for_each(|&i| seen[i as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn selection_keeps_the_same_sets_as_the_full_sort() {
        // Tie-heavy vectors (few distinct values), sizes around the insertion-sort
        // threshold and far above it, boundaries anywhere including 0 and n.
        let mut next = lcg(1);
        let sorted = |v: &[u32]| {
            let mut v = v.to_vec();
            v.sort_unstable();
            v
        };
        for trial in 0..400 {
            let n = 1 + (next() % if trial % 10 == 0 { 5000 } else { 200 }) as usize;
            let distinct = 1 + next() % 12;
            let v: Vec<f32> = (0..n).map(|_| (next() % distinct) as f32 * 0.5).collect();
            for descending in [true, false] {
                let full = sort_indices(&v, descending);
                let a = next() as usize % (n + 1);
                let b = a + next() as usize % (n + 1 - a);
                let sel = select_indices(&v, descending, &[a, b]);
                assert_eq!(sorted(&sel[..a]), sorted(&full[..a]), "n {n} a {a}");
                assert_eq!(sorted(&sel[a..b]), sorted(&full[a..b]), "n {n} {a}..{b}");
            }
        }
    }

    #[test]
    fn ranges_get_exactly_the_full_sorts_elements() {
        // (value, index) keys compared by value, tie-heavy; up to three ranges anywhere.
        let mut next = lcg(5);
        for trial in 0..400 {
            let n = 1 + (next() % if trial % 10 == 0 { 5000 } else { 300 }) as usize;
            let distinct = 1 + next() % 12;
            let keys: Vec<u32> = (0..n as u32)
                .map(|i| (next() % distinct) as u32 * 65536 + i)
                .collect();
            let less = |a: &u32, b: &u32| a >> 16 < b >> 16;
            let mut full = keys.clone();
            sort_by(&mut full, less);
            let mut cuts: Vec<usize> = (0..6).map(|_| next() as usize % (n + 1)).collect();
            cuts.sort_unstable();
            let ranges: Vec<(usize, usize)> = cuts.chunks(2).map(|c| (c[0], c[1])).collect();
            let mut got = keys.clone();
            sort_ranges_by(&mut got, less, &ranges);
            let mut outside = (Vec::new(), Vec::new());
            for q in 0..n {
                if ranges.iter().any(|&(lo, hi)| lo <= q && q < hi) {
                    assert_eq!(got[q], full[q], "n {n} q {q} ranges {ranges:?}");
                } else {
                    outside.0.push(got[q]);
                    outside.1.push(full[q]);
                }
            }
            outside.0.sort_unstable();
            outside.1.sort_unstable();
            assert_eq!(outside.0, outside.1, "n {n} ranges {ranges:?}");
        }
    }
}
