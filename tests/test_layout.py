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
import re
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
#: Names ``advcorrupt.bench`` added since (issue 21, the semantic report); the old path keeps the old list.
SEMANTIC_BENCH_NAMES = ("SEMANTIC_METRIC_KEYS", "SemanticRobustnessReport", "SemanticSettingResult")
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
    assert set(bench.__all__) == set(BENCHMARK_NAMES) | set(SEMANTIC_BENCH_NAMES)


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


# ==============================================================================================
# advcorrupt.training: the loop behind `advcorrupt train`, formerly the module advcorrupt/engine.py
# ==============================================================================================

#: What ``advcorrupt.engine.__all__`` held before the move; none of it may disappear.
ENGINE_NAMES = (
    "TrainConfig",
    "TrainingStopped",
    "build_datasets",
    "check_config",
    "fit",
    "load_model",
    "restore_training_state",
)
#: Public names the old module had outside its ``__all__`` (tests and examples imported them).
ENGINE_EXTRA_NAMES = ("COLLAPSE_IOU", "WarmupCosine", "is_collapsed")
#: One module per job (issue 17); a file that disappears or appears should update this list.
TRAINING_FILES = ("__init__", "checkpoints", "config", "data", "distributed", "grid", "grid_report", "harness", "logs",
                  "loop", "provenance", "run", "schedule", "validation")


def test_engine_old_path_still_exports_every_name_it_had() -> None:
    from advcorrupt import engine, training

    assert tuple(engine.__all__) == ENGINE_NAMES
    assert set(ENGINE_NAMES) | set(ENGINE_EXTRA_NAMES) <= set(training.__all__)


@pytest.mark.parametrize("name", ENGINE_NAMES + ENGINE_EXTRA_NAMES)
def test_engine_old_path_reexports_the_very_same_object(name: str) -> None:
    import advcorrupt.training
    from advcorrupt import engine

    assert getattr(engine, name) is getattr(advcorrupt.training, name)
    namespace: dict[str, object] = {}
    exec(f"from advcorrupt.engine import {name}", namespace)  # the line users type
    assert namespace[name] is getattr(advcorrupt.training, name)


