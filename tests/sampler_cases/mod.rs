//! The hand-derived goldens of the samplers of docs/spec.md §3.10–3.13 and
//! §3.15 (top-nσ, typical, ε, η, XTC, mirostat; DRY has its own), as data,
//! so every backend runs the same cases: tests/reference_samplers.rs on the
//! reference and cpu backends (where each derivation is written out beside
//! its test), tests/gpu_extended.rs on the gpu backend.
//!
//! Each case expects π (weights, normalised) or a kept set (π then the
//! softmax of the kept logits at T = 1). [`check`] asserts it with docs/spec.md
//! §7's tolerances, and the sampled token and `mirostat_mu` that follow
//! from that π for the row's uniform.

#![allow(dead_code)]

use crate::common::{assert_pi, ln, one_row};
use token_sampler::rng::{uniform, xtc_uniform};
use token_sampler::{Mirostat, Order, Sampler, SamplingParams};

/// What a case expects.
#[derive(Debug, Clone)]
pub enum Expect {
    /// π ∝ these weights.
    Pi(Vec<f64>),
    /// These ids survive (the row has T = 1 and no penalties).
    Kept(Vec<usize>),
}

#[derive(Debug, Clone)]
pub struct Golden {
    pub name: String,
    pub x: Vec<f32>,
    pub params: SamplingParams,
    pub expect: Expect,
}

impl Golden {
    /// The expected π, normalised.
    pub fn pi(&self) -> Vec<f64> {
        let w = match &self.expect {
            Expect::Pi(w) => w.clone(),
            Expect::Kept(ids) => {
                assert_eq!(self.params.temperature, 1.0, "{}", self.name);
                let m = ids
                    .iter()
                    .map(|&i| self.x[i] as f64)
                    .fold(f64::NEG_INFINITY, f64::max);
                (0..self.x.len())
                    .map(|i| {
                        if ids.contains(&i) {
                            (self.x[i] as f64 - m).exp()
                        } else {
                            0.0
                        }
                    })
                    .collect()
            }
        };
        let total: f64 = w.iter().sum();
        w.iter().map(|v| v / total).collect()
    }
}

fn case(name: &str, x: &[f32], params: SamplingParams, expect: Expect) -> Golden {
    Golden {
        name: name.into(),
        x: x.to_vec(),
        params: SamplingParams {
            seed: params.seed.or(Some(7)),
            ..params
        },
        expect,
    }
}

fn pi(w: &[f64]) -> Expect {
    Expect::Pi(w.to_vec())
}

fn kept(ids: &[usize]) -> Expect {
    Expect::Kept(ids.to_vec())
}

fn sigma(n: f32) -> SamplingParams {
    SamplingParams {
        top_n_sigma: n,
        ..Default::default()
    }
}

fn typical(tp: f32, m: u32) -> SamplingParams {
    SamplingParams {
        typical_p: tp,
        min_tokens_to_keep: m,
        ..Default::default()
    }
}

fn eps(e: f32, m: u32) -> SamplingParams {
    SamplingParams {
        epsilon_cutoff: e,
        min_tokens_to_keep: m,
        ..Default::default()
    }
}

fn eta(e: f32, m: u32) -> SamplingParams {
    SamplingParams {
        eta_cutoff: e,
        min_tokens_to_keep: m,
        ..Default::default()
    }
}

pub fn xtc(prob: f32, threshold: f32) -> SamplingParams {
    SamplingParams {
        xtc_probability: prob,
        xtc_threshold: threshold,
        ..Default::default()
    }
}

pub fn miro(version: u8, tau: f32, eta: f32, mu: Option<f32>) -> SamplingParams {
    SamplingParams {
        mirostat: Some(Mirostat {
            version,
            tau,
            eta,
            mu,
        }),
        ..Default::default()
    }
}

/// HF's ramp: logits arange(10) − 5, and the same × 100.
pub fn ramps() -> [Vec<f32>; 2] {
    let r: Vec<f32> = (0..10).map(|i| (i - 5) as f32).collect();
    let r100 = r.iter().map(|v| v * 100.0).collect();
    [r, r100]
}

