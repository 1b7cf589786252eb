#!/usr/bin/env python3
"""Generate text from SmolLM2-135M-Instruct with token-sampler doing the sampling.

llama.cpp (through llama-cpp-python) runs the model; every decode step, the
next-token logits of all running prompts form one [B, V] float32 batch that
token-sampler samples in one call, each row with its own parameters: greedy
rows, the `chat` and `code` presets, an entropy-guided row and a row with
penalties over its history. A row that emits an end-of-generation token
leaves the batch, so the batch shrinks as prompts finish.

    scripts/setup.sh && scripts/setup_example.sh
    .venv/bin/python examples/python/generate.py --backend cpu --max-tokens 48

Options:
    --backend reference|cpu|gpu  the sampler backend (default: auto)
    --max-tokens N               tokens per prompt at most (default 64)
    --json                       print one JSON object instead of text
    --prompts a,b,...            run only these prompts, in this order
    --check-greedy               also run llama.cpp's own temperature-0
                                 generation for every greedy row and report
                                 whether the token ids are identical
    --model PATH                 the GGUF (default: the cached SmolLM2, see
                                 scripts/setup_example.sh)
    --threads N                  llama.cpp threads (default: llama-cpp-python's,
                                 half the cores)

Each prompt is decoded in a llama.cpp context of its own, exactly as
llama-cpp-python's own generation decodes it (the whole prompt, then one
token per step), so a greedy row can be compared token for token with
llama.cpp's greedy continuation, and a seeded row's logits do not depend on
which other prompts run beside it. Seeded rows draw with
(seed, step = tokens generated so far), so their text is the same on every
backend and in any batch composition (docs/spec.md §5).
"""

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import llama_cpp
import token_sampler as ts

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def chat_prompt(user):
    """SmolLM2-Instruct's chat format (ChatML): one user turn, then the
    assistant's turn to complete."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


# name → (user message, the row's parameters: the CLI's JSON names).
PROMPTS = {
    "greedy": ("What is the capital of France?", {"temperature": 0}),
    "chat": ("Write a haiku about the sea.", {**ts.preset("chat"), "seed": 7}),
    "code": ("Write a Python function that reverses a string.", {**ts.preset("code"), "seed": 11}),
    "entropy": (
        "Tell me a short story about a robot.",
        {
            "seed": 3,
            # Sure steps run cold, unsure ones warm: T from 0.3 at H ≤ 0.5 nats
            # to 1.1 at H ≥ 3 nats (docs/spec.md §4).
            "dynamic_temperature": {
                "mapping": {"kind": "linear", "h_low": 0.5, "h_high": 3.0, "t_min": 0.3, "t_max": 1.1}
            },
        },
    ),
    "penalties": (
        "List five fruits.",
        {
            "temperature": 0.8,
            "top_k": 40,
            "repetition_penalty": 1.3,
            "frequency_penalty": 0.5,
            "presence_penalty": 0.3,
            "seed": 5,
        },
    ),
    "greedy-science": ("Explain photosynthesis in one sentence.", {"temperature": 0}),
}


def default_model():
    cache = os.environ.get("TOKEN_SAMPLER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "token-sampler"
    )
    return Path(cache) / "models" / MODEL_FILE


def uses_penalties(params):
    return (
        params.get("repetition_penalty", 1.0) != 1.0
        or params.get("frequency_penalty", 0.0) != 0.0
        or params.get("presence_penalty", 0.0) != 0.0
    )


def open_model(path, n_ctx, threads):
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )


class Sequence:
    """One prompt being generated: its own llama.cpp context and parameters."""

    def __init__(self, name, llm, prompt_ids, params):
        self.name = name
        self.llm = llm
        self.prompt_ids = prompt_ids
        self.params = params
        self.generated = []
        self.stop = None
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def logits(self, n_vocab):
        """The next-token logits llama.cpp computed last, as a NumPy view of
        llama.cpp's own buffer (no copy)."""
        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    def row_params(self):
        """This step's parameters: the row's own, with `step` = tokens so far
        (part of the random key) and, for rows with penalties, the history and
        the prompt."""
        p = dict(self.params, step=len(self.generated))
        if uses_penalties(p):
            p["history"] = self.generated
            p["prompt_token_ids"] = self.prompt_ids
        return p

    def accept(self, token, max_tokens):
        self.generated.append(token)
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            self.stop = "eog"
        elif len(self.generated) >= max_tokens:
            self.stop = "length"
        else:
            self.llm.eval([token])


