"""Every public name is documented, and every docstring example runs.

The modules are found with ``pkgutil``, so a new subpackage or module is covered without editing
this file. Public: no ``_``-prefixed part in the dotted name; a public module's ``__all__`` is the
list of names users may type. The doctests run over every module, private ones included, because
a public name is often defined in a private module (``corruptions._registry.corrupt``) and a
doctest is collected only in the module that defines its object.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

import advcorrupt

# Optional dependencies of some modules (advcorrupt.integrations.*); a module that needs a missing
# one is skipped, as its tests are.
OPTIONAL = ("lightning", "tensorboard", "accelerate")


def _all_modules() -> list[str]:
    walked = pkgutil.walk_packages(advcorrupt.__path__, prefix="advcorrupt.", onerror=lambda name: None)
    return ["advcorrupt", *sorted({m.name for m in walked})]


ALL_MODULES = _all_modules()
PUBLIC_MODULES = [m for m in ALL_MODULES if not any(part.startswith("_") for part in m.split("."))]


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional package {e.name!r}")
        raise


def _own_docstring(obj: object) -> str:
    """The object's own docstring: not a base class's, not a dataclass's generated signature."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        if doc.startswith(f"{obj.__name__}("):  # what @dataclass writes when there is none
            return ""
        return doc.strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def test_the_walk_finds_the_package_layout() -> None:
    # Guards the discovery itself: a walk that silently finds nothing would pass every test below.
    for expected in ("advcorrupt.corruptions", "advcorrupt.policy", "advcorrupt.models", "advcorrupt.metrics",
                     "advcorrupt.data", "advcorrupt.layers", "advcorrupt.trainer"):
        assert expected in PUBLIC_MODULES
    assert "advcorrupt.corruptions._registry" in ALL_MODULES


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_module_and_name_in_its_all_has_a_docstring(module_name: str) -> None:
    module = _import(module_name)
    assert (module.__doc__ or "").strip(), f"module {module_name} has no docstring"
    exported = getattr(module, "__all__", None)
    if hasattr(module, "__path__"):
        assert exported is not None, f"package {module_name} has no __all__ (explicit re-exports, STYLE.md)"
    undocumented = []
    for name in exported or []:
        assert hasattr(module, name), f"{module_name}.__all__ lists {name!r}, which the module does not have"
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)) and not _own_docstring(obj):
            undocumented.append(name)
    assert not undocumented, f"{module_name}.__all__ holds functions/classes without a docstring: {undocumented}"


def test_the_docstring_check_catches_a_missing_docstring() -> None:
    # The two ways a class can look documented without being so.
    class Plain:
        pass

    class Child(Plain):
        pass

    Plain.__doc__ = "Documented."

    def undocumented() -> None:
        pass

    from dataclasses import dataclass

    @dataclass
    class Config:
        size: int = 1

    assert _own_docstring(Plain) == "Documented."
    assert _own_docstring(Child) == ""  # inspect.getdoc would return the base class's
    assert _own_docstring(Config) == ""  # @dataclass generates "Config(size: int = 1)"
    assert _own_docstring(undocumented) == ""


# ------------------------------------------------------------------------------------ doctests
def _doctests(module_name: str) -> list[doctest.DocTest]:
    module = _import(module_name)
    return [t for t in doctest.DocTestFinder().find(module) if t.examples]


def _registries() -> list[dict]:
    """The global registries a docstring example may add to (``@corruptions.register`` ...)."""
    from advcorrupt.corruptions import _registry as corruption_registry
    from advcorrupt.models import _registry as model_registry
    from advcorrupt.policy import adversaries

    return [corruption_registry._REGISTRY, model_registry._MODELS, adversaries._ADVERSARIES]


@pytest.fixture
def isolated_registries() -> Iterator[None]:
    """Undo what a module's examples register, so that no example depends on another's."""
    saved = [dict(r) for r in _registries()]
    yield
    for registry, before in zip(_registries(), saved):
        registry.clear()
        registry.update(before)


def _has_doctest_lines(module_name: str) -> bool:
    spec = importlib.util.find_spec(module_name)
    return spec is not None and spec.origin is not None and ">>>" in Path(spec.origin).read_text(encoding="utf-8")


MODULES_WITH_EXAMPLES = [m for m in ALL_MODULES if _has_doctest_lines(m)]


def test_the_doctest_collection_finds_the_examples() -> None:
    # Guards the collection: fewer modules than this means examples silently left out.
    assert {"advcorrupt.corruptions._registry", "advcorrupt.trainer", "advcorrupt.metrics.istd"} <= set(
        MODULES_WITH_EXAMPLES
    )
    assert all(_doctests(m) for m in ("advcorrupt.trainer", "advcorrupt.corruptions._registry"))


@pytest.mark.parametrize("module_name", MODULES_WITH_EXAMPLES)
def test_every_docstring_example_runs(module_name: str, one_thread: None, isolated_registries: None) -> None:
    tests = _doctests(module_name)
    assert tests, f"{module_name} has '>>>' lines but doctest finds no example in it"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in tests:
        torch.manual_seed(0)
        runner.run(test, out=report.append)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {module_name}:\n" + "".join(report)


# Examples known to be prose only, by function name, each with the reason it is not fixed here.
# (None left: restore_training_state's got a runnable one when engine.py became advcorrupt/training/.)
PROSE_EXAMPLES: set[str] = set()


@pytest.mark.parametrize("module_name", ALL_MODULES)
def test_every_example_section_of_a_function_or_class_holds_a_doctest(module_name: str) -> None:
    # An `Example:` section with no `>>>` line would be shown but never run. (A module docstring
    # may show shell commands instead, as advcorrupt.cli does.)
    module = _import(module_name)
    found = doctest.DocTestFinder(exclude_empty=False).find(module)
    prose_only = [t.name for t in found
                  if t.name != module_name and t.docstring and not t.examples
                  and t.name.rsplit(".", 1)[-1] not in PROSE_EXAMPLES
                  and "\nExample:" in "\n" + inspect.cleandoc(t.docstring)]
    assert not prose_only, f"`Example:` sections without a runnable `>>>` line: {prose_only}"