/// Every golden of tests/reference_samplers.rs for top-nσ, typical, ε, η,
/// XTC and mirostat (the test each comes from in its name).
pub fn goldens() -> Vec<Golden> {
    let e = std::f64::consts::E;
    let mut g = Vec::new();

    // top_n_sigma_golden, top_n_sigma_peer_llama_cpp_test_top_n_sigma
    let x = [0.0f32, 1.0, 2.0, 3.0];
    g.push(case(
        "nσ n=1",
        &x,
        sigma(1.0),
        pi(&[0.0, 0.0, e * e, e * e * e]),
    ));
    g.push(case(
        "nσ n=2",
        &x,
        sigma(2.0),
        pi(&[0.0, e, e * e, e * e * e]),
    ));
    let xm = [f32::NEG_INFINITY, 0.0, 1.0, 2.0, 3.0];
    g.push(case("nσ masked", &xm, sigma(1.0), kept(&[3, 4])));
    g.push(case(
        "nσ all equal",
        &[1.0; 3],
        sigma(1.0),
        kept(&[0, 1, 2]),
    ));
    let hot = SamplingParams {
        temperature: 0.5,
        ..sigma(1.0)
    };
    g.push(case(
        "nσ T=.5",
        &x,
        hot,
        pi(&[0.0, 0.0, e.powi(4), e.powi(6)]),
    ));
    let q = ln(&[0.1, 0.2, 0.3, 0.4]);
    g.push(case(
        "nσ llama n=1",
        &q,
        sigma(1.0),
        pi(&[0.0, 0.0, 0.428571, 0.571429]),
    ));
    g.push(case(
        "nσ llama n=3",
        &q,
        sigma(3.0),
        pi(&[0.1, 0.2, 0.3, 0.4]),
    ));

    // typical_golden
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    g.push(case(
        "typical .25",
        &x,
        typical(0.25, 1),
        pi(&[0.0, 1.0, 0.0, 0.0]),
    ));
    g.push(case(
        "typical .45",
        &x,
        typical(0.45, 1),
        pi(&[0.0, 3.0, 2.0, 0.0]),
    ));
    g.push(case(
        "typical .6",
        &x,
        typical(0.6, 1),
        pi(&[4.0, 3.0, 2.0, 0.0]),
    ));
    g.push(case(
        "typical m=2",
        &x,
        typical(0.25, 2),
        pi(&[0.0, 3.0, 2.0, 0.0]),
    ));
    let flat = ln(&[2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    g.push(case(
        "typical ties",
        &flat,
        typical(0.5, 1),
        kept(&[1, 2, 3, 4, 5, 6]),
    ));
    // typical_peer_llama_cpp_test_typical, typical_peer_hf_test_typical_dist_warper
    let peaked = ln(&[0.97, 0.01, 0.01, 0.01]);
    g.push(case(
        "typical peaked",
        &peaked,
        typical(0.5, 1),
        pi(&[1.0, 0.0, 0.0, 0.0]),
    ));
    let q = ln(&[0.4, 0.2, 0.2, 0.2]);
    g.push(case(
        "typical .4/.2",
        &q,
        typical(0.5, 1),
        pi(&[0.0, 1.0, 1.0, 1.0]),
    ));
    g.push(case(
        "typical uniform m=3",
        &[0.0; 5],
        typical(0.5, 3),
        kept(&[0, 1, 2, 3, 4]),
    ));
    for (i, r) in ramps().iter().enumerate() {
        g.push(case(
            &format!("typical ramp {i}"),
            r,
            typical(0.7, 2),
            kept(&[8, 9]),
        ));
    }

    // epsilon_golden, epsilon_sees_the_order_temperature
    let x = ln(&[6.0, 3.0, 1.0]);
    g.push(case("ε .2", &x, eps(0.2, 1), pi(&[6.0, 3.0, 0.0])));
    g.push(case("ε .65", &x, eps(0.65, 1), pi(&[1.0, 0.0, 0.0])));
    g.push(case("ε .65 m=2", &x, eps(0.65, 2), pi(&[6.0, 3.0, 0.0])));
    for (order, w) in [
        (Order::Standard, [36.0, 9.0, 0.0]),
        (Order::Vllm, [36.0, 9.0, 0.0]),
        (Order::LlamaCpp, [36.0, 9.0, 1.0]),
    ] {
        let p = SamplingParams {
            temperature: 0.5,
            order,
            ..eps(0.05, 1)
        };
        g.push(case(&format!("ε T=.5 {order:?}"), &x, p, pi(&w)));
    }
    // eta_golden
    let x = ln(&[2.0, 1.0, 1.0]);
    g.push(case("η .3", &x, eta(0.3, 1), pi(&[2.0, 1.0, 1.0])));
    g.push(case("ε .3", &x, eps(0.3, 1), pi(&[1.0, 0.0, 0.0])));
    let x = ln(&[6.0, 3.0, 1.0]);
    g.push(case("η .15", &x, eta(0.15, 1), pi(&[6.0, 3.0, 0.0])));
    // epsilon_peer_hf_test_epsilon_dist_warper
    let a = ln(&[0.87, 0.099, 0.001, 0.03]);
    g.push(case("ε hf 1", &a, eps(0.1, 1), kept(&[0])));
    let b = ln(&[0.4, 0.299, 0.101, 0.2]);
    g.push(case("ε hf 2", &b, eps(0.1, 1), kept(&[0, 1, 2, 3])));
    let [r, r100] = ramps();
    g.push(case("ε ramp", &r, eps(5e-2, 2), kept(&[7, 8, 9])));
    g.push(case("ε ramp100", &r100, eps(5e-2, 2), kept(&[8, 9])));
    // eta_peer_hf_test_eta_dist_warper
    let a = ln(&[0.0, 0.1, 0.8, 0.1]);
    g.push(case(
        "η hf 1",
        &a,
        eta(0.0625, 1),
        pi(&[0.0, 0.1, 0.8, 0.1]),
    ));
    let b = ln(&[0.01, 0.04, 0.9, 0.05]);
    g.push(case("η hf 2", &b, eta(0.0625, 1), kept(&[2])));
    for (i, r) in ramps().iter().enumerate() {
        g.push(case(&format!("η ramp {i}"), r, eta(0.1, 2), kept(&[8, 9])));
    }

    // xtc_golden
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    g.push(case(
        "xtc .25",
        &x,
        xtc(1.0, 0.25),
        pi(&[0.0, 3.0, 2.0, 1.0]),
    ));
    g.push(case("xtc .6", &x, xtc(1.0, 0.6), pi(&[4.0, 3.0, 2.0, 1.0])));
    g.push(case("xtc 0", &x, xtc(1.0, 0.0), pi(&[0.0, 0.0, 0.0, 1.0])));
    let t = ln(&[3.0, 3.0, 2.0, 2.0]);
    g.push(case(
        "xtc ties .25",
        &t,
        xtc(1.0, 0.25),
        pi(&[3.0, 3.0, 2.0, 2.0]),
    ));
    g.push(case(
        "xtc ties .15",
        &t,
        xtc(1.0, 0.15),
        pi(&[0.0, 0.0, 1.0, 1.0]),
    ));
    let m4 = SamplingParams {
        min_tokens_to_keep: 4,
        ..xtc(1.0, 0.25)
    };
    g.push(case("xtc m=4", &x, m4, pi(&[4.0, 3.0, 2.0, 1.0])));
    let one = ln(&[1.0, 0.0, 0.0]);
    g.push(case(
        "xtc one finite",
        &one,
        xtc(1.0, 0.0),
        pi(&[1.0, 0.0, 0.0]),
    ));
    // greedy_rows_ignore_the_stages_that_remove_the_top_token
    for order in Order::ALL {
        for (what, p) in [("xtc", xtc(1.0, 0.25)), ("typical", typical(0.25, 1))] {
            let p = SamplingParams {
                temperature: 0.0,
                order,
                ..p
            };
            g.push(case(
                &format!("greedy {what} {order:?}"),
                &x,
                p,
                pi(&[1.0, 0.0, 0.0, 0.0]),
            ));
        }
    }
    // xtc_sees_the_order_temperature
    for (order, w) in [
        (Order::Standard, [0.0, 9.0, 4.0, 1.0]),
        (Order::LlamaCpp, [0.0, 0.0, 4.0, 1.0]),
    ] {
        let p = SamplingParams {
            temperature: 0.5,
            order,
            ..xtc(1.0, 0.15)
        };
        g.push(case(&format!("xtc T=.5 {order:?}"), &x, p, pi(&w)));
    }
    // xtc_coin_is_the_philox_counter_word_3
    let seed = 11;
    let below = (0..64).find(|&s| xtc_uniform(seed, s) < 0.5).unwrap();
    let above = (0..64).find(|&s| xtc_uniform(seed, s) >= 0.5).unwrap();
    for (step, ids) in [(below, &[1, 2, 3][..]), (above, &[0, 1, 2, 3][..])] {
        let p = SamplingParams {
            seed: Some(seed),
            step,
            ..xtc(0.5, 0.25)
        };
        g.push(case(&format!("xtc coin step {step}"), &x, p, kept(ids)));
    }
    // xtc_peer_llama_cpp_test_xtc
    let q = ln(&[0.4, 0.3, 0.2, 0.1]);
    for (th, ids) in [
        (0.09, &[3][..]),
        (0.19, &[2, 3][..]),
        (0.29, &[1, 2, 3][..]),
        (0.39, &[0, 1, 2, 3][..]),
    ] {
        g.push(case(
            &format!("xtc llama {th}"),
            &q,
            xtc(1.0, th),
            kept(ids),
        ));
    }

    // mirostat_v2_golden
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    g.push(case(
        "miro2 mu 2.5",
        &x,
        miro(2, 1.25, 0.1, Some(2.5)),
        pi(&[2.0, 1.0, 0.0, 0.0]),
    ));
    g.push(case(
        "miro2 default mu",
        &x,
        miro(2, 1.25, 0.1, None),
        pi(&[2.0, 1.0, 0.0, 0.0]),
    ));
    g.push(case(
        "miro2 none below mu",
        &x,
        miro(2, 3.0, 0.1, Some(0.5)),
        pi(&[1.0, 0.0, 0.0, 0.0]),
    ));
    let greedy = SamplingParams {
        temperature: 0.0,
        ..miro(2, 2.0, 0.5, Some(1.0))
    };
    g.push(case("miro2 greedy", &x, greedy, pi(&[1.0, 0.0, 0.0, 0.0])));
    // mirostat_runs_after_temperature_in_every_order
    g.push(case(
        "miro2 mu 2.2",
        &x,
        miro(2, 5.0, 0.1, Some(2.2)),
        pi(&[2.0, 1.0, 0.0, 0.0]),
    ));
    for order in Order::ALL {
        let p = SamplingParams {
            temperature: 0.5,
            order,
            ..miro(2, 5.0, 0.1, Some(2.2))
        };
        g.push(case(
            &format!("miro2 T=.5 {order:?}"),
            &x,
            p,
            pi(&[1.0, 0.0, 0.0, 0.0]),
        ));
    }
    let pen = SamplingParams {
        presence_penalty: std::f32::consts::LN_2,
        history: vec![0],
        ..miro(2, 5.0, 0.1, Some(2.2))
    };
    g.push(case(
        "miro2 after penalties",
        &x,
        pen,
        pi(&[1.0, 1.0, 0.0, 0.0]),
    ));
    // mirostat_v1_golden
    let x = ln(&[36.0, 9.0, 4.0, 2.25]);
    g.push(case(
        "miro1 mu 2",
        &x,
        miro(1, 5.0, 0.1, Some(2.0)),
        pi(&[36.0, 9.0, 0.0, 0.0]),
    ));
    g.push(case(
        "miro1 mu 3",
        &x,
        miro(1, 5.0, 0.1, Some(3.0)),
        kept(&[0, 1, 2]),
    ));
    g.push(case(
        "miro1 mu 4",
        &x,
        miro(1, 5.0, 0.1, Some(4.0)),
        kept(&[0, 1, 2, 3]),
    ));
    let z1 = ln(&[12.0, 6.0, 4.0, 3.0]);
    g.push(case(
        "miro1 zipf1 mu 1",
        &z1,
        miro(1, 5.0, 0.1, Some(1.0)),
        kept(&[0]),
    ));
    g.push(case(
        "miro1 zipf1 mu 2",
        &z1,
        miro(1, 5.0, 0.1, Some(2.0)),
        pi(&[12.0, 6.0, 0.0, 0.0]),
    ));
    let one = ln(&[1.0, 0.0, 0.0]);
    g.push(case(
        "miro1 one finite",
        &one,
        miro(1, 5.0, 0.1, None),
        pi(&[1.0, 0.0, 0.0]),
    ));
    g
}

/// docs/spec.md §7 on one golden: π within 1e-5 of the expected, the kept
/// count, the token the expected π gives for the row's uniform (unless u is
/// within 1e-6 of a CDF boundary), and mirostat's mu: the one the cut used
/// (probs) and its update for the token (sample), within 1e-4.
#[track_caller]
pub fn check(s: &mut dyn Sampler, g: &Golden) {
    let p = &g.params;
    let want = g.pi();
    let what = &g.name;
    let probs = s
        .probs(one_row(&g.x).view(), std::slice::from_ref(p))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .remove(0);
    assert_pi(&probs.probs, &want);
    let kept = want.iter().filter(|&&q| q > 0.0).count();
    assert_eq!(probs.kept as usize, kept, "{what}: kept");
    let r = s
        .sample(one_row(&g.x).view(), std::slice::from_ref(p), 2)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .remove(0);
    assert_eq!(r.kept as usize, kept, "{what}: sample kept");
    let u = uniform(r.seed, p.step, 0);
    let mut cum = 0.0;
    let mut token = None;
    let mut near_edge = false;
    for (t, &q) in want.iter().enumerate() {
        cum += q;
        near_edge |= (cum - u).abs() <= 1e-6;
        if token.is_none() && q > 0.0 && cum > u {
            token = Some(t as u32);
        }
    }
    let token = token.unwrap_or_else(|| want.iter().rposition(|&q| q > 0.0).unwrap() as u32);
    if !near_edge {
        assert_eq!(r.token, token, "{what}: token (u = {u})");
    }
    match &p.mirostat {
        None => {
            assert_eq!(probs.mirostat_mu, None, "{what}");
            assert_eq!(r.mirostat_mu, None, "{what}");
        }
        Some(ms) => {
            let mu = ms.mu();
            let got = probs.mirostat_mu.unwrap_or_else(|| panic!("{what}: no mu"));
            assert!((got - mu).abs() <= 1e-4, "{what}: probs mu {got} vs {mu}");
            let surprise = -want[r.token as usize].log2();
            let next = mu - ms.eta as f64 * (surprise - ms.tau as f64);
            let got = r.mirostat_mu.unwrap_or_else(|| panic!("{what}: no mu"));
            assert!((got - next).abs() <= 1e-4, "{what}: mu' {got} vs {next}");
        }
    }
}

/// One row of each extended sampler for batches of random logits
/// (normal, σ = 3, V ≥ 1000: XTC's threshold fires there; tests/gpu_extended.rs
/// checks that every stage removes something): typical, XTC, mirostat 1
/// and 2, top-nσ, ε, η, and a mix in llama_cpp order.
pub fn extended_rows() -> Vec<SamplingParams> {
    let base = |seed: u64| SamplingParams {
        seed: Some(seed),
        step: 3 * seed,
        ..Default::default()
    };
    let miro = |version: u8, seed: u64| SamplingParams {
        mirostat: Some(Mirostat {
            version,
            tau: 3.0,
            eta: 0.1,
            mu: Some(6.0),
        }),
        ..base(seed)
    };
    vec![
        SamplingParams {
            typical_p: 0.9,
            ..base(1)
        },
        SamplingParams {
            xtc_probability: 1.0,
            xtc_threshold: 0.01,
            ..base(2)
        },
        miro(1, 3),
        miro(2, 4),
        SamplingParams {
            top_n_sigma: 1.5,
            ..base(5)
        },
        SamplingParams {
            epsilon_cutoff: 3e-3,
            temperature: 0.7,
            ..base(6)
        },
        SamplingParams {
            eta_cutoff: 3e-3,
            ..base(7)
        },
        SamplingParams {
            order: Order::LlamaCpp,
            typical_p: 0.95,
            top_n_sigma: 2.0,
            epsilon_cutoff: 1e-4,
            xtc_probability: 1.0,
            xtc_threshold: 0.02,
            min_tokens_to_keep: 3,
            temperature: 0.8,
            ..base(8)
        },
    ]
}
