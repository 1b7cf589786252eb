"""Shared fixtures: one test body, every backend (docs/spec.md §7).

The GPU backend runs on whatever Vulkan adapter is there (lavapipe on a
machine without a GPU). Without one, GPU cases are skipped with a loud
reason, unless REQUIRE_GPU=1 (CI), which turns a missing adapter into a
failure.
"""

import os

import pytest

import token_sampler as ts

BACKENDS = ["reference", "cpu", "gpu"]

_samplers = {}


def open_sampler(name):
    """One sampler per backend for the whole test run (samplers are meant to
    be created once and reused)."""
    if name not in _samplers:
        try:
            _samplers[name] = ts.Sampler(name)
        except ts.BackendUnavailableError as e:
            if name == "gpu" and os.environ.get("REQUIRE_GPU") != "1":
                pytest.skip(f"NO GPU ADAPTER: GPU cases skipped ({e}); REQUIRE_GPU=1 makes this a failure")
            raise
    return _samplers[name]


@pytest.fixture(params=BACKENDS)
def sampler(request):
    return open_sampler(request.param)


@pytest.fixture
def reference():
    return open_sampler("reference")
