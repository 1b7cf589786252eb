//! Per-row results (docs/spec.md §6) and the full-distribution output of `probs`.

use serde::Serialize;

/// One token and its log-probability.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f64,
}

/// The `n` most likely tokens, descending, ties by lowest id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogprobs {
    /// Log-softmax of the logits as given (before bias, mask and penalties).
    pub raw: Vec<TokenLogprob>,
    /// ln π over the survivors of every stage (JSON has no −inf, so removed
    /// tokens are not listed).
    pub processed: Vec<TokenLogprob>,
}

/// What one row's sampling returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowResult {
    /// Draw 0.
    pub token: u32,
    /// All N draws of the call (`draws[0] == token`); JSON lists them only when N > 1.
    #[serde(skip_serializing_if = "single")]
    pub draws: Vec<u32>,
    /// ln π_token (0 for greedy rows).
    pub logprob: f64,
    /// Log-softmax of the logits as given, at `token` (vLLM's raw logprobs).
    pub raw_logprob: f64,
    /// Entropy (nats) of softmax of the logits after bias, mask and penalties at T = 1.
    pub entropy: f64,
    /// Varentropy (nats²) of the same distribution.
    pub varentropy: f64,
    /// The entropy that guided the temperature, in the mapping's unit after the
    /// clip; present for rows with `dynamic_temperature`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guide_entropy: Option<f64>,
    /// Entropy (nats) of π, the distribution actually sampled.
    pub final_entropy: f64,
    /// The temperature applied (0 = greedy).
    pub temperature: f64,
    /// The top-p applied (static or entropy-driven; 1 = off).
    pub top_p: f64,
    /// The number of finite survivors of every stage.
    pub kept: u32,
    /// The seed used (the row's own, or the fresh one drawn for it).
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<TopLogprobs>,
    /// Mirostat rows only: the row's `mu` after draw 0 (docs/spec.md §3.15),
    /// to pass as `mirostat.mu` in the next step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirostat_mu: Option<f64>,
}

fn single(v: &[u32]) -> bool {
    v.len() <= 1
}

/// One row of `probs`: the processed distribution π in token-id order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowProbs {
    /// V values, 0 for removed tokens.
    pub probs: Vec<f64>,
    pub kept: u32,
    pub temperature: f64,
    pub top_p: f64,
    pub entropy: f64,
    pub final_entropy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guide_entropy: Option<f64>,
    /// Mirostat rows only: the `mu` this step's π was cut with (the row's
    /// `mirostat.mu`, or 2·tau); `probs` draws nothing, so there is no update
    /// (docs/spec.md §3.15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirostat_mu: Option<f64>,
}
