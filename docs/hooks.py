"""MkDocs hooks: the landing page and changelog from the repository root, the API reference pages.

Nothing is copied into ``docs/``; each page below is generated at build time from its one source:

- ``index.md`` from ``README.md`` and ``changelog.md`` from ``CHANGELOG.md``. Their links are written
  for GitHub (``docs/trainer.md``); :func:`on_page_markdown` rewrites every page's relative links
  that point at a repository file the site publishes under another path (``docs/trainer.md`` ->
  ``trainer.md``, ``../README.md`` -> ``index.md``), so one link works in both places.
- ``reference/<module>.md``, one page per public module of ``advcorrupt`` (no ``_``-prefixed part),
  found by walking the package folder, so a module that moves or appears is documented without
  editing this file or ``mkdocs.yml``. A module that only re-exports names defined elsewhere (the
  old import paths ``advcorrupt.engine`` and ``advcorrupt.benchmark`` once their code has moved)
  gets no page: its names are documented where they are defined.

:class:`DocstringMarkup` is a griffe extension (``mkdocs.yml``: ``extensions``) that reads our
``Example:`` sections as examples, so doctests render as code, and turns Sphinx roles into links.

The pages go into the ``API reference`` entry of ``nav`` (grouped by subpackage) and a generated
``reference/index.md`` lists every module with the first line of its docstring.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "advcorrupt"
REFERENCE = "reference"
NAV_ENTRY = "API reference"
# Repository files published at the site's root: repository path -> page path.
ROOT_PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
_LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")


# ------------------------------------------------------------------------------- the modules
def _defines_code(tree: ast.Module) -> bool:
    """Whether a module body defines a function or class of its own, or public data.

    Imports, the docstring, ``__all__``, private data and the lazy re-export hooks ``__getattr__``
    / ``__dir__`` are what an old import path is made of; anything else is code of its own.
    """
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):  # docstring
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in ("__getattr__", "__dir__"):
                continue
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if names and all(n.startswith("_") for n in names):  # __all__, _DEPRECATED = {...}
            continue
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks and the like
            if _defines_code(ast.Module(body=node.body, type_ignores=[])):
                return True
            continue
        return True
    return False


def is_reexport_shim(source: str) -> bool:
    """True for a module (not a package) whose body only imports and re-exports names.

    A module of private code (``__all__ = []``, ``class _Run``) is not a shim: its page shows
    what the file is for.

    Example:
        >>> is_reexport_shim("from .training import fit\\n__all__ = ['fit']\\n")
        True
        >>> is_reexport_shim("__all__ = []\\ndef _build_run():\\n    pass\\n")
        False
    """
    return not _defines_code(ast.parse(source))


def public_modules(root: Path = ROOT, package: str = PACKAGE) -> list[str]:
    """Dotted names of the package's public modules and subpackages, re-export shims left out."""
    found: set[str] = set()
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if any(not (root.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
            continue  # a folder that is not a package (e.g. __pycache__)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts):
            continue
        if not is_package and (path.parent / parts[-1] / "__init__.py").is_file():
            continue  # shadowed by a package of the same name, which Python imports instead
        if not is_package and is_reexport_shim(path.read_text(encoding="utf-8")):
            continue
        found.add(".".join(parts))
    return sorted(found)


def _summary(module: str, root: Path = ROOT) -> str:
    """First line of a module's docstring, read without importing it."""
    rel = Path(*module.split("."))
    path = root / rel / "__init__.py" if (root / rel).is_dir() else (root / rel).with_suffix(".py")
    doc = (ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or "").strip()
    first = doc.splitlines()[0] if doc else ""
    return sphinx_roles_to_markdown(first).replace("|", "&#124;")


def _target(member: griffe.Object | griffe.Alias) -> griffe.Object | None:
    """The object a re-exported name finally stands for (``None`` outside the package)."""
    try:
        return member.final_target if member.is_alias else member  # type: ignore[return-value]
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def homes(package: griffe.Module, modules: list[str]) -> dict[str, str]:
    """Canonical path of each exported object -> the one page that renders it.

    That is the page of the module defining it when that module has one; otherwise (defined in a
    private module) the shallowest page exporting it, e.g. ``advcorrupt.corruptions.corrupt``
    for ``advcorrupt.corruptions._registry.corrupt``. Every other page links to it.
    """
    home: dict[str, str] = {}
    for name in sorted(modules, key=lambda m: (m.count("."), m)):
        module = package.modules_collection.get_member(name)
        for export in module.exports or []:
            target = _target(module.members[export]) if export in module.members else None
            if target is None or target.is_module or target.path in home:
                continue
            defining = target.parent.path if target.parent is not None else name
            home[target.path] = defining if defining in modules else name
    return home


def module_page(name: str, package: griffe.Module, modules: list[str], home: dict[str, str]) -> str:
    """One module's page: what it defines (or is its home), then links for what it re-exports."""
    module = package.modules_collection.get_member(name)
    if module.exports is None:  # no __all__: mkdocstrings' defaults (public, defined here)
        return f"::: {name}\n"
    shown, rows = [], []
    for export in module.exports:
        if export.startswith("_") or export not in module.members:
            continue
        target = _target(module.members[export])
        if target is not None and not target.is_module and home.get(target.path) == name:
            shown.append(export)
        elif target is not None and target.is_module and target.path in modules:
            rows.append(f"| [`{export}`]({target.path}.md) | module | {_summary(target.path)} |")
        elif target is not None and not target.is_module:
            where = home.get(target.path, target.parent.path if target.parent else name)
            link = f"[`{export}`][{where}.{target.name}]" if _rendered(target) else f"`{export}`"
            rows.append(f"| {link} | {target.kind.value} | [`{where}`]({where}.md) |")
        elif target is not None:  # a module without a page: an old import path
            rows.append(f"| `{export}` | module | {_summary(target.path)} |")
        else:  # a name from outside the package
            rows.append(f"| `{export}` | | not documented here |")
    lines = [f"::: {name}", "    options:", f"      members: {shown!r}" if shown else "      members: false", ""]
    if rows:
        lines += ["## Also importable from here", "",
                  f"Names in `{name}.__all__` documented on another page.", "",
                  "| name | kind | documented in |", "|---|---|---|", *rows, ""]
    return "\n".join(lines)


def reference_pages(modules: list[str]) -> dict[str, str]:
    """Page path -> Markdown for each module, plus the reference index."""
    package = griffe.load(PACKAGE, search_paths=[str(ROOT)], resolve_aliases=False)
    home = homes(package, modules)
    pages = {f"{REFERENCE}/{m}.md": module_page(m, package, modules, home) for m in modules}
    rows = [f"| [`{m}`]({m}.md) | {_summary(m)} |" for m in modules]
    pages[f"{REFERENCE}/index.md"] = "\n".join(
        ["# API reference", "", "Generated from the docstrings, one page per public module.", "",
         "| module | what it holds |", "|---|---|", *rows, ""]
    )
    return pages


def reference_nav(modules: list[str]) -> list[Any]:
    """The nav of the reference: the index, then the top-level modules, a section per subpackage."""
    nav: list[Any] = [{"Overview": f"{REFERENCE}/index.md"}]
    sections: dict[str, list[Any]] = {}
    for m in modules:
        parts = m.split(".")
        if len(parts) == 1 or (len(parts) == 2 and not any(o.startswith(m + ".") for o in modules)):
            nav.append({m: f"{REFERENCE}/{m}.md"})
            continue
        key = ".".join(parts[:2])
        if key not in sections:
            sections[key] = []
            nav.append({key: sections[key]})
        sections[key].append({m: f"{REFERENCE}/{m}.md"})
    return nav


# ------------------------------------------------------------------------------------ links
def _repo_path(src_uri: str) -> str:
    """Repository path of a page: a root page's source file, else ``docs/<src_uri>``."""
    for repo, page in ROOT_PAGES.items():
        if src_uri == page:
            return repo
    return f"docs/{src_uri}"


def _site_path(repo_path: str) -> str | None:
    """Where a repository file is published in the site, if it is."""
    if repo_path in ROOT_PAGES:
        return ROOT_PAGES[repo_path]
    if repo_path.startswith("docs/"):
        return repo_path[len("docs/"):]
    return None


def rewrite_links(markdown: str, src_uri: str) -> str:
    """Rewrite relative links written for GitHub into the site's paths (anchors kept).

    Example:
        >>> rewrite_links("see [the trainer](docs/trainer.md#why)", "index.md")
        'see [the trainer](trainer.md#why)'
        >>> rewrite_links("[home](../README.md)", "trainer.md")
        '[home](index.md)'
    """
    here = posixpath.dirname(_repo_path(src_uri))
    page_dir = posixpath.dirname(src_uri)

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match.group(0)  # absolute URL or site-absolute path
        site = _site_path(posixpath.normpath(posixpath.join(here, target)))
        if site is None:
            return match.group(0)  # left for strict mode to report if it is broken
        new = posixpath.relpath(site, page_dir or ".")
        return f"{match.group(1)}{new}{match.group(3) or ''}{match.group(4)}"

    return _LINK.sub(fix, markdown)


# ------------------------------------------------------------------------- docstring parsing
_EXAMPLE_HEADER = re.compile(r"^Example:[ \t]*$", re.MULTILINE)


_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([\w.]+)(\(\))?`")


def _canonical(name: str, scope: griffe.Object) -> str | None:
    """Where a name written in ``scope``'s docstring is defined, if it is a public advcorrupt object."""
    try:
        path = name if name.startswith(PACKAGE + ".") else scope.resolve(name)
        found = scope.modules_collection.get_member(path)
    except (KeyError, ValueError, griffe.NameResolutionError, griffe.AliasResolutionError):
        return None
    if not path.startswith(PACKAGE + ".") or any(p.startswith("_") for p in path.split(".")):
        return None  # outside the package, or private: not in the reference
    return found.canonical_path if _rendered(found) else None


def _rendered(obj: griffe.Object | griffe.Alias) -> bool:
    """Whether mkdocstrings renders the object (it skips members without a docstring)."""
    try:
        return obj.is_module or obj.docstring is not None
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return False


def sphinx_roles_to_markdown(text: str, scope: griffe.Object | None = None) -> str:
    """Turn Sphinx roles into Markdown: a public ``advcorrupt`` object becomes a checked link.

    A role naming an object of the package (qualified, or resolved in ``scope``) becomes an
    autorefs link to where it is defined, which strict mode checks; anything else becomes code.

    Example:
        >>> sphinx_roles_to_markdown(":class:`~torch.nn.Module` or :meth:`step`")
        '`Module` or `step`'
    """

    def fix(match: re.Match[str]) -> str:
        tilde, path, call = match.group(1), match.group(2), match.group(3) or ""
        shown = (path.rsplit(".", 1)[-1] if tilde else path) + call
        target = _canonical(path, scope) if scope is not None else None
        return f"[`{shown}`][{target}]" if target else f"`{shown}`"

    return _ROLE.sub(fix, text)


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


_LITERAL_MARKER = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
_MATH_DIRECTIVE = re.compile(r"^[ \t]*\.\. math::[ \t]*\n", re.MULTILINE)


def fence_shell_lines(text: str) -> str:
    r"""Put each run of ``$ command`` lines in a console code block (Markdown would join them).

    Example:
        >>> print(fence_shell_lines("Example:\n    $ advcorrupt --version\n    $ advcorrupt corruptions"))
        Example:
            ```console
            $ advcorrupt --version
            $ advcorrupt corruptions
            ```
    """
    out: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        shell = stripped.startswith("$ ") and not in_fence
        if stripped.startswith("```"):
            in_fence = not in_fence
        if shell and not (out and out[-1].strip() == "```" and out[-2].lstrip().startswith("$ ")):
            out.append(f"{indent}```console")
        elif shell:
            out.pop()  # continue the block just closed
        out.append(line)
        if shell:
            out.append(f"{indent}```")
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """What our docstrings borrow from reStructuredText, in Markdown terms.

    ``Example:`` becomes ``Examples:`` (griffe reads the singular as an admonition, so its doctest
    would render as prose); ``text::`` before an indented block loses a colon (Markdown already
    shows the block as code), a ``.. math::`` line goes (its formula stays, as code); shell lines
    are fenced.
    """
    text = _EXAMPLE_HEADER.sub("Examples:", text)
    text = _MATH_DIRECTIVE.sub("", text)
    text = _LITERAL_MARKER.sub(r"\1:", text)
    return fence_shell_lines(text)


class DocstringMarkup(griffe.Extension):
    """Docstrings as we write them (Google style, a little reST), read as Markdown by mkdocstrings.

    :func:`rst_to_markdown` adapts the markup; Sphinx roles become links (:func:`sphinx_roles_to_markdown`).
    """

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = sphinx_roles_to_markdown(rst_to_markdown(obj.docstring.value), obj)


# ------------------------------------------------------------------------------------ hooks
def on_config(config: Any) -> Any:
    """Expand the ``API reference`` nav entry into the generated pages."""
    modules = public_modules()
    for i, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NAV_ENTRY in item:
            config.nav[i] = {NAV_ENTRY: reference_nav(modules)}
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the root pages and the reference pages as generated files."""
    for repo, page in ROOT_PAGES.items():
        source = ROOT / repo
        if source.is_file():
            files.append(File.generated(config, page, abs_src_path=os.fspath(source)))
    for page, content in reference_pages(public_modules()).items():
        files.append(File.generated(config, page, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Make links written for GitHub resolve in the site."""
    return rewrite_links(markdown, page.file.src_uri)
