//! The inputs of the learning path: the seed's tokens and logits, and the
//! task map. Values the seeds give are copied as printed; values they leave
//! open are ours and say so.

/// Experiment 1's ten answers to "Should I approve this request?".
pub const SWEEP_TOKENS: [&str; 10] = [
    "approve", "reject", "review", "escalate", "delay", "audit", "optimize", "notify", "assign",
    "close",
];

/// Experiment 1's logits (the model leans to `approve`).
pub const SWEEP_LOGITS: [f32; 10] = [2.2, 1.8, 1.4, 0.9, 0.2, 0.1, -0.3, -0.6, -0.8, -1.0];

/// Experiment 1's temperatures.
pub const SWEEP_TEMPERATURES: [f32; 6] = [0.1, 0.2, 0.5, 1.0, 1.5, 2.0];

/// One task of experiment 6 (docs/spec.md §10 table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UseCase {
    pub task: &'static str,
    pub tokens: [&'static str; 10],
    pub logits: [f32; 10],
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    /// The final entropy range the seed predicts for this configuration (its
    /// "entropy ordering"; the seed gives no unit).
    pub seed_entropy: &'static str,
}

pub const USE_CASES: [UseCase; 4] = [
    UseCase {
        task: "classification",
        tokens: [
            "INTENT_APPROVE",
            "INTENT_REJECT",
            "INTENT_REVIEW",
            "INTENT_ESCALATE",
            "INTENT_DEFER",
            "INTENT_CLARIFY",
            "INTENT_CANCEL",
            "INTENT_TRANSFER",
            "INTENT_CLOSE",
            "INTENT_OTHER",
        ],
        logits: [4.5, 0.3, 0.1, -0.2, -0.5, -1.0, -1.2, -1.5, -2.0, -2.5],
        temperature: 0.2,
        top_k: 0,
        top_p: 1.0,
        seed_entropy: "0.5-1.0",
    },
    UseCase {
        task: "summarization",
        tokens: [
            "BENEFIT",
            "COST",
            "TIMELINE",
            "STAKEHOLDER",
            "RISK",
            "OPPORTUNITY",
            "CONSTRAINT",
            "SCOPE",
            "TANGENT",
            "NOISE",
        ],
        logits: [2.1, 1.9, 1.7, 1.3, 0.8, 0.5, 0.2, -0.2, -0.5, -1.0],
        temperature: 0.6,
        top_k: 0,
        top_p: 0.95,
        seed_entropy: "1.5-2.0",
    },
    UseCase {
        task: "code",
        tokens: [
            "FOR_LOOP",
            "IF_STMT",
            "FUNC_DEF",
            "CLASS_DEF",
            "IMPORT",
            "WHILE_LOOP",
            "TRY_EXCEPT",
            "RETURN",
            "ASSIGN",
            "DECORATOR",
        ],
        logits: [1.2, 1.1, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3],
        temperature: 0.8,
        top_k: 30,
        top_p: 1.0,
        seed_entropy: "2.0-2.5",
    },
    UseCase {
        task: "creative",
        tokens: [
            "BRAVE",
            "QUIRKY",
            "DARK",
            "HUMOROUS",
            "POIGNANT",
            "SARCASTIC",
            "TENDER",
            "WHIMSICAL",
            "TRAGIC",
            "MYSTICAL",
        ],
        logits: [1.5, 1.4, 1.2, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0, -0.2],
        temperature: 1.1,
        top_k: 0,
        top_p: 0.85,
        seed_entropy: "2.0-2.8",
    },
];

/// A task on the "creativity vs precision" map. The seed describes the
/// quadrants (classification, factual QA and code top-left; summarization near
/// the top-right; creative writing and brainstorming bottom-right; the
/// diagonal as the temperature dial); the coordinates are ours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskPoint {
    pub task: &'static str,
    /// The task preset it corresponds to.
    pub preset: &'static str,
    /// 0 = fully deterministic, 1 = fully exploratory.
    pub creativity: f64,
    /// 0 = quality does not matter, 1 = must be correct.
    pub precision: f64,
}

pub const TASK_MAP: [TaskPoint; 7] = [
    TaskPoint {
        task: "Classification",
        preset: "classification",
        creativity: 0.08,
        precision: 0.95,
    },
    TaskPoint {
        task: "Factual QA",
        preset: "factual-qa",
        creativity: 0.18,
        precision: 0.90,
    },
    TaskPoint {
        task: "Code generation",
        preset: "code",
        creativity: 0.35,
        precision: 0.85,
    },
    TaskPoint {
        task: "Summarization",
        preset: "summarization",
        creativity: 0.55,
        precision: 0.72,
    },
    TaskPoint {
        task: "Chat",
        preset: "chat",
        creativity: 0.60,
        precision: 0.50,
    },
    TaskPoint {
        task: "Creative writing",
        preset: "creative-writing",
        creativity: 0.85,
        precision: 0.28,
    },
    TaskPoint {
        task: "Brainstorming",
        preset: "brainstorming",
        creativity: 0.95,
        precision: 0.12,
    },
];

/// `n` temperatures 0.1, 0.2, …, n/10 (the heat map's 50 columns span 0.1–5.0).
/// Computed as `i / 10` in f32 so each prints as the decimal it stands for.
pub fn temperature_grid(n: usize) -> Vec<f32> {
    (1..=n).map(|i| i as f32 / 10.0).collect()
}
