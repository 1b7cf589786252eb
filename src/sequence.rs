//! Per-sequence penalty state a server keeps across decode steps
//! (docs/spec.md §13.2).
//!
//! The penalties of docs/spec.md §3.2 need, for every distinct token of the
//! generated history and the prompt, its count in the history and whether the
//! prompt has it. A server that passes `history` and `prompt_token_ids` as
//! lists clones each sequence's whole history into its parameters every step,
//! and every backend recounts it. A [`SequenceState`] keeps those counts
//! instead and takes one token per step ([`SequenceState::accept`], as
//! llama.cpp's penalties sampler `accept`s into its ring buffer and token-count
//! map, and as vLLM's persistent batch appends output ids in place): the cost
//! of a step is O(log d) for d distinct tokens, never O(history). A row carries
//! its state in [`SamplingParams::sequence`](crate::SamplingParams::sequence),
//! and every backend reads the counts from it directly.

use std::collections::{btree_map, BTreeMap, VecDeque};

/// One distinct token of history ∪ prompt: the input the penalties need
/// (docs/spec.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PenaltyToken {
    pub id: u32,
    /// Occurrences in the generated history (within the window): `c_i`, which
    /// the frequency and presence penalties use.
    pub count: u32,
    /// Whether the prompt holds the id (the repetition penalty counts it).
    pub in_prompt: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Entry {
    count: u32,
    in_prompt: bool,
}

/// The penalty state of one sequence: its prompt ids, its generated tokens
/// (optionally only the last `window` of them, llama.cpp's `penalty_last_n`),
/// and the per-token counts the penalties read.
///
/// Appending token by token gives exactly the penalties, and so the draws, of
/// passing the whole history as `history` and the prompt as
/// `prompt_token_ids` (with a window: the last `window` generated tokens as
/// `history`); tests/common/bodies.rs checks this on every backend.
///
/// ```
/// use token_sampler::{Batch, ReferenceSampler, Sampler, SamplingParams, SequenceState};
///
/// let mut sampler = ReferenceSampler::new();
/// let mut params = vec![SamplingParams {
///     repetition_penalty: 1.3,
///     frequency_penalty: 0.2,
///     seed: Some(1),
///     sequence: Some(SequenceState::new(&[3, 1, 4])),
///     ..Default::default()
/// }];
/// for _step in 0..4 {
///     let batch = Batch::from_rows(&[vec![1.0f32, 2.0, 0.5, 1.5, 0.0, 2.5]])?;
///     let rows = sampler.sample(batch.view(), &params, 1)?;
///     params[0].accept(rows[0].token); // O(log d): no history is copied
/// }
/// let state = params[0].sequence.as_ref().unwrap();
/// assert_eq!(state.generated(), 4);
/// assert_eq!(params[0].step, 4);
/// # Ok::<(), token_sampler::SamplerError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceState {
    /// Prompt ids as given (duplicates kept; only presence matters).
    prompt: Vec<u32>,
    /// Generated tokens the penalties count, oldest first: all of them, or the
    /// last `window`.
    history: VecDeque<u32>,
    window: Option<usize>,
    /// Every distinct id of history ∪ prompt; an id leaves when neither holds
    /// it any more.
    counts: BTreeMap<u32, Entry>,
    /// Tokens accepted since the prompt, the window's evictions included.
    generated: u64,
}

impl SequenceState {
    /// A sequence whose prompt is `prompt_ids` (only the repetition penalty
    /// counts them, as vLLM does) and which has generated nothing yet.
    pub fn new(prompt_ids: &[u32]) -> Self {
        let mut counts = BTreeMap::new();
        for &id in prompt_ids {
            counts.entry(id).or_insert_with(Entry::default).in_prompt = true;
        }
        SequenceState {
            prompt: prompt_ids.to_vec(),
            history: VecDeque::new(),
            window: None,
            counts,
            generated: 0,
        }
    }

    /// Counts only the last `window` generated tokens (llama.cpp's
    /// `penalty_last_n`; 0 counts none). The prompt always counts.
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = Some(window);
        self.evict();
        self
    }

    /// A state that has already generated `history` after `prompt_ids`: the
    /// same penalties as those two lists passed as `history` and
    /// `prompt_token_ids`.
    pub fn from_lists(prompt_ids: &[u32], history: &[u32]) -> Self {
        let mut s = SequenceState::new(prompt_ids);
        for &t in history {
            s.accept(t);
        }
        s
    }

    /// Appends the token this sequence just generated: O(log d) for d
    /// distinct tokens (plus one eviction when a window is full).
    pub fn accept(&mut self, token: u32) {
        self.generated += 1;
        if self.window == Some(0) {
            return;
        }
        self.history.push_back(token);
        self.counts.entry(token).or_default().count += 1;
        self.evict();
    }

    /// Drops the oldest generated tokens beyond the window.
    fn evict(&mut self) {
        let Some(window) = self.window else { return };
        while self.history.len() > window {
            let old = self
                .history
                .pop_front()
                .expect("non-empty beyond the window");
            if let btree_map::Entry::Occupied(mut e) = self.counts.entry(old) {
                let v = e.get_mut();
                v.count -= 1;
                if v.count == 0 && !v.in_prompt {
                    e.remove();
                }
            }
        }
    }

    /// The prompt ids as given.
    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    /// The generated tokens the penalties count, oldest first.
    pub fn history(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.history.iter().copied()
    }

    /// The window, if the penalties count only the last tokens.
    pub fn window(&self) -> Option<usize> {
        self.window
    }

    /// Tokens accepted so far (those the window has dropped included).
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// The number of distinct ids in history ∪ prompt.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Whether any generated token is counted (presence and frequency
    /// penalties need one).
    pub fn has_history(&self) -> bool {
        !self.history.is_empty()
    }

    /// The largest id held, if any: ids are checked against the vocabulary
    /// with this alone (O(log d)).
    pub fn max_id(&self) -> Option<u32> {
        self.counts.last_key_value().map(|(&id, _)| id)
    }

    /// Every distinct id of history ∪ prompt, ascending, with its history
    /// count and whether the prompt holds it.
    pub fn tokens(&self) -> impl ExactSizeIterator<Item = PenaltyToken> + '_ {
        self.counts.iter().map(|(&id, e)| PenaltyToken {
            id,
            count: e.count,
            in_prompt: e.in_prompt,
        })
    }

    /// Where `id` first occurs, for an error message: `("prompt", i)` or
    /// `("history", i)`.
    pub(crate) fn locate(&self, id: u32) -> (&'static str, usize) {
        if let Some(i) = self.prompt.iter().position(|&t| t == id) {
            return ("prompt", i);
        }
        (
            "history",
            self.history.iter().position(|&t| t == id).unwrap_or(0),
        )
    }
}

