/*
 * The C ABI from C: compiled with the system compiler against
 * include/token_sampler.h and linked to libtoken_sampler_c (tests/c_test.rs
 * builds and runs it). Goldens are derived by hand from docs/spec.md; the CPU
 * and GPU backends are checked against the reference.
 *
 * Without a GPU adapter the GPU cases are skipped loudly, unless
 * REQUIRE_GPU=1, which makes a missing adapter a failure.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token_sampler.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, "\n");                                           \
        }                                                                    \
    } while (0)

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

static const char *BACKEND_NAMES[] = {"auto", "reference", "cpu", "gpu"};

/* ln 1, ln 2, ln 3: softmax = 1/6, 1/3, 1/2. */
static float LN123[3];

static ts_sampler *open_backend(uint32_t backend) {
    ts_sampler *s = NULL;
    ts_error err;
    ts_status st = ts_sampler_new(backend, &s, &err);
    if (st != TS_STATUS_OK) {
        const char *require = getenv("REQUIRE_GPU");
        if (backend == TS_BACKEND_GPU && !(require && strcmp(require, "1") == 0)) {
            fprintf(stderr, "NO GPU ADAPTER: C GPU cases skipped (%s); REQUIRE_GPU=1 makes this a failure\n",
                    err.message);
            return NULL;
        }
        CHECK(0, "opening %s: %s: %s", BACKEND_NAMES[backend], ts_status_name(st), err.message);
        return NULL;
    }
    return s;
}

