//! Stages 1–2 of docs/spec.md §3 (bias & mask, penalties) without copying the row.
//!
//! A row's edited logits are described as a list of blocks in token-id order:
//! stretches of the caller's row that no bias or penalty touches, and short
//! stretches of an edit buffer holding the changed values. Tokens outside
//! `allowed_token_ids` simply have no block (they are −inf and contribute
//! nothing to any sum, threshold or draw). A row with 300 penalised tokens
//! costs 300 small edits, not a V-sized copy.

use crate::error::{Result, SamplerError};
use crate::params::{widen, SamplingParams, PENALTY_LIMIT};

/// Logits per block: the unit of the statistics pass (one L1-resident read
/// for the block max, a second for the sums), of block maxima used as
/// selection bounds, and of the draw's final rescan.
pub const BLOCK: usize = 512;

/// One contiguous stretch of the edited row.
#[derive(Debug, Clone, Copy, Default)]
pub struct Block {
    /// Token id of the first entry.
    pub id: u32,
    pub len: u32,
    /// Start in the caller's row (`edited == false`) or in the edit buffer.
    pub start: u32,
    pub edited: bool,
    /// Filled by the statistics pass: the block max, the shift its sums were
    /// taken against, and the block's sampling weight relative to that shift
    /// (at the temperature and threshold recorded in the row's block state).
    pub max: f32,
    pub shift: f64,
    pub weight: f64,
}

/// The edits of one row, sorted by token id.
#[derive(Debug, Default)]
pub struct Edits {
    /// Distinct edited ids, ascending, and their new values.
    pub ids: Vec<u32>,
    /// The new values rounded to f32 (what the vector kernels and thresholds
    /// read) and exact in f64, as the reference computes them (what weights
    /// and log-probabilities of edited tokens use: a +30 bias on 0.003 rounds
    /// by 1e-6, which a temperature of 0.01 would turn into a 1e-4 error).
    pub vals: Vec<f32>,
    pub vals64: Vec<f64>,
    /// Whether `allowed_token_ids` masks the row.
    pub masked: bool,
    allowed: Vec<u32>,
    work: Vec<(u32, f64)>,
    sorted: Vec<u32>,
}

fn range_error(row: usize, index: u32, field: &str, v: f64) -> SamplerError {
    SamplerError::NonFiniteLogit {
        row,
        index: index as usize,
        field: field.to_string(),
        value: v,
    }
}

/// A value f32 can hold (the same check as the reference's, so the same
/// inputs fail on every backend).
fn in_range(v: f64) -> bool {
    v.is_finite() && v.abs() <= f32::MAX as f64
}

/// The three penalties, widened as the reference widens them.
struct Penalties {
    r: f64,
    frequency: f64,
    presence: f64,
}

impl Penalties {
    /// Penalises one distinct id of history ∪ prompt (`count` times in the
    /// history), on top of its bias if `work[..biased]` holds one.
    fn apply(
        &self,
        work: &mut Vec<(u32, f64)>,
        biased: usize,
        row: usize,
        x: &[f32],
        id: u32,
        count: u64,
    ) -> Result<()> {
        let slot = work[..biased].binary_search_by_key(&id, |e| e.0);
        let mut y = match slot {
            Ok(k) => work[k].1,
            Err(_) => x[id as usize] as f64,
        };
        // Every value a penalty step produces stays below 2^24
        // (docs/spec.md §2.1), as the reference checks it.
        if self.r != 1.0 {
            y = if y > 0.0 { y / self.r } else { y * self.r };
            if !(y.abs() < PENALTY_LIMIT) {
                return Err(range_error(row, id, "repetition_penalty", y));
            }
        }
        let amount = self.frequency * count as f64 + self.presence;
        if count > 0 && amount != 0.0 {
            let field = "frequency_penalty/presence_penalty";
            if !(amount.abs() < PENALTY_LIMIT) {
                return Err(range_error(row, id, field, amount));
            }
            y -= amount;
            if !(y.abs() < PENALTY_LIMIT) {
                return Err(range_error(row, id, field, y));
            }
        }
        match slot {
            Ok(k) => work[k].1 = y,
            Err(_) => work.push((id, y)),
        }
        Ok(())
    }
}