def test_engine_module_only_reexports() -> None:
    # Code added to the old path would fork the library: the shim may hold imports, its docstring
    # and __all__, nothing else.
    tree = ast.parse((PACKAGE_ROOT / "engine.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.ImportFrom):
            assert node.level == 1 and node.module == "training", ast.unparse(node)
            continue
        assert isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"], (
            ast.unparse(node)
        )


def test_training_package_has_one_module_per_job() -> None:
    found = sorted(p.stem for p in (PACKAGE_ROOT / "training").glob("*.py"))
    assert found == sorted(TRAINING_FILES)
    assert not (PACKAGE_ROOT / "training" / "fit.py").exists()  # no module named like the function it exports


def test_training_public_objects_say_where_they_are_defined() -> None:
    import advcorrupt.training

    for name in advcorrupt.training.__all__:
        obj = getattr(advcorrupt.training, name)
        if callable(obj):
            assert obj.__module__.startswith("advcorrupt.training."), (name, obj.__module__)


@pytest.mark.parametrize("stem", TRAINING_FILES)
def test_training_source_never_imports_the_cli_or_the_old_path(stem: str) -> None:
    imported = _imported_modules(PACKAGE_ROOT / "training" / f"{stem}.py", "advcorrupt.training")
    bad = sorted(m for m in imported if m.startswith(("advcorrupt.cli", "advcorrupt.engine")))
    assert not bad, f"training/{stem}.py imports {bad}"


def test_the_training_import_reader_resolves_relative_imports() -> None:
    # Guards the check above: `from .config import ...` and `from ..checkpoint import ...` must be seen.
    loop = _imported_modules(PACKAGE_ROOT / "training" / "loop.py", "advcorrupt.training")
    assert {"advcorrupt.training.config", "advcorrupt.training.checkpoints"} <= loop
    checkpoints = _imported_modules(PACKAGE_ROOT / "training" / "checkpoints.py", "advcorrupt.training")
    assert "advcorrupt.checkpoint" in checkpoints and "advcorrupt.models" in checkpoints


def test_importing_training_does_not_import_the_cli() -> None:
    code = (
        "import sys\n"
        "import advcorrupt.training\n"
        "from advcorrupt.training import TrainConfig, check_config\n"
        "check_config(TrainConfig(model='acm'))\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('advcorrupt'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "advcorrupt.training.loop" in loaded  # the probe saw the modules it asks about
    assert not sorted(m for m in loaded if m == "advcorrupt.cli" or m.startswith("advcorrupt.cli."))


@pytest.mark.parametrize("folder", ["cli", "integrations"])
def test_library_modules_import_the_training_package_not_the_old_path(folder: str) -> None:
    files = sorted((PACKAGE_ROOT / folder).glob("*.py"))
    assert files
    for path in files:
        imported = _imported_modules(path, f"advcorrupt.{folder}")
        assert not [m for m in imported if m.startswith("advcorrupt.engine")], path.name
    train_cli = _imported_modules(PACKAGE_ROOT / "cli" / "train.py", "advcorrupt.cli")
    assert "advcorrupt.training.fit" in train_cli


# ==============================================================================================
# The task spine: only advcorrupt/tasks.py knows what each task kind means
# ==============================================================================================

#: Files allowed to name task kinds: the tasks themselves, and the benchmark's registry of which
#: report each task gets (the tasks must not import the benchmark, so that choice lives there).
TASK_KIND_OWNERS = ("tasks.py", "bench/_report_kinds.py")

_KIND = r"""['"](?:binary|semantic)['"]"""
#: Branching on a task's kind: isinstance against a task class (alone or in a tuple), or its name
#: compared with a kind, either way round, or looked up in a literal collection of kinds.
TASK_BRANCH = re.compile(
    r"isinstance\([^()]*,\s*(?:\([^()]*)?\b(?:Binary|Semantic)Task\b"
    rf"|\.name\s*(?:==|!=)\s*{_KIND}"
    rf"|{_KIND}\s*(?:==|!=)\s*[\w.\[\]]*\.name\b"
    rf"|\.name\s+(?:not\s+)?in\s*[(\[{{][^)\]}}]*{_KIND}"
)


def _task_branches(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if TASK_BRANCH.search(line)]


def test_the_task_branch_pattern_finds_what_it_is_meant_to() -> None:
    caught = [
        "if isinstance(task, SemanticTask):",
        "if isinstance(self.task, BinaryTask) and x:",
        "ok = isinstance(task, (BinaryTask, SemanticTask))",
        'name = "a" if run.task.name == "binary" else "b"',
        "if task.name != 'semantic':",
        'if "semantic" == scoring.task.name:',
        'if task.name in ("binary", "semantic"):',
        'if task.name not in ["semantic"]:',
    ]
    assert [line for line in caught if not _task_branches(line)] == []
    allowed = [
        "if isinstance(task, Task):",
        'if config.task == "semantic":',  # a user's task argument, read while making the task
        "kind = report_kind(scoring.task.name)",
        'name = f"robustness_{run.task.primary_metric.lower()}.png"',
        "from ..tasks import BinaryTask, SemanticTask",
    ]
    assert [line for line in allowed if _task_branches(line)] == []


def test_nothing_outside_the_task_spine_branches_on_the_task_kind() -> None:
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if path.relative_to(PACKAGE_ROOT).as_posix() in TASK_KIND_OWNERS:
            continue
        found += [f"{path.relative_to(PACKAGE_ROOT.parent)}:{n}: {line}" for n, line in _task_branches(path.read_text())]
    assert not found, "ask the task (advcorrupt/tasks.py) instead of branching on its kind:\n" + "\n".join(found)
    assert all((PACKAGE_ROOT / owner).is_file() for owner in TASK_KIND_OWNERS)  # the exclusions name real files
