"""Every run folder records the code it was trained from (issue 17, review fixes).

``config.json`` holds, beside the configuration fields, ``"git": {"commit", "dirty"}`` from
:func:`advcorrupt.training.source_revision`. It is a record, not a recipe: reading the file back
ignores it, resuming is unaffected, and the example harness never counts it as a difference
between runs (the committed runs under ``results/`` predate the key and must still compare equal).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import advcorrupt
from advcorrupt.training import TrainConfig, fit, load_model, source_revision
from advcorrupt.training import provenance

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(advcorrupt.__file__).resolve().parent
HEX40 = re.compile(r"[0-9a-f]{40}")
HAS_GIT = shutil.which("git") is not None


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=True,
    )
    return done.stdout.strip()


def _package_commit() -> str | None:
    """This checkout's HEAD, asked of git directly (None when the package is not a git checkout)."""
    if not HAS_GIT:
        return None
    try:
        return _git(PACKAGE_DIR, "rev-parse", "HEAD")
    except subprocess.CalledProcessError:
        return None


# The tiny runs are far too short to learn anything: their collapse warning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:.*the detector collapsed:RuntimeWarning")
in_checkout = pytest.mark.skipif(_package_commit() is None, reason="advcorrupt is not run from a git checkout")


def tiny_config(out_dir: Path, **overrides: Any) -> TrainConfig:
    kw: dict[str, Any] = dict(
        model="acm", strategy="random", corruptions=("gaussian_noise",), severities=(1,), epochs=1,
        steps_per_epoch=1, batch_size=2, synthetic_train=4, synthetic_test=2, synthetic_size=32, device="cpu",
        out_dir=str(out_dir), eval_every=1,
    )
    kw.update(overrides)
    return TrainConfig(**kw)


# ------------------------------------------------------------------------------ a run's record
@in_checkout
def test_a_run_folder_records_the_commit_it_was_trained_from(tmp_path: Path, one_thread: None) -> None:
    config = tiny_config(tmp_path / "run")
    fit(config, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    git = saved["git"]
    assert set(git) == {"commit", "dirty"}
    assert HEX40.fullmatch(git["commit"]) and git["commit"] == _package_commit()
    assert isinstance(git["dirty"], bool)
    # Beside the fields, not one of them: the run's config is unchanged and reads back equal.
    assert "git" not in TrainConfig.__dataclass_fields__
    assert {k: v for k, v in saved.items() if k != "git"} == config.to_dict()
    assert TrainConfig.from_dict(saved) == config


@in_checkout
def test_a_config_json_with_the_record_resumes_and_loads(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    fit(tiny_config(out), progress=False)
    assert "git" in json.loads((out / "config.json").read_text())
    longer = tiny_config(out, epochs=2)
    summary = fit(longer, resume=True, progress=False)
    assert summary["steps"] == 2 and summary["epochs"] == 2  # continued from epoch 1, did not restart
    saved = json.loads((out / "config.json").read_text())
    assert HEX40.fullmatch(saved["git"]["commit"])
    assert TrainConfig.from_dict(saved) == longer
    model, config, state = load_model(summary["checkpoint"])
    assert config == longer and "git" not in state["config"]  # checkpoints hold the config alone
    assert not model.training


def test_from_dict_still_refuses_unknown_fields_beside_the_record() -> None:
    saved = {**TrainConfig().to_dict(), "git": {"commit": None, "dirty": None}, "epoch": 3}
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['epoch'\]"):
        TrainConfig.from_dict(saved)


# --------------------------------------------------------------------------- source_revision
@pytest.mark.skipif(not HAS_GIT, reason="needs git")
def test_source_revision_tells_a_clean_tree_from_a_dirty_one(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "pkg/__init__.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert source_revision(repo / "pkg") == {"commit": head, "dirty": False}
    (repo / "notes.txt").write_text("untracked\n")  # anywhere in the work tree
    assert source_revision(repo / "pkg") == {"commit": head, "dirty": True}
    (repo / "notes.txt").unlink()
    (repo / "pkg" / "__init__.py").write_text("x = 2\n")
    assert source_revision(repo / "pkg") == {"commit": head, "dirty": True}
    # A folder inside the repository that git does not track (a wheel installed in a virtual
    # environment kept inside a project's repository): the repository's commit says nothing of it.
    (repo / ".venv" / "site-packages" / "pkg").mkdir(parents=True)
    assert source_revision(repo / ".venv" / "site-packages" / "pkg") == {"commit": None, "dirty": None}


def test_source_revision_is_unknown_outside_a_checkout(tmp_path: Path) -> None:
    assert source_revision(tmp_path) == {"commit": None, "dirty": None}
    assert source_revision(tmp_path / "missing") == {"commit": None, "dirty": None}


def test_source_revision_is_unknown_without_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert source_revision(PACKAGE_DIR) == {"commit": None, "dirty": None}


@pytest.mark.skipif(sys.platform == "win32", reason="a shell-script stand-in for git")
@pytest.mark.parametrize("script", ["sleep 5", "echo broken >&2; exit 1", "echo not-a-sha"])
def test_source_revision_is_unknown_when_git_hangs_fails_or_says_nonsense(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str
) -> None:
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(provenance, "_TIMEOUT_S", 0.5)
    assert source_revision(PACKAGE_DIR) == {"commit": None, "dirty": None}


# ------------------------------------------------------------------- the grid harness's recipe check
def _harness() -> Any:
    """The recipe check of the experiment grids (examples/istd_dnanet.py, examples/camvid_smp.py)."""
    from advcorrupt.training import grid

    return grid


def test_the_harness_never_counts_the_git_record_as_a_recipe_difference() -> None:
    ex = _harness()
    assert "git" in ex.NOT_RECIPE
    old = TrainConfig(model="acm", strategy="banded").to_dict()
    new = {**old, "git": {"commit": "a" * 40, "dirty": False}}
    other = {**old, "git": {"commit": "b" * 40, "dirty": True}}
    assert ex.recipe_differences(ex.recipe(old), ex.recipe(new)) == []
    assert ex.recipe_differences(ex.recipe(new), ex.recipe(other)) == []
    assert ex.recipe_differences(ex.recipe(old), ex.recipe({**new, "lr": 1e-3}))  # the check still bites


def test_committed_results_without_the_record_compare_equal_to_runs_with_it() -> None:
    ex = _harness()
    saved = sorted((REPO / "results").rglob("config.json"))
    if not saved:
        pytest.skip("no committed run folders under results/")
    unstamped = 0
    for path in saved:
        config = json.loads(path.read_text())
        if "git" in config:  # a run made after the record existed: it names a real commit
            assert len(config["git"]["commit"]) == 40 and isinstance(config["git"]["dirty"], bool), path
            config = {k: v for k, v in config.items() if k != "git"}
        else:
            unstamped += 1
        stamped = {**config, "git": {"commit": "c" * 40, "dirty": True}}
        assert ex.recipe_differences(ex.recipe(config), ex.recipe(stamped)) == [], path
    assert unstamped, "no committed run predates the record: this test has nothing left to check"
