//! Fuzzing the loaders (`.npy`, `.json`, raw) and the parameter parser with
//! arbitrary bytes and with structured inputs near their formats (real `.npy`
//! headers with random shapes, dtypes and lengths; JSON made of the tokens the
//! scanner reads; parameter objects with every field given a random JSON
//! value): nothing panics, every failure is a `SamplerError`, and whatever
//! loads and parses also samples (on the cpu backend) without a panic.
//!
//! The default run feeds a few thousand inputs; the long run feeds 100 000
//! per target and prints the count and the time:
//! `cargo test --release --test fuzz_inputs -- --ignored --nocapture`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use token_sampler::batch::{load_json, load_npy, load_raw};
use token_sampler::{Batch, CpuSampler, RawDtype, Sampler, SamplingParams};

/// Inputs that loaded (or parsed and validated) in the current target: the
/// fuzzing reaches past the first check, not only its errors.
static ACCEPTED: AtomicU64 = AtomicU64::new(0);

fn accepted() {
    ACCEPTED.fetch_add(1, Ordering::Relaxed);
}

fn path() -> &'static Path {
    Path::new("fuzz")
}

/// Samples a loaded batch with default parameters when it is small enough to
/// be cheap: the loaders' output is usable, not just accepted.
fn use_batch(b: &Batch) {
    accepted();
    if b.rows() * b.vocab() <= 4096 {
        let params = vec![SamplingParams::default(); b.rows()];
        let _ = CpuSampler::with_threads(1).sample(b.view(), &params, 1);
    }
}

// ---- .npy ----------------------------------------------------------------------

/// An `.npy` file: a real header (version, dtype, order, shape) around random
/// data, the header itself sometimes cut or flipped.
fn npy_like() -> impl Strategy<Value = Vec<u8>> {
    let dtype = prop::sample::select(vec![
        "<f4", "<f2", ">f4", "<f8", "<i4", "|u1", "<c8", "O", "<f4'",
    ]);
    let dim = prop_oneof![
        0u64..5,
        Just(u32::MAX as u64),
        Just(1 << 32),
        Just(u64::MAX),
        any::<u64>()
    ];
    (
        prop::sample::select(vec![(1u8, 0u8), (2, 0), (3, 0), (9, 9)]),
        dtype,
        any::<bool>(),
        prop::collection::vec(dim, 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<Option<(prop::sample::Index, u8)>>(),
        any::<Option<prop::sample::Index>>(),
    )
        .prop_map(|(ver, dtype, fortran, shape, data, flip, cut)| {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let tuple = match dims.len() {
                1 => format!("({},)", dims[0]),
                _ => format!("({})", dims.join(", ")),
            };
            let mut h = format!(
                "{{'descr': '{dtype}', 'fortran_order': {}, 'shape': {tuple}, }}",
                if fortran { "True" } else { "False" }
            )
            .into_bytes();
            let pre = if ver.0 == 1 { 10 } else { 12 };
            while !(pre + h.len() + 1).is_multiple_of(64) {
                h.push(b' ');
            }
            h.push(b'\n');
            let mut f = b"\x93NUMPY".to_vec();
            f.extend([ver.0, ver.1]);
            if ver.0 == 1 {
                f.extend((h.len() as u16).to_le_bytes());
            } else {
                f.extend((h.len() as u32).to_le_bytes());
            }
            f.extend(h);
            f.extend(data);
            if let Some((at, x)) = flip {
                let i = at.index(f.len());
                f[i] ^= x;
            }
            if let Some(at) = cut {
                f.truncate(at.index(f.len() + 1));
            }
            f
        })
}

/// A well-formed `.npy` of small shape (f32 or f16, [V] or [B, V]) with
/// values of any magnitude, sometimes with one byte changed.
fn npy_valid() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        1usize..4,
        1usize..9,
        any::<bool>(),
        prop::collection::vec(
            prop_oneof![4 => -30.0f32..30.0, 1 => any::<f32>(), 1 => Just(f32::NEG_INFINITY)],
            32,
        ),
        any::<Option<(prop::sample::Index, u8)>>(),
    )
        .prop_map(|(half, b, v, flat, vals, flip)| {
            let shape = if flat {
                format!("({v},)")
            } else {
                format!("({b}, {v})")
            };
            let n = if flat { v } else { b * v };
            let descr = if half { "<f2" } else { "<f4" };
            let mut h =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
                    .into_bytes();
            while !(10 + h.len() + 1).is_multiple_of(64) {
                h.push(b' ');
            }
            h.push(b'\n');
            let mut f = b"\x93NUMPY\x01\x00".to_vec();
            f.extend((h.len() as u16).to_le_bytes());
            f.extend(h);
            for x in vals.iter().cycle().take(n) {
                if half {
                    f.extend(half::f16::from_f32(*x).to_le_bytes());
                } else {
                    f.extend(x.to_le_bytes());
                }
            }
            if let Some((at, x)) = flip {
                let i = at.index(f.len());
                f[i] ^= x;
            }
            f
        })
}