impl Edits {
    /// Whether this row has any bias, mask or active penalty.
    pub fn needed(p: &SamplingParams) -> bool {
        !p.logit_bias.is_empty() || p.allowed_token_ids.is_some() || p.has_penalties()
    }

    fn is_allowed(masked: bool, allowed: &[u32], id: u32) -> bool {
        !masked || allowed.binary_search(&id).is_ok()
    }

    /// Computes the edited values of `row` (original logits `x`, already
    /// checked for NaN/+inf at every index this reads). Errors are the
    /// reference's, in its order: biases by ascending id, then penalties by
    /// ascending id.
    pub fn build(&mut self, row: usize, x: &[f32], p: &SamplingParams) -> Result<()> {
        self.ids.clear();
        self.vals.clear();
        self.vals64.clear();
        self.work.clear();
        self.allowed.clear();
        self.masked = p.allowed_token_ids.is_some();
        if let Some(allowed) = &p.allowed_token_ids {
            self.allowed.extend_from_slice(allowed);
            self.allowed.sort_unstable();
            self.allowed.dedup();
        }
        // Bias: BTreeMap iteration is ascending, like the reference's.
        for (&id, &b) in &p.logit_bias {
            let v = x[id as usize];
            if v == f32::NEG_INFINITY || !Self::is_allowed(self.masked, &self.allowed, id) {
                continue; // a masked token stays −inf
            }
            // Exact f32 → f64, as the reference: a bias that ties two logits in
            // f32 ties them here too.
            let y = v as f64 + b as f64;
            if !in_range(y) {
                return Err(range_error(row, id, "logit_bias", y));
            }
            self.work.push((id, y));
        }
        let biased = self.work.len();
        // Penalties over the distinct tokens of history ∪ prompt, ascending.
        if p.has_penalties() {
            let pen = Penalties {
                r: widen(p.repetition_penalty),
                frequency: widen(p.frequency_penalty),
                presence: widen(p.presence_penalty),
            };
            let skip = |id: u32| {
                x[id as usize] == f32::NEG_INFINITY
                    || !Self::is_allowed(self.masked, &self.allowed, id)
            };
            if let Some(state) = &p.sequence {
                // Kept counts (docs/spec.md §13.2): already distinct and ascending.
                for t in state.tokens() {
                    if !skip(t.id) {
                        pen.apply(&mut self.work, biased, row, x, t.id, t.count as u64)?;
                    }
                }
            } else {
                self.sorted.clear();
                self.sorted.extend_from_slice(&p.history);
                self.sorted.sort_unstable();
                let history_len = self.sorted.len();
                self.sorted.extend_from_slice(&p.prompt_token_ids);
                // `sorted[..history_len]` holds the history for counting.
                let (hist, prompt) = self.sorted.split_at_mut(history_len);
                prompt.sort_unstable();
                let (mut i, mut j) = (0, 0);
                while i < hist.len() || j < prompt.len() {
                    let id = match (hist.get(i), prompt.get(j)) {
                        (Some(&h), Some(&q)) => h.min(q),
                        (Some(&h), None) => h,
                        (None, Some(&q)) => q,
                        (None, None) => unreachable!(),
                    };
                    let mut count = 0u64;
                    while i < hist.len() && hist[i] == id {
                        count += 1;
                        i += 1;
                    }
                    while j < prompt.len() && prompt[j] == id {
                        j += 1;
                    }
                    if !skip(id) {
                        pen.apply(&mut self.work, biased, row, x, id, count)?;
                    }
                }
            }
        }
        self.work.sort_unstable_by_key(|e| e.0);
        for &(id, y) in &self.work {
            self.ids.push(id);
            self.vals.push(y as f32);
            self.vals64.push(y);
        }
        Ok(())
    }

