"""The package layout of issue 17 ("A layout that shows the design").

Code moved into one folder per concept must stay reachable by the import paths users already type
(the old modules re-export the very same objects), and a layer must not reach into the layers
built on top of it. Each restructured area has its own section below.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import advcorrupt

PACKAGE_ROOT = Path(advcorrupt.__file__).parent


def _imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


# ==============================================================================================
# advcorrupt.bench: the robustness benchmark, formerly the single module advcorrupt/benchmark.py
# ==============================================================================================

#: What ``advcorrupt.benchmark.__all__`` held before the move; none of it may disappear.
BENCHMARK_NAMES = (
    "METRIC_KEYS",
    "CorruptedDataset",
    "RobustnessReport",
    "SettingResult",
    "comparison_table",
    "corruption_seed",
    "evaluate",
    "evaluate_robustness",
    "summary_table",
)
#: Modules the benchmark must never import: the training side is built on it, not under it.
TRAINING_MODULES = ("advcorrupt.engine", "advcorrupt.trainer", "advcorrupt.training", "advcorrupt.policy",
                    "advcorrupt.cli")


def _bench_modules() -> list[ModuleType]:
    import advcorrupt.bench

    names = [info.name for info in pkgutil.iter_modules(advcorrupt.bench.__path__, "advcorrupt.bench.")]
    return [advcorrupt.bench, *(importlib.import_module(n) for n in sorted(names))]


def test_benchmark_old_path_still_exports_every_name_it_had() -> None:
    from advcorrupt import bench, benchmark

    assert set(benchmark.__all__) == set(BENCHMARK_NAMES)
    assert set(bench.__all__) == set(BENCHMARK_NAMES)


@pytest.mark.parametrize("name", BENCHMARK_NAMES)
def test_benchmark_old_path_reexports_the_very_same_object(name: str) -> None:
    from advcorrupt import bench, benchmark

    assert getattr(benchmark, name) is getattr(bench, name)


def test_benchmark_old_path_keeps_the_private_helper_the_cli_imports() -> None:
    from advcorrupt.bench.evaluation import _safe_rce
    from advcorrupt.benchmark import _safe_rce as old

    assert old is _safe_rce


def test_bench_public_objects_say_where_they_are_defined() -> None:
    import advcorrupt.bench

    for name in BENCHMARK_NAMES:
        obj = getattr(advcorrupt.bench, name)
        if callable(obj):
            assert obj.__module__.startswith("advcorrupt.bench."), (name, obj.__module__)


def test_bench_source_never_imports_the_training_side() -> None:
    files = sorted((PACKAGE_ROOT / "bench").glob("*.py"))
    assert len(files) >= 5, files
    for path in files:
        imported = _imported_modules(path, "advcorrupt.bench")
        bad = sorted(m for m in imported if m.startswith(TRAINING_MODULES))
        assert not bad, f"{path.name} imports {bad}"


def test_importing_and_running_bench_does_not_import_the_training_engine() -> None:
    code = (
        "import sys\n"
        "import torch\n"
        "from advcorrupt.bench import evaluate_robustness\n"
        "from advcorrupt.data import SyntheticIRSTD\n"
        "report = evaluate_robustness(torch.nn.Conv2d(1, 1, 3, padding=1), SyntheticIRSTD(1, size=16),\n"
        "    corruptions=['contrast'], severities=(1,), progress=False)\n"
        "assert len(report.results) == 1\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('advcorrupt'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "advcorrupt.bench.evaluation" in loaded  # the probe saw the modules it asks about
    assert "advcorrupt.engine" not in loaded
    assert "advcorrupt.training" not in loaded


def test_bench_docstring_examples_run() -> None:
    attempted = 0
    for module in _bench_modules():
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"{module.__name__}: {result.failed} doctest(s) failed"
        attempted += result.attempted
    assert attempted >= 24  # the seven examples moved from advcorrupt/benchmark.py hold 24 statements
