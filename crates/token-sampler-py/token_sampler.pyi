"""Batched, sort-free next-token sampling (the token-sampler library).

Temperature (static or entropy-guided), top-k, top-p, min-p, penalties, logit
bias and allow-lists over B rows of V logits, on a reference, a multi-threaded
CPU or a GPU backend, with the same random draws on all three (docs/spec.md).
The reference backend also runs ``typical_p``, ``top_n_sigma``,
``xtc_probability``/``xtc_threshold``, ``epsilon_cutoff``, ``eta_cutoff``,
``dry_multiplier``/``dry_base``/``dry_allowed_length``/``dry_penalty_last_n``/
``dry_sequence_breakers`` and ``mirostat`` (a dict ``{"version": 1 or 2,
"tau", "eta", "mu"}``; docs/spec.md §3.9–3.15); the cpu and gpu backends
raise ``SamplerError`` (kind ``unsupported``) for a row that uses them.

Parameters are dicts with exactly the JSON names of the CLI's ``--params``
(docs/spec.md §2); every default switches its stage off, so ``{}`` is plain
softmax sampling at T = 1.
"""

from typing import Any, Final, Literal, Mapping, Optional, Sequence, Union, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "DeviceError",
    "InvalidInputError",
    "ProbsResult",
    "RNG",
    "SampleResult",
    "Sampler",
    "SamplerError",
    "__version__",
    "preset",
    "presets",
]

__version__: Final[str]
RNG: Final[str]
"""The random-number scheme (docs/spec.md §5): ``"philox4x32-10/v1"``."""
BACKENDS: Final[list[str]]

_Backend = Literal["auto", "reference", "cpu", "gpu"]
_Params = Mapping[str, Any]
"""One row's parameters: ``temperature``, ``top_k``, ``top_p``, ``min_p``,
``min_tokens_to_keep``, ``repetition_penalty``, ``presence_penalty``,
``frequency_penalty``, ``history``, ``prompt_token_ids``, ``logit_bias``
(``{token_id: bias}``), ``allowed_token_ids``, ``seed``, ``step``,
``logprobs``, ``dynamic_temperature``, ``order``. Unknown keys are errors."""
_Logits = Union[
    npt.NDArray[np.float32],
    npt.NDArray[np.float16],
    npt.NDArray[Any],  # bfloat16 (ml_dtypes)
]

class SamplerError(Exception):
    """Base class of every error token_sampler raises."""

    kind: str
    """The library's error variant in snake case: ``invalid_param``,
    ``params_parse``, ``token_out_of_range``, ``invalid_logit``,
    ``non_finite_logit``, ``all_masked``, ``shape``, ``unsupported``,
    ``unknown_preset``, ``backend_unavailable``, ``gpu``, ``device_lost``,
    ``device_timeout``."""
    row: Optional[int]
    """The row the error is about, where it is about one."""
    field: Optional[str]
    """The parameter, as a path inside the row's dict (``"dynamic_temperature.mapping.t_min"``)."""
    index: Optional[int]
    """The logit index, or the position inside a token-id list."""

class InvalidInputError(SamplerError, ValueError):
    """Bad input: a parameter, a logit, a token id, a shape or a call argument."""

class BackendUnavailableError(SamplerError, RuntimeError):
    """The backend asked for is not in this build or cannot run here."""

class DeviceError(SamplerError, RuntimeError):
    """A failure inside the GPU backend (``kind``: ``gpu``, ``device_lost``
    or ``device_timeout``). The call's results are gone; the sampler
    recovers on its next call (a fresh device after a loss), so the call
    may be retried."""