    /// Subtracts `amounts` (distinct ids, ascending) from the edited row, on
    /// top of what [`Edits::build`] did: DRY's penalty (docs/spec.md §3.14),
    /// applied like the other penalties. Masked tokens stay −inf; every
    /// amount and result stays below 2^24 (docs/spec.md §2.1).
    pub fn subtract(
        &mut self,
        row: usize,
        x: &[f32],
        amounts: &[(u32, f64)],
        field: &str,
    ) -> Result<()> {
        if amounts.is_empty() {
            return Ok(());
        }
        self.work.clear();
        let (mut e, mut a) = (0, 0);
        while e < self.ids.len() || a < amounts.len() {
            let take_edit =
                a >= amounts.len() || (e < self.ids.len() && self.ids[e] <= amounts[a].0);
            let (id, mut y) = if take_edit {
                (self.ids[e], self.vals64[e])
            } else {
                (amounts[a].0, x[amounts[a].0 as usize] as f64)
            };
            if a < amounts.len() && amounts[a].0 == id {
                let amount = amounts[a].1;
                let masked =
                    y == f64::NEG_INFINITY || !Self::is_allowed(self.masked, &self.allowed, id);
                if !masked && amount != 0.0 {
                    if !(amount.abs() < PENALTY_LIMIT) {
                        return Err(range_error(row, id, field, amount));
                    }
                    y -= amount;
                    if !(y.abs() < PENALTY_LIMIT) {
                        return Err(range_error(row, id, field, y));
                    }
                }
                a += 1;
                if !take_edit && (masked || amount == 0.0) {
                    continue;
                }
            }
            if take_edit {
                e += 1;
            }
            self.work.push((id, y));
        }
        self.ids.clear();
        self.vals.clear();
        self.vals64.clear();
        for &(id, y) in &self.work {
            self.ids.push(id);
            self.vals.push(y as f32);
            self.vals64.push(y);
        }
        Ok(())
    }

    /// The token ids whose original logits `build` reads.
    pub fn touched<'a>(p: &'a SamplingParams) -> impl Iterator<Item = u32> + 'a {
        p.logit_bias
            .keys()
            .copied()
            .chain(
                if p.has_penalties() {
                    &p.history[..]
                } else {
                    &[]
                }
                .iter()
                .copied(),
            )
            .chain(
                if p.has_penalties() {
                    &p.prompt_token_ids[..]
                } else {
                    &[]
                }
                .iter()
                .copied(),
            )
            .chain(
                p.sequence
                    .iter()
                    .filter(|_| p.has_penalties())
                    .flat_map(|s| s.tokens().map(|t| t.id)),
            )
    }

    /// The blocks of the edited row of `vocab` tokens, in id order: live
    /// stretches (everything, or the allowed runs) split at edited ids and cut
    /// into pieces of at most [`BLOCK`].
    pub fn blocks(&self, vocab: usize, out: &mut Vec<Block>) {
        out.clear();
        let mut e = 0; // next edit
        let emit = |out: &mut Vec<Block>, mut lo: u32, hi: u32, e: &mut usize| {
            while lo < hi {
                // Skip to the first edit at or after lo.
                while *e < self.ids.len() && self.ids[*e] < lo {
                    *e += 1;
                }
                if *e < self.ids.len() && self.ids[*e] == lo {
                    // A run of consecutive edited ids.
                    let start = *e;
                    let mut end = start + 1;
                    while end < self.ids.len()
                        && self.ids[end] == self.ids[end - 1] + 1
                        && self.ids[end] < hi
                    {
                        end += 1;
                    }
                    push_pieces(out, lo, (end - start) as u32, start as u32, true);
                    lo += (end - start) as u32;
                    *e = end;
                } else {
                    let next = if *e < self.ids.len() {
                        self.ids[*e].min(hi)
                    } else {
                        hi
                    };
                    push_pieces(out, lo, next - lo, lo, false);
                    lo = next;
                }
            }
        };
        if self.masked {
            let mut k = 0;
            while k < self.allowed.len() {
                let lo = self.allowed[k];
                let mut hi = lo + 1;
                k += 1;
                while k < self.allowed.len() && self.allowed[k] == hi {
                    hi += 1;
                    k += 1;
                }
                emit(out, lo, hi, &mut e);
            }
        } else {
            emit(out, 0, vocab as u32, &mut e);
        }
    }
}

