//! Named parameter presets (docs/spec.md §10): the seven task presets and the four
//! production presets. A preset only sets the fields it names; everything else
//! keeps its "off" default, and a params file or a flag overrides it.

use serde::Serialize;

use crate::error::{Result, SamplerError};
use crate::params::SamplingParams;

/// Which family a preset belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetFamily {
    /// Task presets: T rises from classification to brainstorming.
    Task,
    /// The four production presets.
    Production,
}

/// One named preset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preset {
    pub name: &'static str,
    pub family: PresetFamily,
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: i32,
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub description: &'static str,
}

const fn task(
    name: &'static str,
    temperature: f32,
    top_p: f32,
    top_k: i32,
    repetition_penalty: f32,
    description: &'static str,
) -> Preset {
    Preset {
        name,
        family: PresetFamily::Task,
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        frequency_penalty: 0.0,
        description,
    }
}

const fn production(
    name: &'static str,
    temperature: f32,
    top_p: f32,
    frequency_penalty: f32,
    description: &'static str,
) -> Preset {
    Preset {
        name,
        family: PresetFamily::Production,
        temperature,
        top_p,
        top_k: 0,
        repetition_penalty: 1.0,
        frequency_penalty,
        description,
    }
}

/// Every preset, task presets first (by rising temperature), then production.
pub const PRESETS: [Preset; 11] = [
    task(
        "classification",
        0.2,
        0.9,
        0,
        1.0,
        "one right label; keep the model's confidence",
    ),
    task(
        "factual-qa",
        0.3,
        0.9,
        0,
        1.0,
        "short factual answers; little variety",
    ),
    task(
        "code",
        0.5,
        0.95,
        30,
        1.0,
        "many valid constructs, but syntax must hold",
    ),
    task(
        "summarization",
        0.6,
        0.95,
        0,
        1.1,
        "varied but relevant; avoid repeating points",
    ),
    task(
        "chat",
        0.7,
        0.9,
        0,
        1.1,
        "natural conversation without loops",
    ),
    task(
        "creative-writing",
        1.1,
        0.85,
        0,
        1.15,
        "surprising word choice, tail trimmed",
    ),
    task(
        "brainstorming",
        1.2,
        1.0,
        0,
        1.0,
        "maximum variety; nothing trimmed",
    ),
    production(
        "extraction",
        0.0,
        1.0,
        0.0,
        "deterministic structured output (greedy)",
    ),
    production("default-chat", 0.7, 1.0, 0.0, "general assistant default"),
    production(
        "creative-brainstorm",
        1.0,
        0.95,
        0.2,
        "ideas with a frequency penalty against repeats",
    ),
    production("code-generation", 0.2, 0.95, 0.0, "near-deterministic code"),
];

/// Looks a preset up by name.
pub fn preset(name: &str) -> Result<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| SamplerError::UnknownPreset {
            name: name.to_string(),
            known: PRESETS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl Preset {
    /// The fields this preset sets, as a JSON object (for layering under a
    /// params file and flags).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "frequency_penalty": self.frequency_penalty,
        })
    }

    /// `SamplingParams::default()` with this preset's fields set.
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            ..SamplingParams::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_valid() {
        for (i, p) in PRESETS.iter().enumerate() {
            assert!(PRESETS[..i].iter().all(|q| q.name != p.name), "{}", p.name);
            p.params().validate(0, 10).unwrap();
        }
        assert!(preset("nope")
            .unwrap_err()
            .to_string()
            .contains("classification"));
    }

    #[test]
    fn task_temperatures_rise() {
        let t: Vec<f32> = PRESETS
            .iter()
            .filter(|p| p.family == PresetFamily::Task)
            .map(|p| p.temperature)
            .collect();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
    }
}
