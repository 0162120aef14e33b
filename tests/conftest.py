"""Shared fixtures and markers for the advcorrupt test suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# The real NUAA-SIRST dataset lies beside the project, never inside it.
NUAA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "NUAA-SIRST"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs CUDA; run benchmarks/gpu_check.sh on a GPU machine")
    if not torch.cuda.is_available():
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def nuaa_root() -> Path:
    if not (NUAA_ROOT / "images").is_dir():
        pytest.skip(f"NUAA-SIRST not found at {NUAA_ROOT}")
    return NUAA_ROOT


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for modules of many tiny steps: faster, and immune to CPU contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