/// The penalty inputs of one row, ascending by id: read from a
/// [`SequenceState`] as they are, or counted from `history` and
/// `prompt_token_ids`.
pub struct PenaltyTokens<'a>(Source<'a>);

enum Source<'a> {
    Sequence(btree_map::Iter<'a, u32, Entry>),
    Lists(std::vec::IntoIter<PenaltyToken>),
}

impl<'a> PenaltyTokens<'a> {
    pub(crate) fn from_state(state: &'a SequenceState) -> Self {
        PenaltyTokens(Source::Sequence(state.counts.iter()))
    }

    /// Counts `history` and marks `prompt` (O(n log n), one allocation).
    pub(crate) fn from_lists(history: &[u32], prompt: &[u32]) -> Self {
        let mut counts: BTreeMap<u32, Entry> = BTreeMap::new();
        for &t in history {
            counts.entry(t).or_default().count += 1;
        }
        for &t in prompt {
            counts.entry(t).or_default().in_prompt = true;
        }
        let list: Vec<PenaltyToken> = counts
            .into_iter()
            .map(|(id, e)| PenaltyToken {
                id,
                count: e.count,
                in_prompt: e.in_prompt,
            })
            .collect();
        PenaltyTokens(Source::Lists(list.into_iter()))
    }
}

impl Iterator for PenaltyTokens<'_> {
    type Item = PenaltyToken;
    fn next(&mut self) -> Option<PenaltyToken> {
        match &mut self.0 {
            Source::Sequence(it) => it.next().map(|(&id, e)| PenaltyToken {
                id,
                count: e.count,
                in_prompt: e.in_prompt,
            }),
            Source::Lists(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Source::Sequence(it) => it.size_hint(),
            Source::Lists(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for PenaltyTokens<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(history: &[u32], prompt: &[u32]) -> Vec<PenaltyToken> {
        PenaltyTokens::from_lists(history, prompt).collect()
    }

    #[test]
    fn accepting_step_by_step_equals_counting_the_lists() {
        let prompt = [9, 2, 2, 40];
        let tokens = [2, 7, 7, 9, 100, 7, 3, 2];
        let mut s = SequenceState::new(&prompt);
        for (k, &t) in tokens.iter().enumerate() {
            s.accept(t);
            let got: Vec<PenaltyToken> = s.tokens().collect();
            assert_eq!(
                got,
                listed(&tokens[..=k], &prompt),
                "after {} tokens",
                k + 1
            );
            assert_eq!(s.generated(), k as u64 + 1);
        }
        assert_eq!(s.max_id(), Some(100));
        assert_eq!(s.distinct(), 6); // 2 3 7 9 40 100
        let seven = s.tokens().find(|t| t.id == 7).unwrap();
        assert_eq!((seven.count, seven.in_prompt), (3, false));
        let nine = s.tokens().find(|t| t.id == 9).unwrap();
        assert_eq!((nine.count, nine.in_prompt), (1, true));
        assert_eq!(SequenceState::from_lists(&prompt, &tokens), s);
    }

    #[test]
    fn a_window_counts_the_last_tokens_and_keeps_the_prompt() {
        let prompt = [5];
        let tokens = [5, 1, 1, 2, 3, 1, 4];
        for window in 0..=8 {
            let mut s = SequenceState::new(&prompt).with_window(window);
            for (k, &t) in tokens.iter().enumerate() {
                s.accept(t);
                let seen = &tokens[..=k];
                let last = &seen[seen.len().saturating_sub(window)..];
                let got: Vec<PenaltyToken> = s.tokens().collect();
                assert_eq!(
                    got,
                    listed(last, &prompt),
                    "window {window}, {} tokens",
                    k + 1
                );
                assert_eq!(s.history().collect::<Vec<_>>(), last);
            }
            assert_eq!(s.generated(), tokens.len() as u64);
        }
        // A window set after the fact drops the older tokens at once.
        let s = SequenceState::from_lists(&[], &[1, 2, 3]).with_window(1);
        assert_eq!(s.tokens().collect::<Vec<_>>(), listed(&[3], &[]));
    }
}