/* Hand-derived π for logits ln[1, 2, 3] (docs/spec.md §3). */
static void goldens(ts_sampler *s, const char *name) {
    struct {
        const char *what;
        ts_params p;
        double want[3];
    } cases[8];
    int n = 0;
    uint32_t hist2[] = {2, 2};
    uint32_t bias_id[] = {0};
    float bias_val[] = {(float)log(4.0)};
    uint32_t allowed[] = {0, 1};

    cases[n].what = "defaults";
    cases[n].p = ts_params_default();
    cases[n].want[0] = 1.0 / 6, cases[n].want[1] = 2.0 / 6, cases[n].want[2] = 3.0 / 6;
    n++;
    cases[n].what = "temperature 0.5";
    cases[n].p = ts_params_default();
    cases[n].p.temperature = 0.5f;
    cases[n].want[0] = 1.0 / 14, cases[n].want[1] = 4.0 / 14, cases[n].want[2] = 9.0 / 14;
    n++;
    cases[n].what = "top_k 2";
    cases[n].p = ts_params_default();
    cases[n].p.top_k = 2;
    cases[n].want[0] = 0, cases[n].want[1] = 2.0 / 5, cases[n].want[2] = 3.0 / 5;
    n++;
    cases[n].what = "top_p 0.5";
    cases[n].p = ts_params_default();
    cases[n].p.top_p = 0.5f;
    cases[n].want[0] = 0, cases[n].want[1] = 0, cases[n].want[2] = 1;
    n++;
    cases[n].what = "min_p 0.5";
    cases[n].p = ts_params_default();
    cases[n].p.min_p = 0.5f;
    cases[n].want[0] = 0, cases[n].want[1] = 2.0 / 5, cases[n].want[2] = 3.0 / 5;
    n++;
    cases[n].what = "frequency 1, presence 0.5, history [2, 2]";
    cases[n].p = ts_params_default();
    cases[n].p.frequency_penalty = 1.0f;
    cases[n].p.presence_penalty = 0.5f;
    cases[n].p.history = hist2;
    cases[n].p.n_history = 2;
    {
        double w2 = 3.0 * exp(-2.5);
        cases[n].want[0] = 1 / (3 + w2), cases[n].want[1] = 2 / (3 + w2), cases[n].want[2] = w2 / (3 + w2);
    }
    n++;
    cases[n].what = "logit_bias {0: ln 4}";
    cases[n].p = ts_params_default();
    cases[n].p.logit_bias_ids = bias_id;
    cases[n].p.logit_bias_values = bias_val;
    cases[n].p.n_logit_bias = 1;
    cases[n].want[0] = 4.0 / 9, cases[n].want[1] = 2.0 / 9, cases[n].want[2] = 3.0 / 9;
    n++;
    cases[n].what = "allowed [0, 1]";
    cases[n].p = ts_params_default();
    cases[n].p.allowed_token_ids = allowed;
    cases[n].p.n_allowed_token_ids = 2;
    cases[n].want[0] = 1.0 / 3, cases[n].want[1] = 2.0 / 3, cases[n].want[2] = 0;
    n++;

    for (int i = 0; i < n; i++) {
        double probs[3];
        ts_row_probs row;
        ts_error err;
        ts_status st = ts_probs(s, LN123, 1, 3, &cases[i].p, probs, &row, &err);
        CHECK(st == TS_STATUS_OK, "%s %s: %s", name, cases[i].what, err.message);
        if (st != TS_STATUS_OK) continue;
        uint32_t kept = 0;
        for (int t = 0; t < 3; t++) {
            CHECK(NEAR(probs[t], cases[i].want[t], 1e-6), "%s %s: pi[%d] = %.9f, want %.9f", name,
                  cases[i].what, t, probs[t], cases[i].want[t]);
            kept += cases[i].want[t] > 0;
        }
        CHECK(row.kept == kept, "%s %s: kept %u, want %u", name, cases[i].what, row.kept, kept);
    }

    /* Entropy of [1/6, 1/3, 1/2] and the greedy row. */
    double h = -(log(1.0 / 6) / 6 + log(1.0 / 3) / 3 + log(0.5) / 2);
    ts_params p[2] = {ts_params_default(), ts_params_default()};
    p[0].has_seed = 1;
    p[0].seed = 42;
    p[1].temperature = 0.0f;
    float two[6];
    memcpy(two, LN123, sizeof LN123);
    memcpy(two + 3, LN123, sizeof LN123);
    ts_row_result r[2];
    uint32_t draws[2 * 4];
    ts_error err;
    ts_status st = ts_sample(s, two, 2, 3, p, 4, r, draws, &err);
    CHECK(st == TS_STATUS_OK, "%s sample: %s", name, err.message);
    CHECK(NEAR(r[0].entropy, h, 1e-5), "%s entropy %.9f, want %.9f", name, r[0].entropy, h);
    CHECK(r[0].seed == 42 && isnan(r[0].guide_entropy), "%s seed/guide", name);
    CHECK(draws[0] == r[0].token, "%s draws[0] is the token", name);
    CHECK(NEAR(r[0].logprob, log((r[0].token + 1) / 6.0), 1e-5), "%s logprob %.9f", name, r[0].logprob);
    CHECK(r[1].token == 2 && r[1].kept == 1 && r[1].logprob == 0.0 && r[1].temperature == 0.0,
          "%s greedy: token %u kept %u", name, r[1].token, r[1].kept);
    for (int d = 0; d < 4; d++) CHECK(draws[4 + d] == 2, "%s greedy draw %d = %u", name, d, draws[4 + d]);

    /* Entropy-guided temperature: H in bits mapped linearly from [0, 2] onto [0, 2]. */
    ts_params dyn = ts_params_default();
    dyn.dynamic_temperature_json =
        "{\"unit\": \"bits\", \"mapping\": {\"kind\": \"linear\", \"h_low\": 0, \"h_high\": 2, \"t_min\": 0, \"t_max\": 2}}";
    double probs[3];
    ts_row_probs row;
    st = ts_probs(s, LN123, 1, 3, &dyn, probs, &row, &err);
    CHECK(st == TS_STATUS_OK, "%s dynamic: %s", name, err.message);
    double t = h / log(2.0);
    double w[3] = {1, pow(2, 1 / t), pow(3, 1 / t)};
    double sum = w[0] + w[1] + w[2];
    CHECK(NEAR(row.temperature, t, 1e-5 * t), "%s dynamic T %.9f, want %.9f", name, row.temperature, t);
    for (int k = 0; k < 3; k++) CHECK(NEAR(probs[k], w[k] / sum, 1e-6), "%s dynamic pi[%d]", name, k);
}

