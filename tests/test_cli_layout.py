"""The layout of ``advcorrupt/cli/``: one module per subcommand, none importing another, all in ``--help``.

Subcommand modules are the files of ``advcorrupt/cli/`` without a leading underscore (besides
``__init__``); ``corrupt_dataset.py`` is ``advcorrupt corrupt-dataset``. Shared code lives in the
``_``-prefixed helper modules (``_args.py``, ...), which any module may import.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import advcorrupt
import advcorrupt.cli
from advcorrupt.cli import COMMANDS, main

PACKAGE = "advcorrupt.cli"
CLI_DIR = Path(advcorrupt.cli.__file__).parent
#: The subcommands DESIGN.md promises, in help order.
DOCUMENTED = ["corruptions", "train", "bench", "corrupt-dataset"]


def subcommand_modules(folder: Path = CLI_DIR) -> list[str]:
    """Module names (file stems) of the subcommands in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def _imported_modules(tree: ast.AST) -> list[str]:
    """Absolute names of what a module in :data:`PACKAGE` imports (``from PACKAGE import x`` gives ``PACKAGE.x``)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: level 1 is PACKAGE itself, level 2 its parent, ...
                parents = PACKAGE.split(".")[: len(PACKAGE.split(".")) - node.level + 1]
                base = ".".join([*parents, *([node.module] if node.module else [])])
            found += [f"{base}.{alias.name}" for alias in node.names] if base == PACKAGE else [base]
    return found


def forbidden_imports(path: Path) -> list[str]:
    """What the module ``path`` (as if in :data:`PACKAGE`) imports of another subcommand or of the package itself.

    Importing a ``_``-prefixed helper module is allowed; importing the package ``advcorrupt.cli``
    (its ``__init__`` imports every subcommand) or any public name of it is not.
    """
    own = path.stem
    bad = []
    for name in _imported_modules(ast.parse(path.read_text(), filename=str(path))):
        parts = name.split(".")
        if parts[:2] != PACKAGE.split("."):
            continue
        if len(parts) == 2 or (not parts[2].startswith("_") and parts[2] != own):
            bad.append(name)
    return bad


@pytest.mark.parametrize("path", sorted(p for p in CLI_DIR.glob("*.py") if p.name != "__init__.py"), ids=lambda p: p.name)
def test_no_cli_module_imports_a_subcommand_module(path: Path) -> None:
    assert forbidden_imports(path) == [], f"{path.name} imports another subcommand; move the shared code to a _-prefixed module"


def test_the_import_check_catches_every_spelling_of_a_subcommand_import(tmp_path: Path) -> None:
    bad = {
        "from .bench import _BenchError": ["advcorrupt.cli.bench"],
        "from . import corrupt_dataset": ["advcorrupt.cli.corrupt_dataset"],
        "from advcorrupt.cli import bench, _args": ["advcorrupt.cli.bench"],
        "from advcorrupt.cli.corruptions import run": ["advcorrupt.cli.corruptions"],
        "import advcorrupt.cli.bench": ["advcorrupt.cli.bench"],
        "def f():\n    from ..cli import main": ["advcorrupt.cli.main"],
        "import advcorrupt.cli": ["advcorrupt.cli"],
    }
    good = ["from ._args import csv_list", "from . import _corrupted_root", "from ..engine import fit",
            "from .train import config_from_args", "import argparse", "from advcorrupt.benchmark import evaluate"]
    for source, expected in bad.items():
        (tmp_path / "train.py").write_text(source + "\n")
        assert forbidden_imports(tmp_path / "train.py") == expected, source
    for source in good:
        (tmp_path / "train.py").write_text(source + "\n")
        assert forbidden_imports(tmp_path / "train.py") == [], source


def test_every_subcommand_module_is_registered_with_add_parser_and_run() -> None:
    assert sorted(m.__name__.rsplit(".", 1)[1] for m in COMMANDS) == subcommand_modules()
    for module in COMMANDS:
        assert callable(module.add_parser) and callable(module.run), module.__name__


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listed = re.findall(r"^    (\S+)", capsys.readouterr().out, flags=re.MULTILINE)
    assert listed == DOCUMENTED
    assert sorted(listed) == sorted(name.replace("_", "-") for name in subcommand_modules())


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", advcorrupt.__version__)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"advcorrupt {advcorrupt.__version__}\n"


def test_python_dash_m_advcorrupt_runs_the_same_command_line() -> None:
    done = subprocess.run([sys.executable, "-m", "advcorrupt", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"advcorrupt {advcorrupt.__version__}\n"
