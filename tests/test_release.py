"""Release artifacts a user can trust: a wheel and an sdist that build, pass ``twine check`` and
install into a fresh environment, where ``import advcorrupt`` and ``advcorrupt --version`` give
the version set in ``advcorrupt/__init__.py``.

The build runs on a copy of what the sdist needs (``pyproject.toml``, ``README.md``, the package),
so it never writes into the shared source tree. It is offline: ``--no-isolation`` builds with the
setuptools already installed, and the wheel is installed with ``--no-deps --no-index`` into a venv
that sees this environment's packages (torch and the rest) through a ``.pth`` file. Skipped where
the ``build`` or ``twine`` package is missing (both are in the ``dev`` extra).
"""

from __future__ import annotations

import ast
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("build", reason="pip install build (in the dev extra)")
pytest.importorskip("twine", reason="pip install twine (in the dev extra)")

ROOT = Path(__file__).resolve().parents[1]


def _declared_version() -> str:
    """``__version__`` as written in advcorrupt/__init__.py (read, not imported)."""
    tree = ast.parse((ROOT / "advcorrupt" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("advcorrupt/__init__.py sets no __version__")


def _run(*cmd: str | Path, cwd: Path, timeout: int = 240) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the fresh venv sees only its own advcorrupt
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "advcorrupt", src / "advcorrupt", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation", "--outdir", out, cwd=src)
    return out


def test_the_version_is_set_in_one_place() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "advcorrupt.__version__" }' in pyproject
    assert "\nversion =" not in pyproject.split("[project]")[1].split("\n[")[0]  # no literal in [project]
    import advcorrupt

    assert advcorrupt.__version__ == _declared_version()


def test_build_makes_a_wheel_and_an_sdist_of_the_declared_version(dist: Path) -> None:
    version = _declared_version()
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [w.name for w in wheels] == [f"advcorrupt-{version}-py3-none-any.whl"]
    assert [s.name for s in sdists] == [f"advcorrupt-{version}.tar.gz"]
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        metadata = whl.read(f"advcorrupt-{version}.dist-info/METADATA").decode()
    assert {"advcorrupt/__init__.py", "advcorrupt/py.typed", "advcorrupt/corruptions/__init__.py"} <= names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    assert f"Version: {version}" in metadata and "Description-Content-Type: text/markdown" in metadata
    with tarfile.open(sdists[0]) as sdist:
        members = set(sdist.getnames())
    assert {f"advcorrupt-{version}/pyproject.toml", f"advcorrupt-{version}/README.md",
            f"advcorrupt-{version}/advcorrupt/__init__.py"} <= members


def test_twine_accepts_the_artifacts(dist: Path) -> None:
    out = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()), cwd=dist)
    assert out.count("PASSED") == 2


def test_the_wheel_installs_in_a_fresh_venv_and_reports_its_version(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    # This environment's packages (torch, ...) without its editable advcorrupt: a .pth line adds a
    # folder to sys.path but does not run the .pth files inside it (the editable finder's hook).
    venv_site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).strip())
    (venv_site / "_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheel = next(dist.glob("*.whl"))
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel,
         cwd=tmp_path)
    probe = "import advcorrupt; print(advcorrupt.__version__); print(advcorrupt.__file__)"
    version, where = _run(python, "-c", probe, cwd=tmp_path).split()
    assert version == _declared_version()
    assert Path(where).is_relative_to(venv), f"imported {where}, not the installed wheel"
    printed = _run(venv / "bin" / "advcorrupt", "--version", cwd=tmp_path)
    assert printed.split() == ["advcorrupt", _declared_version()]