/* Bad input: each error names its row, field and index. */
static void errors(ts_sampler *s, const char *name) {
    float x[4 * 5];
    for (int i = 0; i < 20; i++) x[i] = (float)(i % 5);
    ts_params p[4];
    for (int i = 0; i < 4; i++) p[i] = ts_params_default();
    ts_row_result r[4];
    ts_error err;

    p[2].temperature = -1.0f;
    ts_status st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_INVALID_PARAM && err.status == st, "%s negative T: %s", name, ts_status_name(st));
    CHECK(err.row == 2 && strcmp(err.field, "temperature") == 0 && strstr(err.message, "row 2"),
          "%s negative T: row %lld field '%s' message '%s'", name, (long long)err.row, err.field, err.message);
    p[2] = ts_params_default();

    uint32_t hist[] = {1, 4, 5};
    p[3].history = hist;
    p[3].n_history = 3;
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_TOKEN_OUT_OF_RANGE && err.row == 3 && err.index == 2 && strcmp(err.field, "history") == 0,
          "%s history id 5 of vocab 5: %s row %lld index %lld '%s'", name, ts_status_name(st), (long long)err.row,
          (long long)err.index, err.field);
    p[3].history = NULL;
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_NULL_POINTER && err.row == 3 && strcmp(err.field, "history") == 0,
          "%s NULL history: %s '%s'", name, ts_status_name(st), err.field);
    p[3] = ts_params_default();

    p[1].order = 7;
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_INVALID_PARAM && err.row == 1 && strcmp(err.field, "order") == 0, "%s order 7", name);
    p[1] = ts_params_default();

    p[0].dynamic_temperature_json = "{\"mapping\": {\"kind\": \"edt\", \"t0\": 1, \"theta\": 1, \"base\": 2}}";
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_INVALID_PARAM && err.row == 0 && strstr(err.field, "base"),
          "%s edt base 2: %s '%s' %s", name, ts_status_name(st), err.field, err.message);
    p[0].dynamic_temperature_json = "{\"mapping\": {\"kind\": \"linear\", \"h_low\": 0}, \"bogus\": 1}";
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_INVALID_PARAM && err.row == 0 && strstr(err.field, "dynamic_temperature"),
          "%s bad JSON: %s '%s' %s", name, ts_status_name(st), err.field, err.message);
    p[0] = ts_params_default();

    x[3 * 5 + 4] = NAN;
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_INVALID_LOGIT && err.row == 3 && err.index == 4 && strstr(err.message, "index 4"),
          "%s NaN at [3, 4]: %s row %lld index %lld", name, ts_status_name(st), (long long)err.row,
          (long long)err.index);
    x[3 * 5 + 4] = 4.0f;

    for (int i = 0; i < 5; i++) x[5 + i] = -INFINITY;
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_ALL_MASKED && err.row == 1, "%s all masked row 1: %s", name, ts_status_name(st));
    for (int i = 0; i < 5; i++) x[5 + i] = (float)i;

    st = ts_sample(s, x, 4, 5, p, 0, r, NULL, &err);
    CHECK(st == TS_STATUS_UNSUPPORTED, "%s samples 0: %s", name, ts_status_name(st));
    st = ts_sample(s, NULL, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_NULL_POINTER && strcmp(err.field, "logits") == 0, "%s NULL logits", name);
    st = ts_sample(s, x, 0, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_SHAPE, "%s zero rows: %s", name, ts_status_name(st));
    st = ts_sample(s, x, 4, 5, p, 1, r, NULL, NULL); /* err may be NULL */
    CHECK(st == TS_STATUS_OK, "%s NULL err on success", name);
    st = ts_sample(NULL, x, 4, 5, p, 1, r, NULL, &err);
    CHECK(st == TS_STATUS_NULL_POINTER && strcmp(err.field, "sampler") == 0, "%s NULL sampler", name);
}

