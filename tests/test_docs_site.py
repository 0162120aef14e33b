"""The documentation site builds in strict mode, and what it generates covers what it should.

``mkdocs build --strict`` fails on a broken link, a missing cross-reference or a docstring that
does not render; this test runs it (into a temporary folder) and also fails on any warning line.
Skipped where the ``docs`` extra is not installed (``pip install -e ".[docs]"``; ``[dev]`` has it).
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

for _package in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "griffe"):
    pytest.importorskip(_package, reason="the docs extra is not installed: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load(ROOT / "docs" / "hooks.py", "advcorrupt_docs_hooks")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's banner about MkDocs 2, not ours
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    warnings = [line for line in log.splitlines() if re.match(r"\s*WARNING\b", line)]
    assert not warnings, "mkdocs warned:\n" + "\n".join(warnings)
    return out


def test_the_site_builds_in_strict_mode_without_a_warning(site: Path) -> None:
    for page in ("index.html", "changelog/index.html", "gallery/index.html", "trainer/index.html",
                 "reference/index.html", "reference/advcorrupt/index.html"):
        assert (site / page).is_file(), f"{page} missing from the built site"


def test_the_landing_page_is_the_readme_and_its_links_lead_to_the_guides(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "Quick start" in html and "pip install -e" in html
    hrefs = set(re.findall(r'href="([^"]+)"', html))
    assert "trainer/" in hrefs  # the README writes docs/trainer.md for GitHub
    assert "changelog/" in hrefs  # ... and CHANGELOG.md
    assert not [h for h in hrefs if h.startswith("docs/") or h.endswith(".md")]


def _pkgutil_public_modules() -> set[str]:
    import advcorrupt

    walked = {m.name for m in pkgutil.walk_packages(advcorrupt.__path__, "advcorrupt.", onerror=lambda n: None)}
    return {"advcorrupt"} | {m for m in walked if not any(p.startswith("_") for p in m.split("."))}


def _source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).read_text(encoding="utf-8")


def test_every_public_module_has_one_api_page_and_only_re_export_shims_have_none(site: Path) -> None:
    pages = {p.name for p in (site / "reference").iterdir() if (p / "index.html").is_file()}
    public = _pkgutil_public_modules()
    assert pages == set(hooks.public_modules())
    assert not pages - public, f"pages for modules Python does not import: {sorted(pages - public)}"
    for module in public - pages:  # e.g. advcorrupt.engine, advcorrupt.benchmark once moved
        assert hooks.is_reexport_shim(_source(module)), f"{module} is public but has no API page"
    assert {"advcorrupt", "advcorrupt.corruptions", "advcorrupt.policy", "advcorrupt.trainer"} <= pages


def test_a_name_is_rendered_on_one_page_and_linked_from_the_others(site: Path) -> None:
    # ActionSpace is defined in advcorrupt.policy.action_space and re-exported by advcorrupt and
    # advcorrupt.policy: its heading (the anchor with its full path) exists once in the site.
    anchor = 'id="advcorrupt.policy.action_space.ActionSpace"'
    holders = [p.parent.name for p in (site / "reference").glob("*/index.html")
               if anchor in p.read_text(encoding="utf-8")]
    assert holders == ["advcorrupt.policy.action_space"]
    top = (site / "reference" / "advcorrupt" / "index.html").read_text(encoding="utf-8")
    assert "../advcorrupt.policy.action_space/#advcorrupt.policy.action_space.ActionSpace" in top


def test_the_gallery_page_shows_every_image_the_script_makes(site: Path) -> None:
    gallery = _load(ROOT / "docs" / "gallery" / "make_gallery.py", "advcorrupt_make_gallery")
    html = (site / "gallery" / "index.html").read_text(encoding="utf-8")
    shown = set(re.findall(r'src="\.\./img/gallery/([^"]+\.png)"', html))
    assert shown == set(gallery.IMAGES)
    for name in gallery.IMAGES:
        assert (site / "img" / "gallery" / name).is_file()
        assert (ROOT / "docs" / "img" / "gallery" / name).stat().st_size < 400_000, f"{name}: keep it small"


def test_the_gallery_script_regenerates_its_images(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gallery" / "make_gallery.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    from PIL import Image

    for committed in sorted((ROOT / "docs" / "img" / "gallery").glob("*.png")):
        with Image.open(tmp_path / committed.name) as new, Image.open(committed) as old:
            assert new.size == old.size, f"{committed.name}: regenerated {new.size}, committed {old.size}"


def test_the_hooks_examples_run() -> None:
    result = doctest.testmod(hooks, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_a_module_that_only_re_exports_gets_no_page(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""Package."""\nfrom .real import fit\n__all__ = ["fit"]\n')
    (package / "real.py").write_text("def fit():\n    pass\n")
    (package / "old.py").write_text('"""Old path."""\nfrom .real import fit\n\n__all__ = ["fit"]\n')
    (package / "constants.py").write_text("LEVELS = (1, 2, 3)\n")
    (package / "_private.py").write_text("def helper():\n    pass\n")
    (package / "internal.py").write_text('"""Private code, a public file."""\n__all__ = []\nclass _Run:\n    pass\n')
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "_impl.py").write_text("X = 1\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "stray.py").write_text("Y = 1\n")
    assert hooks.public_modules(tmp_path, "pkg") == ["pkg", "pkg.constants", "pkg.internal", "pkg.real", "pkg.sub"]


def test_links_written_for_github_resolve_in_the_site() -> None:
    assert hooks.rewrite_links("[a](docs/x.md#y) [b](https://e.org/docs/x.md) [c](#top)", "index.md") == (
        "[a](x.md#y) [b](https://e.org/docs/x.md) [c](#top)"
    )
    assert hooks.rewrite_links("[log](../../CHANGELOG.md)", "gallery/index.md") == "[log](../changelog.md)"
    assert hooks.rewrite_links("[code](../examples/run.py)", "trainer.md") == "[code](../examples/run.py)"
