"""The Python binding: goldens derived by hand from docs/spec.md, the three
backends against the reference, bad input, and a 64-row batch."""

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import token_sampler as ts
from conftest import BACKENDS, open_sampler

LN = np.log(np.array([1.0, 2.0, 3.0], dtype=np.float32))  # softmax = [1/6, 1/3, 1/2]
P123 = np.array([1.0, 2.0, 3.0]) / 6.0

# ----------------------------------------------------------------- Philox
# docs/spec.md §5, written out here independently of the library so that the
# draw rule (inverse CDF at u) can be checked from Python.

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF


def philox(counter, key):
    c, k = list(counter), list(key)
    for rnd in range(10):
        if rnd:
            k = [(k[0] + W0) & MASK, (k[1] + W1) & MASK]
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & MASK, (p0 >> 32) ^ c[3] ^ k[1], p0 & MASK]
    return c


def uniform(seed, step, draw):
    w = philox([step & MASK, step >> 32, draw, 0], [seed & MASK, seed >> 32])[0]
    return (w >> 8) / 2.0**24


def inverse_cdf(pi, u):
    """The smallest id t with sum(pi[:t+1]) > u (docs/spec.md §3.8)."""
    c = np.cumsum(pi)
    hits = np.nonzero(c > u)[0]
    return int(hits[0]) if len(hits) else int(np.nonzero(pi > 0)[0][-1])


def near_boundary(pi, u, tol=1e-6):
    return bool(np.any(np.abs(np.cumsum(pi) - u) < tol))