/* The samplers of docs/spec.md §3.10–§3.15 from C, on the reference backend.
 * Logits [4, 3, 2, 1, 0]: q = e^-i / Σ_{j<5} e^-j = .6321, .2325, .0855,
 * .0315, .0116; H = 1.0001 nats. */
static void extended(ts_sampler *s) {
    float x[5] = {4, 3, 2, 1, 0};
    double probs[5], base[5];
    ts_row_probs row;
    ts_row_result r;
    ts_error err;
    ts_params p = ts_params_default();
    ts_status st = ts_probs(s, x, 1, 5, &p, base, &row, &err);
    CHECK(st == TS_STATUS_OK && row.kept == 5 && isnan(row.mirostat_mu), "defaults: %s kept %u", ts_status_name(st),
          row.kept);

    /* Top-nσ 1: mean 2, σ = √2, keep x ≥ 4 − √2 = 2.586: tokens 0 and 1. */
    p.top_n_sigma = 1.0f;
    st = ts_probs(s, x, 1, 5, &p, probs, &row, &err);
    CHECK(st == TS_STATUS_OK && row.kept == 2 && NEAR(probs[0], 1 / (1 + exp(-1.0)), 1e-9) && probs[2] == 0,
          "top_n_sigma 1: %s kept %u π0 %g", ts_status_name(st), row.kept, probs[0]);
    p.has_seed = 1, p.seed = 7;
    st = ts_sample(s, x, 1, 5, &p, 1, &r, NULL, &err);
    CHECK(st == TS_STATUS_OK && r.kept == 2 && r.token <= 1 && isnan(r.mirostat_mu), "top_n_sigma 1 sample: kept %u token %u",
          r.kept, r.token);
    p = ts_params_default();

    /* Typical 0.5: scores |−ln q − H| are .54, .46, 1.46, …; token 1 (.23)
     * then token 0 reach 0.5: kept 2. ε 0.05 and η 0.05 (min(.05, √.05·e^−H)
     * = .05) keep q ≥ .05: 3. XTC θ 0.1, P 1: q ≥ 0.1 is {0, 1}; 0 goes. */
    struct {
        const char *what;
        float *field;
        float value;
        uint32_t kept;
    } cuts[] = {
        {"typical_p 0.5", &p.typical_p, 0.5f, 2},
        {"epsilon_cutoff 0.05", &p.epsilon_cutoff, 0.05f, 3},
        {"eta_cutoff 0.05", &p.eta_cutoff, 0.05f, 3},
        {"xtc_probability 1", &p.xtc_probability, 1.0f, 4},
    };
    for (int i = 0; i < 4; i++) {
        p = ts_params_default();
        *cuts[i].field = cuts[i].value;
        st = ts_probs(s, x, 1, 5, &p, probs, &row, &err);
        CHECK(st == TS_STATUS_OK && row.kept == cuts[i].kept, "%s: %s kept %u, want %u", cuts[i].what,
              ts_status_name(st), row.kept, cuts[i].kept);
    }
    CHECK(probs[0] == 0 && probs[1] > base[1], "xtc removes token 0: π %g %g", probs[0], probs[1]);

    /* DRY: history 0 1 2 0 1 ends with a repeat of `0 1`, so token 2 (what
     * followed it) loses M·b^0 = 1: π2/π0 = e^(2 − 1 − 4). A breaker 1 ends
     * the history: nothing is penalised. */
    uint32_t hist[] = {0, 1, 2, 0, 1};
    uint32_t breakers[] = {1};
    p = ts_params_default();
    p.dry_multiplier = 1.0f;
    p.history = hist, p.n_history = 5;
    st = ts_probs(s, x, 1, 5, &p, probs, &row, &err);
    CHECK(st == TS_STATUS_OK && NEAR(probs[2] / probs[0], exp(-3.0), 1e-9) && probs[2] < base[2],
          "dry: %s π2/π0 %g", ts_status_name(st), probs[2] / probs[0]);
    p.dry_sequence_breakers = breakers, p.n_dry_sequence_breakers = 1;
    st = ts_probs(s, x, 1, 5, &p, probs, &row, &err);
    CHECK(st == TS_STATUS_OK && NEAR(probs[2], base[2], 1e-12), "dry with breaker 1: π2 %g vs %g", probs[2], base[2]);

    /* Mirostat v2, tau 3 (mu 6): keep −log2 q ≤ 6, i.e. q ≥ 1/64: tokens
     * 0–3. probs reports the mu it cut with; sample returns
     * mu − eta·(−log2 π_token − tau). */
    p = ts_params_default();
    p.mirostat = 2;
    p.mirostat_tau = 3.0f;
    st = ts_probs(s, x, 1, 5, &p, probs, &row, &err);
    CHECK(st == TS_STATUS_OK && row.kept == 4 && row.mirostat_mu == 6.0 && probs[4] == 0,
          "mirostat 2 probs: %s kept %u mu %g", ts_status_name(st), row.kept, row.mirostat_mu);
    p.has_seed = 1, p.seed = 11;
    st = ts_sample(s, x, 1, 5, &p, 1, &r, NULL, &err);
    CHECK(st == TS_STATUS_OK && r.kept == 4 && r.token < 4, "mirostat 2 sample: %s kept %u", ts_status_name(st), r.kept);
    if (st == TS_STATUS_OK && r.token < 4) {
        double want = 6.0 - 0.1f * (-log2(probs[r.token]) - 3.0);
        CHECK(NEAR(r.mirostat_mu, want, 1e-6), "mirostat mu' %g, want %g", r.mirostat_mu, want);
        /* Passed back, it is the mu of the next cut (an f32 read as the
         * decimal it prints as, hence the tolerance). */
        p.has_mirostat_mu = 1, p.mirostat_mu = (float)r.mirostat_mu;
        st = ts_probs(s, x, 1, 5, &p, probs, &row, &err);
        CHECK(st == TS_STATUS_OK && row.mirostat_mu != 6.0 && NEAR(row.mirostat_mu, r.mirostat_mu, 1e-6),
              "mu passed back: %.9g vs %.9g", row.mirostat_mu, r.mirostat_mu);
    }

    /* Bad values: an error naming row and field. */
    ts_params rows[2] = {ts_params_default(), ts_params_default()};
    float x2[10] = {4, 3, 2, 1, 0, 4, 3, 2, 1, 0};
    ts_row_result r2[2];
    struct {
        const char *field;
        ts_status status;
    } bad[] = {
        {"top_n_sigma", TS_STATUS_INVALID_PARAM},  {"typical_p", TS_STATUS_INVALID_PARAM},
        {"dry_base", TS_STATUS_INVALID_PARAM},     {"mirostat.version", TS_STATUS_INVALID_PARAM},
        {"has_mirostat_mu", TS_STATUS_INVALID_PARAM}, {"top_k", TS_STATUS_INVALID_PARAM},
        {"dry_sequence_breakers", TS_STATUS_NULL_POINTER},
    };
    for (int i = 0; i < 7; i++) {
        rows[1] = ts_params_default();
        switch (i) {
        case 0: rows[1].top_n_sigma = NAN; break;
        case 1: rows[1].typical_p = 1.5f; break;
        case 2: rows[1].dry_multiplier = 1.0f, rows[1].dry_base = 0.5f; break;
        case 3: rows[1].mirostat = 3; break;
        case 4: rows[1].mirostat = 2, rows[1].has_mirostat_mu = 2; break;
        case 5: rows[1].mirostat = 1, rows[1].top_k = 3; break;
        case 6: rows[1].n_dry_sequence_breakers = 1; break;
        }
        st = ts_sample(s, x2, 2, 5, rows, 1, r2, NULL, &err);
        CHECK(st == bad[i].status && err.row == 1 && strcmp(err.field, bad[i].field) == 0 && strstr(err.message, "row 1"),
              "bad %s: %s row %lld field '%s' message '%s'", bad[i].field, ts_status_name(st), (long long)err.row,
              err.field, err.message);
    }
}

