//! Selection on small candidate sets: the k-th largest value, the top-p cut by
//! mass (a weighted quickselect, expected O(n)), and a streaming top-n for
//! log-probabilities. None of them sorts the whole set.

use std::cmp::Ordering;

/// Descending by value (total order; no NaN reaches here).
#[inline]
fn desc(a: f32, b: f32) -> Ordering {
    b.total_cmp(&a)
}

/// The k-th largest (1-based) of `vals`, reordering them. `k` is clamped to
/// `1..=len`; `vals` must be non-empty.
pub fn kth_largest(vals: &mut [f32], k: usize) -> f32 {
    let k = k.clamp(1, vals.len());
    let (_, v, _) = vals.select_nth_unstable_by(k - 1, |a, b| desc(*a, *b));
    *v
}

/// Top-p on a weighted set (docs/spec.md §3.5): the largest value `τ` whose set
/// `{v ≥ τ}` has weight ≥ `target`; ties at `τ` are all in. If even the whole
/// set falls short (rounding), its smallest value (keep everything).
/// Reorders `items` (value, weight); expected O(n).
pub fn mass_threshold(items: &mut [(f32, f64)], target: f64) -> f32 {
    mass_cut(items, target, f32::INFINITY)
}

/// [`mass_threshold`] over any ordered value (f64 keys for the extended
/// samplers); `none` is returned when the target is reached by nothing (a
/// target ≤ 0 on a set whose top group weighs 0).
pub fn mass_cut<T: Copy + PartialOrd>(items: &mut [(T, f64)], target: f64, none: T) -> T {
    debug_assert!(!items.is_empty());
    let mut lo = 0;
    let mut hi = items.len();
    // Weight of the values known to lie above items[lo..hi].
    let mut above = 0.0f64;
    let mut smallest = none;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        let n = hi - lo;
        if n == 0 {
            return smallest;
        }
        // Median of three pseudo-random picks keeps adversarial (sorted,
        // constant) inputs expected-linear.
        let mut pick = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            items[lo + (state % n as u64) as usize].0
        };
        let (a, b, c) = (pick(), pick(), pick());
        let pivot = if (a <= b) == (b <= c) {
            b
        } else if (b <= a) == (a <= c) {
            a
        } else {
            c
        };
        // Three-way partition of items[lo..hi]: [> pivot | == pivot | < pivot].
        let (mut gt, mut i, mut lt) = (lo, lo, hi);
        let (mut w_gt, mut w_eq) = (0.0f64, 0.0f64);
        while i < lt {
            let v = items[i].0;
            if v > pivot {
                w_gt += items[i].1;
                items.swap(gt, i);
                gt += 1;
                i += 1;
            } else if v < pivot {
                lt -= 1;
                items.swap(i, lt);
            } else {
                w_eq += items[i].1;
                i += 1;
            }
        }
        if above + w_gt >= target {
            hi = gt;
        } else if above + w_gt + w_eq >= target {
            return pivot;
        } else {
            above += w_gt + w_eq;
            smallest = pivot;
            lo = lt;
        }
    }
}

/// The n largest entries seen so far, descending, ties by lowest id (entries
/// arrive in id order, and an equal value never displaces an earlier one).
#[derive(Debug, Clone, Default)]
pub struct TopN {
    n: usize,
    items: Vec<(f32, u32)>,
}

impl TopN {
    pub fn reset(&mut self, n: usize) {
        self.n = n;
        self.items.clear();
    }

    /// Whether a value would enter the list.
    #[inline]
    pub fn wants(&self, v: f32) -> bool {
        self.n > 0 && (self.items.len() < self.n || v > self.items[self.items.len() - 1].0)
    }

    /// Inserts `(v, id)`; call only when `wants(v)`, with ids ascending.
    pub fn offer(&mut self, v: f32, id: u32) {
        // After every existing entry ≥ v: equal values keep id order.
        let pos = self.items.partition_point(|&(w, _)| w >= v);
        if self.items.len() == self.n {
            self.items.pop();
        }
        self.items.insert(pos, (v, id));
    }

    pub fn items(&self) -> &[(f32, u32)] {
        &self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference rule, by sorting: walk tie groups from the top until the
    /// mass reaches the target.
    fn by_sorting(items: &[(f32, f64)], target: f64) -> f32 {
        let mut s = items.to_vec();
        s.sort_by(|a, b| desc(a.0, b.0));
        let mut cum = 0.0;
        let mut j = 0;
        let mut tau = s[0].0;
        while j < s.len() {
            let v = s[j].0;
            while j < s.len() && s[j].0 == v {
                cum += s[j].1;
                j += 1;
            }
            tau = v;
            if cum >= target {
                break;
            }
        }
        tau
    }

    #[test]
    fn mass_threshold_matches_the_sorting_rule() {
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for case in 0..400 {
            let n = 1 + (next() % 300) as usize;
            // Few distinct values in some cases, to exercise ties.
            let distinct = 1 + next() % if case % 3 == 0 { 5 } else { 1000 };
            let items: Vec<(f32, f64)> = (0..n)
                .map(|_| {
                    let v = (next() % distinct) as f32 * 0.25;
                    (v, (v as f64 / 3.0).exp())
                })
                .collect();
            let total: f64 = items.iter().map(|i| i.1).sum();
            // (p = 1 exactly is left out: both sides then hinge on summation order.)
            for p in [0.0001, 0.3, 0.9, 0.999, 1.5] {
                let target = p * total;
                let want = by_sorting(&items, target);
                let got = mass_threshold(&mut items.clone(), target);
                assert_eq!(got, want, "case {case} n {n} p {p}");
            }
        }
    }

    #[test]
    fn kth_largest_counts_ties() {
        let mut v = vec![3.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(kth_largest(&mut v, 1), 5.0);
        assert_eq!(kth_largest(&mut v, 2), 3.0);
        assert_eq!(kth_largest(&mut v, 3), 3.0);
        assert_eq!(kth_largest(&mut v, 4), 2.0);
        assert_eq!(kth_largest(&mut v, 99), 1.0);
    }

    #[test]
    fn top_n_keeps_lowest_ids_among_ties() {
        let mut t = TopN::default();
        t.reset(3);
        for (id, v) in [1.0f32, 5.0, 5.0, 2.0, 5.0, 7.0].iter().enumerate() {
            if t.wants(*v) {
                t.offer(*v, id as u32);
            }
        }
        assert_eq!(t.items(), &[(7.0, 5), (5.0, 1), (5.0, 2)]);
        t.reset(0);
        assert!(!t.wants(1e9));
    }
}