def generate(sampler, model, names, max_tokens, threads):
    llms = {}
    seqs = []
    for name in names:
        user, params = PROMPTS[name]
        # One context per prompt (the model's weights are memory-mapped once).
        llm = open_model(model, n_ctx=512, threads=threads)
        llms[name] = llm
        ids = llm.tokenize(chat_prompt(user).encode(), add_bos=True, special=True)
        seqs.append(Sequence(name, llm, ids, params))
    n_vocab = seqs[0].llm.n_vocab()

    t0 = time.perf_counter()
    for s in seqs:
        s.llm.eval(s.prompt_ids)
    prompt_s = time.perf_counter() - t0

    batch = np.empty((len(seqs), n_vocab), dtype=np.float32)
    sampler_s = 0.0
    steps = 0
    t_loop = time.perf_counter()
    while True:
        live = [s for s in seqs if s.stop is None]
        if not live:
            break
        rows = batch[: len(live)]
        for i, s in enumerate(live):
            rows[i] = s.logits(n_vocab)
        params = [s.row_params() for s in live]
        t = time.perf_counter()
        result = sampler.sample(rows, params)
        sampler_s += time.perf_counter() - t
        steps += 1
        for s, token in zip(live, result.tokens.tolist()):
            s.accept(token, max_tokens)  # decodes the token unless the row stops
    loop_s = time.perf_counter() - t_loop

    total = sum(len(s.generated) for s in seqs)
    out = []
    for s in seqs:
        text_ids = s.generated[:-1] if s.stop == "eog" else s.generated
        out.append(
            {
                "name": s.name,
                "prompt": PROMPTS[s.name][0],
                "prompt_token_ids": s.prompt_ids,
                "params": s.params,
                "token_ids": s.generated,
                "text": s.llm.detokenize(text_ids).decode("utf-8", errors="replace"),
                "stop": s.stop,
            }
        )
    stats = {
        "steps": steps,
        "tokens": total,
        "prompt_s": prompt_s,
        "loop_s": loop_s,
        "tokens_per_s": total / loop_s if loop_s > 0 else None,
        "sampler_s": sampler_s,
        "sampler_share": sampler_s / loop_s if loop_s > 0 else None,
        "sampler_ms_per_step": 1e3 * sampler_s / steps if steps else None,
    }
    for llm in llms.values():
        llm.close()
    return out, stats


def llama_greedy(model, prompt_ids, max_tokens, threads):
    """llama.cpp's own greedy continuation: llama-cpp-python's generation at
    temperature 0 (its greedy sampler) in a fresh context, stopped where our
    loop stops (an end-of-generation token, or max_tokens)."""
    llm = open_model(model, n_ctx=512, threads=threads)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    ids = []
    for token in itertools.islice(llm.generate(prompt_ids, temp=0.0, repeat_penalty=1.0), max_tokens):
        ids.append(int(token))
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
    llm.close()
    return ids


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="auto", choices=["auto", "reference", "cpu", "gpu"])
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--prompts", default=",".join(PROMPTS))
    ap.add_argument("--check-greedy", action="store_true")
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    model = Path(args.model) if args.model else default_model()
    if not model.exists():
        sys.exit(f"generate.py: no model at {model}; run scripts/setup_example.sh (or pass --model)")
    names = [n for n in args.prompts.split(",") if n]
    unknown = [n for n in names if n not in PROMPTS]
    if unknown or not names:
        sys.exit(f"generate.py: unknown prompts {unknown}; known: {', '.join(PROMPTS)}")

    sampler = ts.Sampler(args.backend)
    prompts, stats = generate(sampler, model, names, args.max_tokens, args.threads)

    report = {
        "backend": sampler.backend,
        "device": sampler.device,
        "model": model.name,
        "max_tokens": args.max_tokens,
        "prompts": prompts,
        **stats,
    }
    if args.check_greedy:
        report["llama_cpp_greedy"] = []
        for p in prompts:
            if p["params"].get("temperature") != 0:
                continue
            ref = llama_greedy(model, p["prompt_token_ids"], args.max_tokens, args.threads)
            report["llama_cpp_greedy"].append(
                {"name": p["name"], "token_ids": ref, "identical": ref == p["token_ids"]}
            )

    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False)
        print()
        return
    for p in prompts:
        print(f"## {p['name']}  {json.dumps(p['params'])}")
        print(f"> {p['prompt']}")
        print(p["text"].strip())
        print()
    print(
        f"{stats['tokens']} tokens in {stats['steps']} steps, {stats['loop_s']:.2f} s: "
        f"{stats['tokens_per_s']:.1f} tokens/s; token-sampler ({sampler.backend}, {sampler.device}) "
        f"{100 * stats['sampler_share']:.1f}% of the loop, {stats['sampler_ms_per_step']:.2f} ms per step"
    )
    for g in report.get("llama_cpp_greedy", []):
        verdict = "identical to" if g["identical"] else "DIFFERENT from"
        print(f"greedy row `{g['name']}`: {verdict} llama.cpp's own greedy continuation")


if __name__ == "__main__":
    main()