@final
class SampleResult:
    """What ``Sampler.sample`` returns: NumPy arrays over the rows, in input
    order, and each row as a dict with the CLI's JSON keys (``result[i]``)."""

    backend: str
    tokens: npt.NDArray[np.int64]
    """[B] (draw 0), or [B, samples] when samples > 1."""
    logprobs: npt.NDArray[np.float64]
    """[B]: ln π of the token (0 for greedy rows)."""
    raw_logprobs: npt.NDArray[np.float64]
    """[B]: log-softmax of the logits as given, at the token."""
    entropies: npt.NDArray[np.float64]
    """[B]: entropy (nats) after bias, mask and penalties, at T = 1."""
    varentropies: npt.NDArray[np.float64]
    final_entropies: npt.NDArray[np.float64]
    """[B]: entropy (nats) of π, the distribution sampled."""
    guide_entropies: npt.NDArray[np.float64]
    """[B]: the entropy that guided the temperature; NaN for rows without
    ``dynamic_temperature``."""
    temperatures: npt.NDArray[np.float64]
    """[B]: the temperature applied (0 = greedy)."""
    top_ps: npt.NDArray[np.float64]
    kept: npt.NDArray[np.int64]
    """[B]: finite survivors of every stage."""
    seeds: npt.NDArray[np.uint64]
    """[B]: the seed each row used (its own, or the fresh one drawn)."""
    top_token_ids: npt.NDArray[np.int64]
    """[B, n], n the largest ``logprobs`` asked for: the most likely tokens of
    π, descending; -1 pads."""
    top_logprobs: npt.NDArray[np.float64]
    """[B, n]: ln π of ``top_token_ids``; -inf pads."""
    raw_top_token_ids: npt.NDArray[np.int64]
    raw_top_logprobs: npt.NDArray[np.float64]
    def __len__(self) -> int: ...
    def __getitem__(self, i: int, /) -> dict[str, Any]:
        """Row ``i`` as a dict: token, draws (samples > 1), logprob,
        raw_logprob, entropy, varentropy, guide_entropy (dynamic rows),
        final_entropy, temperature, top_p, kept, seed, top_logprobs (rows that
        asked), mirostat_mu (mirostat rows: the mu to pass as
        ``mirostat["mu"]`` next step)."""
    def rows(self) -> list[dict[str, Any]]:
        """Every row as a dict (see ``__getitem__``)."""

@final
class ProbsResult:
    """What ``Sampler.probs`` returns."""

    backend: str
    probs: npt.NDArray[np.float64]
    """[B, V]: π in token-id order, 0 for removed tokens."""
    kept: npt.NDArray[np.int64]
    temperatures: npt.NDArray[np.float64]
    top_ps: npt.NDArray[np.float64]
    entropies: npt.NDArray[np.float64]
    final_entropies: npt.NDArray[np.float64]
    guide_entropies: npt.NDArray[np.float64]
    def __len__(self) -> int: ...

@final
class Sampler:
    """A sampler over one backend; create it once and reuse it.

    ``backend``: ``"auto"`` (the GPU on a hardware adapter, else ``"cpu"``),
    ``"reference"``, ``"cpu"`` or ``"gpu"`` (a software adapter such as
    lavapipe is accepted when named).

    Thread safety: a Sampler may be shared between threads; calls on one
    sampler run one at a time, and the interpreter lock is released while a
    call waits and while it samples. For parallel batches, use one sampler per
    thread. Do not write to a logits array while a call is reading it.
    """

    backend: str
    """"reference", "cpu" or "gpu"."""
    device: str
    """The device the backend runs on, in words."""
    def __new__(cls, backend: _Backend = "auto") -> "Sampler": ...
    def sample(
        self,
        logits: _Logits,
        params: Union[_Params, Sequence[_Params], None] = None,
        samples: int = 1,
    ) -> SampleResult:
        """Samples ``samples`` draws per row.

        ``logits``: [B, V] or [V] (one row), float32, float16 or bfloat16, read
        in place when C-contiguous (no copy). ``params``: one dict for every
        row, a list of B dicts, or None (defaults). Raises
        ``InvalidInputError`` (a ValueError) naming the row and field or index
        for bad input, ``TypeError`` for an array of another dtype.
        """
    def probs(
        self,
        logits: _Logits,
        params: Union[_Params, Sequence[_Params], None] = None,
    ) -> ProbsResult:
        """The processed distribution π of every row (``.probs``, float64 [B, V])."""

def preset(name: str) -> dict[str, Any]:
    """The parameters a named preset sets, as a dict:
    ``{**token_sampler.preset("chat"), "seed": 7}``."""

def presets() -> list[str]:
    """Every preset name, task presets first."""
