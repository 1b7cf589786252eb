"""The samplers of docs/spec.md §3.10–§3.15 through the Python bindings, on
the reference backend (the cpu and gpu backends refuse them until they
implement them, docs/spec.md §3.9): parameters pass through, mirostat's mu
comes back in the row dicts and in the ``mirostat_mus`` columns, and bad
values raise InvalidInputError naming row and field.

Logits [4, 3, 2, 1, 0]: q_i = e^-i / Σ_{j<5} e^-j = .6321, .2325, .0855,
.0315, .0116 and H = 1.0001 nats.
"""

import math

import numpy as np
import pytest

import token_sampler as ts
from conftest import open_sampler

X = np.array([4.0, 3.0, 2.0, 1.0, 0.0], dtype=np.float32)
Q = np.exp(-np.arange(5.0)) / np.exp(-np.arange(5.0)).sum()


@pytest.fixture
def ref():
    return open_sampler("reference")


@pytest.mark.parametrize(
    "params,kept",
    [
        # mean 2, σ = √2: keep x ≥ 4 − √2 = 2.59.
        ({"top_n_sigma": 1.0}, [0, 1]),
        # scores |−ln q − H| = .54, .46, 1.46, …: token 1 (.23), then token 0.
        ({"typical_p": 0.5}, [0, 1]),
        ({"epsilon_cutoff": 0.05}, [0, 1, 2]),
        # min(η, √η·e^−H) = min(.05, .082) = .05.
        ({"eta_cutoff": 0.05}, [0, 1, 2]),
        # q ≥ 0.1 is {0, 1}: all but the least likely (1) go.
        ({"xtc_threshold": 0.1, "xtc_probability": 1.0}, [1, 2, 3, 4]),
        # mu = 2·tau = 6: keep −log2 q ≤ 6, q ≥ 1/64.
        ({"mirostat": {"version": 2, "tau": 3.0}}, [0, 1, 2, 3]),
    ],
)
def test_cuts_pass_through(ref, params, kept):
    out = ref.probs(X, params)
    pi = out.probs[0]
    assert list(np.nonzero(pi > 0)[0]) == kept
    assert out.kept[0] == len(kept)
    np.testing.assert_allclose(pi[kept], Q[kept] / Q[kept].sum(), rtol=1e-9)


def test_dry_penalises_the_token_that_extends_a_repeat(ref):
    # 0 1 2 0 1 ends with a repeat of `0 1`: token 2 loses M·b^0 = 1.
    base = ref.probs(X).probs[0]
    out = ref.probs(X, {"dry_multiplier": 1.0, "history": [0, 1, 2, 0, 1]}).probs[0]
    assert out[2] < base[2]
    assert math.isclose(out[2] / out[0], math.exp(-3.0), rel_tol=1e-9)
    # A breaker as the last token: no repeat reaches the end, nothing changes.
    broken = ref.probs(X, {"dry_multiplier": 1.0, "history": [0, 1, 2, 0, 1],
                           "dry_sequence_breakers": [1]}).probs[0]
    np.testing.assert_allclose(broken, base, rtol=1e-12)


def test_mirostat_mu_in_rows_and_columns(ref):
    xs = np.stack([X, X])
    miro = {"mirostat": {"version": 2, "tau": 3.0, "eta": 0.1}, "seed": 11}
    r = ref.sample(xs, [miro, {"seed": 11}])
    pi = ref.probs(X, miro).probs[0]
    tok = int(r.tokens[0])
    want = 6.0 - 0.1 * (-math.log2(pi[tok]) - 3.0)
    assert r.mirostat_mus.dtype == np.float64 and r.mirostat_mus.shape == (2,)
    assert math.isclose(r.mirostat_mus[0], want, rel_tol=1e-6)
    assert math.isnan(r.mirostat_mus[1])
    assert r[0]["mirostat_mu"] == r.mirostat_mus[0]
    assert "mirostat_mu" not in r[1]
    assert [d.get("mirostat_mu") for d in r.rows()] == [r[0]["mirostat_mu"], None]

    p = ref.probs(xs, [miro, {}])
    assert p.mirostat_mus.dtype == np.float64
    assert p.mirostat_mus[0] == 6.0 and math.isnan(p.mirostat_mus[1])
    # Passed back as mirostat.mu, it is the mu of the next cut.
    nxt = ref.probs(X, {"mirostat": {"version": 2, "tau": 3.0, "mu": float(r.mirostat_mus[0])}})
    assert math.isclose(nxt.mirostat_mus[0], r.mirostat_mus[0], rel_tol=1e-6)
    assert nxt.mirostat_mus[0] != 6.0


X5 = np.zeros((5, 10), dtype=np.float32)


@pytest.mark.parametrize(
    "row_params,kind,field,index",
    [
        ({"top_n_sigma": float("nan")}, "invalid_param", "top_n_sigma", None),
        ({"typical_p": 1.5}, "invalid_param", "typical_p", None),
        ({"xtc_probability": 2.0}, "invalid_param", "xtc_probability", None),
        ({"epsilon_cutoff": 1.0}, "invalid_param", "epsilon_cutoff", None),
        ({"eta_cutoff": -0.1}, "invalid_param", "eta_cutoff", None),
        ({"dry_multiplier": 1.0, "dry_base": 0.5}, "invalid_param", "dry_base", None),
        ({"dry_penalty_last_n": -2}, "invalid_param", "dry_penalty_last_n", None),
        ({"dry_sequence_breakers": [3, 99]}, "token_out_of_range", "dry_sequence_breakers", 1),
        ({"mirostat": {"version": 2, "tau": -1.0}}, "invalid_param", "mirostat.tau", None),
        ({"mirostat": {"version": 2}, "top_k": 3}, "invalid_param", "top_k", None),
    ],
)
def test_bad_values_name_row_and_field(ref, row_params, kind, field, index):
    params = [{}, {}, {}, row_params, {}]
    with pytest.raises(ts.InvalidInputError) as info:
        ref.sample(X5, params)
    e = info.value
    assert (e.kind, e.row, e.field, e.index) == (kind, 3, field, index), str(e)
    assert "row 3" in str(e)


def test_bad_mirostat_version_names_it(ref):
    with pytest.raises(ts.InvalidInputError) as info:
        ref.probs(X5, [{}, {"mirostat": {"version": 3}}, {}, {}, {}])
    assert info.value.row == 1 and info.value.field == "mirostat.version", str(info.value)
