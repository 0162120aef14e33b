"""A seeded end-to-end run gives bit-identical results to the recorded reference run.

``tests/data/golden_run.json`` was written by ``tests/data/make_golden_run.py`` from commit
92fa72f, before the package was restructured (issue 17). Moving code around must not change one
bit of it: the trained weights, the policy, the logs and the robustness report of a tiny CPU run
of ``advcorrupt train`` followed by ``evaluate_robustness``. A field added on purpose since (a new
checkpoint entry) must be declared in ``ADDED`` with the value the run must hold; any other new
field is a difference. Bit-identity only holds for the same torch build, so another torch version
skips the test.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

DATA = Path(__file__).parent / "data"
GOLDEN = json.loads((DATA / "golden_run.json").read_text())
# Fields the checkpoint gained on purpose since the golden run, each with the value this run must
# hold; everything else stays bit-identical. The task spine (issue 17/21) records the task.
ADDED = {"trainer": {"task": {"name": "binary"}}}


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("make_golden_run", DATA / "make_golden_run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def first_difference(expected: Any, got: Any, path: str = "") -> str | None:
    """The first place (``a/b[3]/c``) where two JSON trees differ, with both values; NaN == NaN."""
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in expected:
            if key not in got:
                return f"{path}/{key}: missing from this run (expected {str(expected[key])[:120]})"
            found = first_difference(expected[key], got[key], f"{path}/{key}")
            if found:
                return found
        extra = sorted(set(got) - set(expected))
        return f"{path}/{extra[0]}: not in the golden run (got {str(got[extra[0]])[:120]})" if extra else None
    if isinstance(expected, list) and isinstance(got, list):
        for i, (e, g) in enumerate(zip(expected, got)):
            found = first_difference(e, g, f"{path}[{i}]")
            if found:
                return found
        if len(expected) != len(got):
            return f"{path}: {len(got)} items, expected {len(expected)}"
        return None
    both_nan = isinstance(expected, float) and isinstance(got, float) and math.isnan(expected) and math.isnan(got)
    if both_nan or (type(expected) is type(got) and expected == got):
        return None
    return f"{path}: expected {expected!r}, got {got!r}"


def test_first_difference_names_the_first_differing_field() -> None:
    golden = {"model": {"a.weight": "1", "b.weight": "2"}, "metrics": [{"loss": 1.0}], "x": float("nan")}
    assert first_difference(golden, json.loads(json.dumps(golden))) is None
    changed = {"model": {"a.weight": "1", "b.weight": "3"}, "metrics": [{"loss": 1.5}], "x": float("nan")}
    assert first_difference(golden, changed) == "/model/b.weight: expected '2', got '3'"
    assert first_difference(golden, {**golden, "metrics": [{"loss": 1}]}) == "/metrics[0]/loss: expected 1.0, got 1"
    assert "missing" in str(first_difference(golden, {"model": golden["model"]}))
    grown = {**golden, "metrics": [{"loss": 1.0, "new": 2}]}
    assert first_difference(golden, grown) == "/metrics[0]/new: not in the golden run (got 2)"
    assert first_difference(golden, {**golden, "x": 0.0}) == "/x: expected nan, got 0.0"


def test_seeded_train_and_benchmark_match_the_pre_restructuring_run(tmp_path: Path) -> None:
    if torch.__version__ != GOLDEN["torch_version"]:
        pytest.skip(
            f"golden run recorded with torch {GOLDEN['torch_version']}, running torch {torch.__version__}: "
            "bit-identity only holds for the same build"
        )
    generator = _load_generator()
    record = generator.golden_run(tmp_path / "run")
    # The procedure itself must be the recorded one, or the comparison means nothing.
    assert record["train_args"] == GOLDEN["train_args"] and record["bench"] == GOLDEN["bench"]
    assert len(record["model"]) > 0 and len(record["metrics"]) == 3
    for field, added in ADDED.items():
        for key, value in added.items():
            assert record[field].pop(key, None) == value, f"{field}/{key} must be {value!r} in this run"
    # Every recorded value must be reproduced exactly, and nothing undeclared may be added.
    for field in ("checkpoint", "model", "trainer", "rng", "normalize", "policy_history", "metrics", "steps",
                  "policy_actions", "report"):
        difference = first_difference(GOLDEN[field], record[field], field)
        assert difference is None, f"the run changed (first difference: {difference})"