fn fuzz_npy(runner: &mut TestRunner) {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        npy_like(),
        npy_valid()
    ];
    runner
        .run(&bytes, |b| {
            if let Ok(batch) = load_npy(path(), &b) {
                use_batch(&batch);
            }
            Ok(())
        })
        .unwrap();
}

// ---- .json ---------------------------------------------------------------------

/// Text made of what the logits scanner reads: brackets, commas, numbers of
/// every form, the infinities and NaN, whitespace, and stray bytes.
fn json_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("-Infinity".to_string()),
        Just("Infinity".to_string()),
        Just("NaN".to_string()),
        Just("1e40".to_string()),
        Just("-1e-50".to_string()),
        Just("1.5e".to_string()),
        Just("--1".to_string()),
        any::<f32>().prop_map(|v| v.to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        "[a-zA-Z+.eE0-9-]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// Logits JSON of the right shape (`[…]` or `[[…], …]`, rows sometimes
/// ragged) with numbers of every form, sometimes with one character changed.
fn json_valid() -> impl Strategy<Value = String> {
    let num = prop_oneof![
        6 => (-1e3f64..1e3).prop_map(|v| v.to_string()),
        1 => any::<f32>().prop_map(|v| format!("{v:e}")),
        1 => Just("-Infinity".to_string()),
        1 => Just("NaN".to_string()),
        1 => Just("3.5e38".to_string()),
        1 => Just("1e-46".to_string()),
    ];
    let row = prop::collection::vec(num, 1..6).prop_map(|r| format!("[{}]", r.join(", ")));
    (
        prop::collection::vec(row, 1..4),
        any::<bool>(),
        any::<Option<(prop::sample::Index, char)>>(),
    )
        .prop_map(|(rows, flat, change)| {
            let mut t = if flat {
                rows[0].clone()
            } else {
                format!("[{}]", rows.join(",\n"))
            };
            if let Some((at, c)) = change {
                let chars: Vec<char> = t.chars().collect();
                let i = at.index(chars.len());
                t = chars[..i]
                    .iter()
                    .chain(std::iter::once(&c))
                    .chain(&chars[i + 1..])
                    .collect();
            }
            t
        })
}

fn fuzz_json(runner: &mut TestRunner) {
    let text = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        json_like(),
        json_valid(),
    ];
    runner
        .run(&text, |t| {
            if let Ok(batch) = load_json(path(), &t) {
                use_batch(&batch);
            }
            Ok(())
        })
        .unwrap();
}

// ---- raw -----------------------------------------------------------------------

fn fuzz_raw(runner: &mut TestRunner) {
    let vocab = prop_oneof![
        0usize..9,
        Just(usize::MAX),
        Just(usize::MAX / 2 + 1),
        Just(1 << 62),
        Just(1 << 63),
        any::<usize>()
    ];
    let dtype = prop::sample::select(vec![RawDtype::F32, RawDtype::F16, RawDtype::Bf16]);
    let input = (prop::collection::vec(any::<u8>(), 0..128), dtype, vocab);
    runner
        .run(&input, |(b, dtype, vocab)| {
            if let Ok(batch) = load_raw(path(), &b, dtype, vocab) {
                use_batch(&batch);
            }
            Ok(())
        })
        .unwrap();
}