def test_philox_known_answer():
    assert philox([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


# ----------------------------------------------------------------- goldens


def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


GOLDENS = [
    # (params, π derived by hand from docs/spec.md §3 for logits ln[1, 2, 3])
    ({}, P123),
    ({"temperature": 0.5}, np.array([1.0, 4.0, 9.0]) / 14.0),  # softmax(2·ln p)
    ({"top_k": 2}, np.array([0.0, 2.0, 3.0]) / 5.0),
    ({"top_p": 0.5}, np.array([0.0, 0.0, 1.0])),  # 1/2 alone reaches 0.5
    ({"top_p": 0.6}, np.array([0.0, 2.0, 3.0]) / 5.0),
    ({"min_p": 0.5}, np.array([0.0, 2.0, 3.0]) / 5.0),  # keep q ≥ 0.25
    ({"min_p": 0.5, "min_tokens_to_keep": 3}, P123),
    ({"logit_bias": {0: math.log(4.0)}}, np.array([4.0, 2.0, 3.0]) / 9.0),
    ({"logit_bias": {"0": math.log(4.0)}}, np.array([4.0, 2.0, 3.0]) / 9.0),
    ({"allowed_token_ids": [0, 1]}, np.array([1.0, 2.0, 0.0]) / 3.0),
    # ln 3 > 0 is divided by 2: weight √3; ln 1 = 0 is multiplied (stays 0).
    ({"repetition_penalty": 2.0, "history": [2], "prompt_token_ids": [0]},
     np.array([1.0, 2.0, math.sqrt(3.0)]) / (3.0 + math.sqrt(3.0))),
    # frequency 1 · count 2 + presence 0.5 subtracted from ln 3.
    ({"frequency_penalty": 1.0, "presence_penalty": 0.5, "history": [2, 2]},
     np.array([1.0, 2.0, 3.0 * math.exp(-2.5)]) / (3.0 + 3.0 * math.exp(-2.5))),
    # prompt ids count for the repetition penalty only.
    ({"frequency_penalty": 1.0, "prompt_token_ids": [2]}, P123),
]


@pytest.mark.parametrize("params,expected", GOLDENS, ids=[str(g[0]) for g in GOLDENS])
def test_probs_goldens(sampler, params, expected):
    out = sampler.probs(LN, params)
    assert out.probs.shape == (1, 3) and out.probs.dtype == np.float64
    np.testing.assert_allclose(out.probs[0], expected, atol=1e-6)
    assert out.kept[0] == np.count_nonzero(expected)
    assert out.final_entropies[0] == pytest.approx(entropy(expected), abs=1e-5)


def test_entropy_and_varentropy_goldens(sampler):
    r = sampler.sample(LN, {"seed": 1})
    h = entropy(P123)
    varentropy = float((P123 * np.log(P123) ** 2).sum() - h * h)
    assert r.entropies[0] == pytest.approx(h, abs=1e-5)
    assert r.varentropies[0] == pytest.approx(varentropy, abs=1e-5)
    assert r.final_entropies[0] == pytest.approx(h, abs=1e-5)
    assert r.raw_logprobs[0] == pytest.approx(math.log(P123[r.tokens[0]]), abs=1e-5)
    assert r.logprobs[0] == pytest.approx(math.log(P123[r.tokens[0]]), abs=1e-5)
    assert math.isnan(r.guide_entropies[0])


def test_dynamic_temperature_golden(sampler):
    # Guide: the entropy in bits; linear map of [0, 2] bits onto T in [0, 2].
    h_bits = entropy(P123) / math.log(2.0)
    t = 2.0 * h_bits / 2.0
    w = np.array([1.0, 2.0, 3.0]) ** (1.0 / t)
    params = {
        "seed": 3,
        "dynamic_temperature": {
            "unit": "bits",
            "mapping": {"kind": "linear", "h_low": 0, "h_high": 2, "t_min": 0, "t_max": 2},
        },
    }
    out = sampler.probs(LN, params)
    assert out.temperatures[0] == pytest.approx(t, rel=1e-5)
    assert out.guide_entropies[0] == pytest.approx(h_bits, abs=1e-5)
    np.testing.assert_allclose(out.probs[0], w / w.sum(), atol=1e-6)
    assert sampler.sample(LN, params)[0]["guide_entropy"] == pytest.approx(h_bits, abs=1e-5)


def test_greedy(sampler):
    x = np.array([[1.0, 3.0, 3.0, -1.0], [0.0, -np.inf, 5.0, 4.999]], dtype=np.float32)
    r = sampler.sample(x, {"temperature": 0}, samples=3)
    # Ties go to the lowest id (docs/spec.md §3.3); every draw is the argmax.
    assert r.tokens.tolist() == [[1, 1, 1], [2, 2, 2]]
    assert r.logprobs.tolist() == [0.0, 0.0]
    assert r.kept.tolist() == [1, 1]
    assert r.temperatures.tolist() == [0.0, 0.0]
    assert r.final_entropies.tolist() == [0.0, 0.0]
    assert r[1]["draws"] == [2, 2, 2]


def test_draws_follow_the_inverse_cdf(sampler):
    # Every draw d of a row is the inverse CDF of π at U(seed, step, d),
    # computed here with an independent Philox.
    seed, step, n = 12345, 17, 64
    r = sampler.sample(LN, {"seed": seed, "step": step}, samples=n)
    assert r.tokens.shape == (1, n) and r.seeds.tolist() == [seed]
    checked = 0
    for d in range(n):
        u = uniform(seed, step, d)
        if near_boundary(P123, u, 1e-5):
            continue
        assert r.tokens[0, d] == inverse_cdf(P123, u), f"draw {d}, u = {u}"
        checked += 1
    assert checked > n - 4


def test_top_logprobs(sampler):
    r = sampler.sample(np.stack([LN, LN[::-1]]), [{"logprobs": 2, "seed": 1}, {"seed": 1}])
    assert r.top_token_ids.tolist() == [[2, 1], [-1, -1]]
    np.testing.assert_allclose(r.top_logprobs[0], np.log([0.5, 1 / 3]), atol=1e-6)
    assert r.top_logprobs[1].tolist() == [-np.inf, -np.inf]
    assert r.raw_top_token_ids.tolist() == [[2, 1], [-1, -1]]
    top = r[0]["top_logprobs"]
    assert [e["id"] for e in top["processed"]] == [2, 1]
    assert "top_logprobs" not in r[1]


def test_one_row_and_row_dicts(reference):
    r = reference.sample(LN, {"seed": 5})
    assert r.tokens.shape == (1,) and len(r) == 1
    d = r[-1]
    assert set(d) >= {"token", "logprob", "raw_logprob", "entropy", "varentropy",
                      "final_entropy", "temperature", "top_p", "kept", "seed"}
    assert d["token"] == int(r.tokens[0]) and d["seed"] == 5
    assert r.rows() == [d]
    with pytest.raises(IndexError):
        r[1]


def test_presets():
    names = ts.presets()
    assert "chat" in names and "code" in names and len(names) == len(set(names))
    chat = ts.preset("chat")
    assert chat["temperature"] == 0.7 and chat["top_p"] == 0.9
    out = open_sampler("reference").probs(LN, {**ts.preset("code"), "seed": 1})
    assert out.temperatures[0] == 0.5 and out.top_ps[0] == 0.95
    with pytest.raises(ts.InvalidInputError, match="classification"):
        ts.preset("nope")


# ----------------------------------------------------------------- inputs


def test_float16_is_its_float32_widening(sampler):
    rng = np.random.default_rng(0)
    x16 = (rng.standard_normal((4, 300)) * 3).astype(np.float16)
    params = [{"seed": i, "top_p": 0.9, "logprobs": 3} for i in range(4)]
    a = sampler.sample(x16, params, samples=8)
    b = sampler.sample(x16.astype(np.float32), params, samples=8)
    assert a.tokens.tolist() == b.tokens.tolist()
    np.testing.assert_array_equal(a.logprobs, b.logprobs)
    np.testing.assert_array_equal(sampler.probs(x16, params).probs,
                                  sampler.probs(x16.astype(np.float32), params).probs)


def test_strided_and_readonly_arrays(reference):
    base = np.log(np.array([[1, 9, 2, 9, 3, 9]], dtype=np.float32))
    strided = base[:, ::2]  # ln[1, 2, 3], not contiguous: copied once
    np.testing.assert_allclose(reference.probs(strided).probs[0], P123, atol=1e-12)
    frozen = LN.copy()
    frozen.flags.writeable = False  # read in place, never written
    np.testing.assert_allclose(reference.probs(frozen).probs[0], P123, atol=1e-12)
    before = LN.copy()
    reference.sample(LN, {"seed": 1})
    np.testing.assert_array_equal(LN, before)


def test_numpy_values_in_params(reference):
    hist = np.array([2, 2], dtype=np.int64)
    a = reference.probs(LN, {"frequency_penalty": np.float32(1.0), "history": hist})
    b = reference.probs(LN, {"frequency_penalty": 1.0, "history": [2, 2]})
    np.testing.assert_array_equal(a.probs, b.probs)


# ----------------------------------------------------------------- errors


def bad(sampler, logits, params, **kw):
    with pytest.raises(ValueError) as info:
        sampler.sample(logits, params, **kw)
    assert isinstance(info.value, ts.InvalidInputError)
    assert isinstance(info.value, ts.SamplerError)
    return info.value


X5 = np.zeros((5, 10), dtype=np.float32)


@pytest.mark.parametrize(
    "row_params,kind,field,index",
    [
        ({"temperature": -1}, "invalid_param", "temperature", None),
        ({"temprature": 1}, "invalid_param", "temprature", None),
        ({"top_k": "x"}, "invalid_param", "top_k", None),
        ({"top_p": 0}, "invalid_param", "top_p", None),
        ({"temperature": float("nan")}, "invalid_param", "temperature", None),
        ({"history": [1, 99]}, "token_out_of_range", "history", 1),
        ({"allowed_token_ids": []}, "invalid_param", "allowed_token_ids", None),
        ({"logit_bias": {"x": 1}}, "invalid_param", "logit_bias", None),
        ({"logit_bias": {12: 1.0}}, "token_out_of_range", "logit_bias", 0),
        ({"logprobs": 21}, "invalid_param", "logprobs", None),
        ({"order": "sideways"}, "invalid_param", "order", None),
        ({"dynamic_temperature": {"mapping": {"kind": "linear", "h_low": 2, "h_high": 1,
                                              "t_min": 0, "t_max": 1}}},
         "invalid_param", "dynamic_temperature.mapping.h_low", None),
        # A tagged enum is parsed as a whole: the path stops at the mapping.
        ({"dynamic_temperature": {"mapping": {"kind": "linear", "h_low": "a", "h_high": 1,
                                              "t_min": 0, "t_max": 1}}},
         "invalid_param", "dynamic_temperature.mapping", None),
    ],
)
def test_bad_params_name_row_and_field(sampler, row_params, kind, field, index):
    params = [{}, {}, {}, row_params, {}]
    e = bad(sampler, X5, params)
    assert (e.kind, e.row, e.field, e.index) == (kind, 3, field, index), str(e)
    assert "row 3" in str(e) and field.split(".")[-1] in str(e)


def test_bad_logits_name_row_and_index(sampler):
    for value in (np.nan, np.inf):
        x = np.zeros((4, 9), dtype=np.float32)
        x[2, 7] = value
        e = bad(sampler, x, {"seed": 1})
        assert (e.kind, e.row, e.index) == ("invalid_logit", 2, 7), str(e)
        assert "row 2" in str(e) and "index 7" in str(e)
    x = np.zeros((3, 4), dtype=np.float32)
    x[1] = -np.inf
    e = bad(sampler, x, {"seed": 1})
    assert (e.kind, e.row) == ("all_masked", 1)
    # The allow-list leaves only a masked token.
    x = np.zeros((3, 4), dtype=np.float32)
    x[2, 3] = -np.inf
    e = bad(sampler, x, [{"seed": 1}, {"seed": 1}, {"allowed_token_ids": [3], "seed": 1}])
    assert (e.kind, e.row) == ("all_masked", 2)


def test_bad_shapes_and_arguments(reference):
    e = bad(reference, X5, [{}, {}])
    assert e.kind == "shape" and "2 parameter dicts for 5 rows" in str(e)
    e = bad(reference, np.zeros((2, 3, 4), dtype=np.float32), None)
    assert e.kind == "shape"
    e = bad(reference, np.zeros((2, 0), dtype=np.float32), None)
    assert e.kind == "shape"
    e = bad(reference, X5, {}, samples=0)
    assert e.kind == "unsupported"
    e = bad(reference, X5, "temperature=1")
    assert e.kind == "params_parse"
    e = bad(reference, X5, [{}, {}, 3, {}, {}])
    assert (e.kind, e.row) == ("params_parse", 2)
    with pytest.raises(TypeError, match="float32"):
        reference.sample(np.zeros((2, 3)), None)  # float64
    with pytest.raises(TypeError, match="NumPy array"):
        reference.sample([[0.0, 1.0]], None)
    with pytest.raises(ts.InvalidInputError, match="unknown backend"):
        ts.Sampler("tpu")


# ----------------------------------------------------------------- backends


def batch64(vocab=4096, seed=0):
    """64 rows exercising every stage, each with its own seed."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((64, vocab)) * rng.uniform(0.5, 4.0, (64, 1))).astype(np.float32)
    x[5, rng.choice(vocab, vocab // 2, replace=False)] = -np.inf
    kinds = [
        {"temperature": 0},
        ts.preset("chat"),
        ts.preset("code"),
        {"top_k": 40, "temperature": 0.8},
        {"min_p": 0.05, "temperature": 1.2, "order": "vllm"},
        {"top_p": 0.95, "top_k": 100, "order": "llama_cpp"},
        {"repetition_penalty": 1.3, "frequency_penalty": 0.4, "presence_penalty": 0.2,
         "history": [int(t) for t in rng.integers(0, vocab, 20)],
         "prompt_token_ids": [int(t) for t in rng.integers(0, vocab, 30)]},
        {"dynamic_temperature": {"unit": "normalized",
                                 "mapping": {"kind": "linear", "h_low": 0.2, "h_high": 0.9,
                                             "t_min": 0.3, "t_max": 1.3},
                                 "top_p": {"low": 0.8, "high": 0.98}}},
        {"logit_bias": {int(t): 3.0 for t in rng.integers(0, vocab, 5)}, "temperature": 0.7},
        {"allowed_token_ids": [int(t) for t in rng.integers(0, vocab, 50)]},
        {"logprobs": 5, "top_p": 0.9},
    ]
    params = [{**kinds[i % len(kinds)], "seed": 1000 + i, "step": i} for i in range(64)]
    return x, params


def test_64_rows_every_backend_agrees_with_reference(sampler):
    x, params = batch64()
    ref = open_sampler("reference")
    want = ref.sample(x, params, samples=4)
    want_p = ref.probs(x, params).probs
    got = sampler.sample(x, params, samples=4)
    got_p = sampler.probs(x, params).probs
    assert got.tokens.shape == (64, 4)
    for i in range(64):
        same_kept = np.array_equal(got_p[i] > 0, want_p[i] > 0)
        if same_kept:
            np.testing.assert_allclose(got_p[i], want_p[i], atol=1e-5, err_msg=f"row {i}")
            assert got.logprobs[i] == pytest.approx(want.logprobs[i], abs=1e-4)
        assert got.entropies[i] == pytest.approx(want.entropies[i], abs=1e-4)
        for d in range(4):
            if got.tokens[i, d] != want.tokens[i, d]:
                # docs/spec.md §7: a mismatch is a kept-set boundary or u at a CDF boundary.
                u = uniform(params[i]["seed"], params[i]["step"], d)
                assert not same_kept or near_boundary(want_p[i], u), f"row {i} draw {d}"
    assert got.top_token_ids.shape == (64, 5)
    assert (got.top_token_ids[10] >= 0).all() and (got.top_token_ids[0] == -1).all()


def test_rows_do_not_depend_on_their_batch(sampler):
    x, params = batch64(vocab=2048, seed=1)
    full = sampler.sample(x, params)
    order = np.arange(64)[::-1]
    shuffled = sampler.sample(np.ascontiguousarray(x[order]), [params[i] for i in order])
    assert shuffled.tokens[::-1].tolist() == full.tokens.tolist()
    for i in (0, 7, 33):
        alone = sampler.sample(x[i], params[i])
        assert alone.tokens[0] == full.tokens[i]


def test_unseeded_rows_report_their_seed(reference):
    r = reference.sample(np.stack([LN] * 3), None, samples=16)
    again = reference.sample(np.stack([LN] * 3), [{"seed": int(s)} for s in r.seeds], samples=16)
    assert again.tokens.tolist() == r.tokens.tolist()


# ----------------------------------------------------------------- threads


def test_the_interpreter_lock_is_released_while_sampling():
    s = open_sampler("reference")  # the slowest backend: a long call
    x = np.random.default_rng(2).standard_normal((16, 1 << 17)).astype(np.float32)
    params = {"seed": 1, "top_p": 0.9, "logprobs": 5}
    window = {}

    def call():
        window["start"] = time.perf_counter()
        s.sample(x, params)
        window["end"] = time.perf_counter()

    t = threading.Thread(target=call)
    ticks = []
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    start, end = window["start"], window["end"]
    assert end - start > 0.05, "the call was too short to tell"
    inside = [tk for tk in ticks if start + 0.01 < tk < end - 0.01]
    # Holding the lock would freeze this thread for the whole call.
    assert len(inside) >= 5, f"{len(inside)} ticks during a {end - start:.3f} s call"


@pytest.mark.parametrize("name", BACKENDS)
def test_one_sampler_shared_by_threads(name):
    s = open_sampler(name)
    x, params = batch64(vocab=1024, seed=3)
    want = s.sample(x, params).tokens.tolist()
    results = [None] * 4

    def worker(k):
        results[k] = s.sample(x, params).tokens.tolist()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 4


# ----------------------------------------------------------------- stubs


def test_type_stubs_match_the_module():
    # mypy's stubtest compares token_sampler.pyi (shipped in the wheel) with the
    # module as built: every name, signature and class, both ways.
    allowlist = Path(__file__).with_name("stubtest_allowlist.txt")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "token_sampler", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