/* A float that is exactly a binary16 value, and its bit pattern. */
static uint16_t f16_bits(float v) {
    /* Values used here are zero or normal and exactly representable: sign, exponent, 10 mantissa bits. */
    uint32_t u;
    memcpy(&u, &v, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    if ((u & 0x7fffffffu) == 0) return (uint16_t)sign; /* ±0 */
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t mant = (u >> 13) & 0x3ffu;
    return (uint16_t)(sign | ((uint32_t)exp << 10) | mant);
}

#define B 16
#define V 257

/* A batch with a mix of stages; the same on every backend. */
static void batch(float *x, ts_params *p, uint32_t *hist) {
    uint32_t state = 12345;
    for (int i = 0; i < B * V; i++) {
        state = state * 1664525u + 1013904223u;
        /* Multiples of 1/64 in [-4, 4): exact in binary16 too. */
        x[i] = (float)((int)(state >> 23) % 512 - 256) / 64.0f;
    }
    for (int i = 0; i < 8; i++) hist[i] = (uint32_t)(i * 31 % V);
    for (int i = 0; i < B; i++) {
        p[i] = ts_params_default();
        p[i].has_seed = 1;
        p[i].seed = 1000 + (uint64_t)i;
        p[i].step = (uint64_t)i * 3;
        switch (i % 5) {
        case 0: p[i].temperature = 0.0f; break;
        case 1: p[i].temperature = 0.7f; p[i].top_p = 0.9f; break;
        case 2: p[i].top_k = 20; p[i].order = TS_ORDER_LLAMA_CPP; break;
        case 3: p[i].min_p = 0.1f; p[i].order = TS_ORDER_VLLM; break;
        case 4:
            p[i].repetition_penalty = 1.3f;
            p[i].frequency_penalty = 0.2f;
            p[i].history = hist;
            p[i].n_history = 8;
            break;
        }
    }
}

/* cpu and gpu against the reference: π within 1e-5, tokens equal (a CDF
 * boundary within 1e-6 of u is the only allowed difference; with these seeds
 * none occurs); f16 input gives its f32 widening's results. */
static void agreement(ts_sampler *ref, ts_sampler *s, const char *name) {
    static float x[B * V];
    static uint16_t x16[B * V];
    static double want[B * V], got[B * V];
    ts_params p[B];
    uint32_t hist[8];
    ts_row_result rr[B], rs[B], r16[B];
    uint32_t dref[B * 8], ds[B * 8], d16[B * 8];
    ts_error err;
    batch(x, p, hist);
    for (int i = 0; i < B * V; i++) x16[i] = f16_bits(x[i]);

    CHECK(ts_probs(ref, x, B, V, p, want, NULL, &err) == TS_STATUS_OK, "reference probs: %s", err.message);
    CHECK(ts_probs(s, x, B, V, p, got, NULL, &err) == TS_STATUS_OK, "%s probs: %s", name, err.message);
    double worst = 0;
    for (int i = 0; i < B * V; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    CHECK(worst <= 1e-5, "%s: max |pi - pi_ref| = %g", name, worst);

    CHECK(ts_sample(ref, x, B, V, p, 8, rr, dref, &err) == TS_STATUS_OK, "reference sample: %s", err.message);
    CHECK(ts_sample(s, x, B, V, p, 8, rs, ds, &err) == TS_STATUS_OK, "%s sample: %s", name, err.message);
    CHECK(ts_sample_f16(s, x16, B, V, p, 8, r16, d16, &err) == TS_STATUS_OK, "%s f16: %s", name, err.message);
    for (int i = 0; i < B; i++) {
        for (int d = 0; d < 8; d++) {
            CHECK(ds[i * 8 + d] == dref[i * 8 + d], "%s row %d draw %d: %u, reference %u", name, i, d,
                  ds[i * 8 + d], dref[i * 8 + d]);
            CHECK(d16[i * 8 + d] == ds[i * 8 + d], "%s f16 row %d draw %d", name, i, d);
        }
        CHECK(NEAR(rs[i].entropy, rr[i].entropy, 1e-4), "%s row %d entropy", name, i);
        CHECK(NEAR(rs[i].logprob, rr[i].logprob, 1e-4), "%s row %d logprob", name, i);
        CHECK(r16[i].logprob == rs[i].logprob, "%s row %d f16 logprob", name, i);
    }

    /* A row's draws do not depend on its batch: row 7 alone. */
    ts_row_result alone;
    uint32_t dalone[8];
    CHECK(ts_sample(s, x + 7 * V, 1, V, &p[7], 8, &alone, dalone, &err) == TS_STATUS_OK, "%s alone", name);
    CHECK(memcmp(dalone, ds + 7 * 8, sizeof dalone) == 0, "%s row 7 alone draws differ", name);
}

/* One sampler shared by four threads: calls run one at a time, results are right. */
struct job {
    ts_sampler *s;
    const float *x;
    const ts_params *p;
    uint32_t tokens[B];
    ts_status st;
};

static void *worker(void *arg) {
    struct job *j = arg;
    ts_row_result r[B];
    for (int k = 0; k < 5; k++) {
        j->st = ts_sample(j->s, j->x, B, V, j->p, 1, r, NULL, NULL);
        if (j->st != TS_STATUS_OK) return NULL;
    }
    for (int i = 0; i < B; i++) j->tokens[i] = r[i].token;
    return NULL;
}

static void threads(ts_sampler *s, const char *name) {
    static float x[B * V];
    ts_params p[B];
    uint32_t hist[8];
    batch(x, p, hist);
    ts_row_result want[B];
    CHECK(ts_sample(s, x, B, V, p, 1, want, NULL, NULL) == TS_STATUS_OK, "%s threads: first call", name);
    struct job jobs[4];
    pthread_t th[4];
    for (int k = 0; k < 4; k++) {
        jobs[k].s = s, jobs[k].x = x, jobs[k].p = p;
        pthread_create(&th[k], NULL, worker, &jobs[k]);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        CHECK(jobs[k].st == TS_STATUS_OK, "%s thread %d: %s", name, k, ts_status_name(jobs[k].st));
        for (int i = 0; i < B; i++) CHECK(jobs[k].tokens[i] == want[i].token, "%s thread %d row %d", name, k, i);
    }
}

int main(void) {
    for (int i = 0; i < 3; i++) LN123[i] = (float)log((double)(i + 1));
    printf("token_sampler %s (C ABI)\n", ts_version());

    ts_sampler *ref = open_backend(TS_BACKEND_REFERENCE);
    if (!ref) return 1;
    CHECK(ts_sampler_backend(ref) == TS_BACKEND_REFERENCE, "backend of reference");
    uint32_t backends[] = {TS_BACKEND_REFERENCE, TS_BACKEND_CPU, TS_BACKEND_GPU};
    for (int b = 0; b < 3; b++) {
        const char *name = BACKEND_NAMES[backends[b]];
        ts_sampler *s = b == 0 ? ref : open_backend(backends[b]);
        if (!s) continue;
        printf("%s: %s\n", name, ts_sampler_device(s));
        goldens(s, name);
        errors(s, name);
        if (b > 0) agreement(ref, s, name);
        threads(s, name);
        if (s != ref) ts_sampler_free(s);
    }
    extended(ref);
    ts_sampler_free(ref);
    ts_sampler_free(NULL);

    ts_sampler *none = NULL;
    ts_error err;
    CHECK(ts_sampler_new(9, &none, &err) == TS_STATUS_UNSUPPORTED && none == NULL && strcmp(err.field, "backend") == 0,
          "backend 9");
    CHECK(strcmp(ts_status_name(TS_STATUS_ALL_MASKED), "TS_STATUS_ALL_MASKED") == 0, "status name");

    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