fn push_pieces(out: &mut Vec<Block>, id: u32, len: u32, start: u32, edited: bool) {
    let mut off = 0;
    while off < len {
        let n = (len - off).min(BLOCK as u32);
        out.push(Block {
            id: id + off,
            len: n,
            start: start + off,
            edited,
            ..Block::default()
        });
        off += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::bias_mask_penalties;

    /// Expands blocks back into a dense row (−inf where no block).
    fn dense(x: &[f32], e: &Edits) -> Vec<f32> {
        let mut blocks = Vec::new();
        e.blocks(x.len(), &mut blocks);
        let mut out = vec![f32::NEG_INFINITY; x.len()];
        let mut next = 0;
        for b in &blocks {
            assert!(b.id >= next, "blocks out of order");
            assert!(b.len as usize <= BLOCK && b.len > 0);
            next = b.id + b.len;
            for k in 0..b.len {
                let v = if b.edited {
                    e.vals[(b.start + k) as usize]
                } else {
                    x[(b.start + k) as usize]
                };
                out[(b.id + k) as usize] = v;
            }
        }
        out
    }

    #[test]
    fn edited_rows_match_the_reference_stage() {
        let x: Vec<f32> = (0..1500)
            .map(|i| ((i * 37) % 101) as f32 * 0.1 - 5.0)
            .collect();
        let cases = [
            serde_json::json!({}),
            serde_json::json!({"logit_bias": {"0": 1.5, "3": -2, "1499": 4}}),
            serde_json::json!({"repetition_penalty": 1.3, "history": [5, 5, 9, 600, 601, 602], "prompt_token_ids": [9, 10, 1499]}),
            serde_json::json!({"frequency_penalty": 0.5, "presence_penalty": 0.25, "history": [7, 7, 7, 8]}),
            serde_json::json!({"allowed_token_ids": [3, 4, 5, 1000, 2, 1499, 5], "logit_bias": {"4": 2, "6": 9}, "repetition_penalty": 2, "history": [5, 6]}),
            serde_json::json!({"allowed_token_ids": (0..1200).collect::<Vec<u32>>(), "history": (500..520).collect::<Vec<u32>>(), "repetition_penalty": 1.2}),
        ];
        for c in cases {
            let p = SamplingParams::from_json_value(0, c.clone()).unwrap();
            let mut e = Edits::default();
            e.build(0, &x, &p).unwrap();
            let want = bias_mask_penalties(0, &x, &p).unwrap();
            let got = dense(&x, &e);
            for i in 0..x.len() {
                let w = want[i] as f32;
                assert!(got[i] == w, "{c}: index {i}: {} vs {}", got[i], w);
            }
        }
    }

    #[test]
    fn range_errors_name_the_field_like_the_reference() {
        let x = vec![1.0f32, 3.0e38, -3.0e38];
        let p = SamplingParams::from_json_value(0, serde_json::json!({"logit_bias": {"1": 1e38}}))
            .unwrap();
        let e = Edits::default().build(4, &x, &p).unwrap_err().to_string();
        let r = bias_mask_penalties(4, &x, &p).unwrap_err().to_string();
        assert_eq!(e, r);
        let p = SamplingParams::from_json_value(
            0,
            serde_json::json!({"repetition_penalty": 0.01, "history": [1]}),
        )
        .unwrap();
        let e = Edits::default().build(4, &x, &p).unwrap_err().to_string();
        assert_eq!(e, bias_mask_penalties(4, &x, &p).unwrap_err().to_string());
    }
}