// ---- parameters ----------------------------------------------------------------

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just(0.0f64),
            Just(1e-40),
            Just(1e-30),
            Just(1e30),
            Just(3.5e38),
            Just(-1.0)
        ]
        .prop_map(|f| json!(f)),
        "[a-z_0-9\\-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[0-9a-z_]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 19] = [
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "min_tokens_to_keep",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "history",
    "prompt_token_ids",
    "logit_bias",
    "allowed_token_ids",
    "seed",
    "step",
    "logprobs",
    "dynamic_temperature",
    "order",
    "unit",
    "mapping",
];

/// A parameter object: real field names (and dynamic-temperature shapes)
/// with random values, so parsing gets past the unknown-field check.
fn params_like() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let kinds = prop::sample::select(vec!["linear", "sigmoid", "lut", "edt", "llama_cpp", "x"]);
    let mapping = (
        kinds,
        prop::collection::btree_map(
            prop::sample::select(vec![
                "h_low",
                "h_high",
                "t_min",
                "t_max",
                "h_mid",
                "steepness",
                "entropies",
                "temperatures",
                "t0",
                "base",
                "theta",
                "range",
                "exponent",
            ]),
            any_json(),
            0..6,
        ),
    )
        .prop_map(|(kind, fields)| {
            let mut m: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            m.insert("kind".into(), Value::from(kind));
            Value::Object(m)
        });
    let dynamic = (mapping, any_json(), any_json()).prop_map(|(mapping, unit, cap)| {
        serde_json::json!({"mapping": mapping, "unit": unit, "max_entropy": cap})
    });
    (
        prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), any_json(), 0..6),
        prop::option::of(dynamic),
    )
        .prop_map(|(fields, dynamic)| {
            let mut m: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if let Some(d) = dynamic {
                m.insert("dynamic_temperature".into(), d);
            }
            Value::Object(m)
        })
}

fn fuzz_params(runner: &mut TestRunner) {
    let batch = Batch::from_rows(&[vec![1.0f32, -2.0, 0.5, f32::NEG_INFINITY, 3.0]]).unwrap();
    let value = prop_oneof![
        // Arbitrary bytes through the JSON parser the CLI uses.
        prop::collection::vec(any::<u8>(), 0..96)
            .prop_map(|b| serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null)),
        any_json(),
        params_like(),
    ];
    runner
        .run(&value, |v| {
            if let Ok(p) = SamplingParams::from_json_value(0, v) {
                if p.validate(0, batch.vocab()).is_ok() {
                    accepted();
                    let _ = CpuSampler::with_threads(1).sample(batch.view(), &[p], 2);
                }
            }
            Ok(())
        })
        .unwrap();
}

// ---- runs ----------------------------------------------------------------------

type Target = (&'static str, fn(&mut TestRunner));
const TARGETS: [Target; 4] = [
    ("npy", fuzz_npy),
    ("json", fuzz_json),
    ("raw", fuzz_raw),
    ("params", fuzz_params),
];

fn fuzz_all(cases: u32) {
    for (name, target) in TARGETS {
        let t0 = std::time::Instant::now();
        ACCEPTED.store(0, Ordering::Relaxed);
        // Reproducible in CI; PROPTEST_RNG_SEED=n feeds other inputs.
        let rng_seed = match std::env::var("PROPTEST_RNG_SEED") {
            Ok(_) => Config::default().rng_seed,
            Err(_) => proptest::test_runner::RngSeed::Fixed(7),
        };
        let mut runner = TestRunner::new(Config {
            cases,
            rng_seed,
            failure_persistence: None,
            ..Config::default()
        });
        target(&mut runner);
        println!(
            "{name}: {cases} inputs, no panic, {} accepted, in {:.1} s",
            ACCEPTED.load(Ordering::Relaxed),
            t0.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn loaders_and_params_survive_a_few_thousand_inputs() {
    fuzz_all(5_000);
}

#[test]
#[ignore = "100 000 inputs per target: run with --ignored --nocapture"]
fn loaders_and_params_survive_100_000_inputs_each() {
    fuzz_all(100_000);
}
