"""Corrupted copies of a dataset on disk, ImageNet-C style: writing them and evaluating on them.

``write_corrupted_dataset(SRC, DST, ...)`` writes ``DST/<corruption>/<severity>/`` in ``SRC``'s own
layout, which it recognises (:mod:`advcorrupt.cli._corrupted_layouts`):

- ISTD (``images/``, ``masks/``, ``img_idx/``): every image listed in a split file corrupted and saved
  as an 8-bit gray PNG at its own size, ``masks/`` and ``img_idx/`` copied unchanged; test splits are
  written first, so an image listed in a test and a train split keeps its test version;
- CamVid / SegNet (``test/`` + ``testannot/``, ``val/`` + ``valannot/``, ``train/`` + ``trainannot/``,
  the splits present): every image of every split corrupted and saved as an 8-bit RGB PNG with its
  file name, the ``<split>annot/`` label folders copied unchanged;

plus ``DST/corruptions.json`` describing the set (its ``"layout"``: ``"istd"`` or ``"segnet"``; a
manifest without one is an ISTD copy). Image ``i`` of a split is corrupted exactly as the in-memory
benchmark corrupts it (:class:`advcorrupt.benchmark.CorruptedDataset`, generator seeded by
:func:`advcorrupt.benchmark.corruption_seed` with its index in the split), so ``advcorrupt bench
--corrupted-root DST`` reproduces ``advcorrupt bench`` up to the 8-bit rounding of the saved PNGs:
:func:`evaluate_corrupted_root` builds the same report (binary: IoU/nIoU/Pd/Fa/RCE; semantic:
mIoU/aAcc/mAcc, per-class IoU, mPC, rPC) with :func:`advcorrupt.bench.evaluation.robustness_report`.

Everything is written into a hidden temporary folder beside ``DST`` and renamed to ``DST`` when
complete, so an interrupted run never leaves a half-written dataset.

``advcorrupt corrupt-dataset`` writes such a folder and ``advcorrupt bench --corrupted-root`` reads it; both
subcommands use this module, and :mod:`advcorrupt.cli.corrupt_dataset` re-exports its two public functions.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._corrupted_layouts import LAYOUTS, find_source, read_setting, write_setting

__all__ = ["MANIFEST", "evaluate_corrupted_root", "write_corrupted_dataset"]

MANIFEST = "corruptions.json"


def _check_settings(corruptions: Sequence[str] | None, severities: Sequence[int] | None) -> tuple[list[str], list[int]]:
    from ..corruptions import available, get

    if isinstance(corruptions, str):
        raise TypeError(f"corruptions must be a sequence of names; got the str {corruptions!r}")
    names = list(available() if corruptions is None else corruptions)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"corruptions must name at least one corruption, each once; got {names}")
    specs = [get(n) for n in names]  # KeyError listing the valid names
    sevs = [1, 2, 3, 4, 5] if severities is None else list(severities)
    if not sevs or len(set(sevs)) != len(sevs) or any(isinstance(s, bool) or not isinstance(s, int) for s in sevs):
        raise ValueError(f"severities must be distinct integer levels, at least one; got {sevs}")
    for spec in specs:
        bad = [s for s in sevs if not 1 <= s <= spec.num_levels]
        if bad:
            raise ValueError(f"severities must be in [1, {spec.num_levels}] for {spec.name!r}; got {bad}")
    return names, sevs


def _prepare_destination(dst: Path, overwrite: bool) -> Path:
    if dst.exists() and not dst.is_dir():
        raise FileExistsError(f"dst {dst} exists and is not a folder")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"dst {dst} exists and is not empty; pass --overwrite (overwrite=True) to replace it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def _save_png(image: Any, path: Path) -> None:
    from PIL import Image

    arr = image.detach().cpu().float().numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    Image.fromarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)).save(path)


def write_corrupted_dataset(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write ``dst/<corruption>/<severity>/`` copies of the ISTD or CamVid / SegNet-layout dataset ``src``.

    Args:
        src: dataset folder in the standard ISTD layout (``images/``, ``masks/``, ``img_idx/``) or in
            CamVid's SegNet layout (``<split>/`` + ``<split>annot/`` for test, val and/or train).
        dst: output folder; must not exist or be empty unless ``overwrite``.
        corruptions: registered names (default: all); an unknown name is a ``KeyError`` listing the valid ones.
        severities: levels (default 1-5), each within every corruption's level table.
        seed: benchmark seed (same images as ``evaluate_robustness(..., seed=seed)``).
        overwrite: replace a non-empty ``dst`` (only once the new copy is complete).
        progress: a progress bar (one line per setting when not on a terminal).

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: ``src`` has neither layout (the message names what each one misses).
        FileExistsError: ``dst`` is not empty and ``overwrite`` is False.

    Example:
        >>> write_corrupted_dataset("data/NUAA-SIRST", "data/NUAA-SIRST-C", severities=(1, 3))  # doctest: +SKIP
        >>> write_corrupted_dataset("../shared/data/CamVid", "data/CamVid-C", severities=(1, 3))  # doctest: +SKIP
    """
    from .._progress import progress_bar

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve() or dst.resolve() in src.resolve().parents:
        raise ValueError(f"dst must be outside src; got src {src} and dst {dst}")
    names, sevs = _check_settings(corruptions, severities)
    source = find_source(src)
    tmp = _prepare_destination(dst, overwrite)
    bar = progress_bar(total=source.num_images * len(names) * len(sevs), desc="corrupt-dataset", unit="img", enabled=progress)
    try:
        for name in names:
            for s in sevs:
                if bar is not None:
                    bar.set_description(f"{name}@{s}")
                write_setting(tmp / name / str(s), src, source, name, s, seed=seed, save=_save_png, bar=bar)
        manifest = {"source": str(src.resolve()), "seed": int(seed), "corruptions": names, "severities": sevs,
                    "layout": source.layout, "splits": list(source.splits), "format": LAYOUTS[source.layout]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return dst


def read_manifest(root: Path) -> dict[str, Any]:
    """``root``'s manifest; ``"layout"`` is ``"istd"`` when absent (written before the SegNet layout existed)."""
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(f"corrupted root {root} has no {MANIFEST}: write it with `advcorrupt corrupt-dataset`")
    manifest: dict[str, Any] = json.loads((root / MANIFEST).read_text())
    manifest.setdefault("layout", "istd")
    if manifest["layout"] not in LAYOUTS:
        raise ValueError(f"{root / MANIFEST} has layout {manifest['layout']!r}; expected one of {sorted(LAYOUTS)}")
    return manifest


#: The layout of a corrupted copy of each ``advcorrupt train --dataset`` kind (a ``folder`` dataset has none).
_DATASET_LAYOUTS = {"istd": "istd", "camvid": "segnet"}
_LAYOUT_LABELS = {"istd": "ISTD layout (images/, masks/, img_idx/)",
                  "segnet": "CamVid / SegNet layout (<split>/, <split>annot/)"}


def check_root_layout(root: str | os.PathLike[str], dataset: str) -> str:
    """The layout of the corrupted ``root``, which must be the one of a run on ``dataset`` (``"istd"``, ``"camvid"``).

    Raises:
        ValueError: the layouts disagree (e.g. an ISTD copy for a CamVid checkpoint); the message names both.
        FileNotFoundError: ``root`` has no manifest.
    """
    layout = read_manifest(Path(root))["layout"]
    expected = _DATASET_LAYOUTS.get(dataset)
    if layout != expected:
        wanted = (f"whose copies have the {_LAYOUT_LABELS[expected]}" if expected is not None
                  else "of which `advcorrupt corrupt-dataset` writes no copy (it knows the ISTD and the CamVid / SegNet layouts)")
        raise ValueError(
            f"corrupted root {root} holds a copy in the {_LAYOUT_LABELS[layout]}, but the checkpoint's dataset is "
            f"{dataset!r}, {wanted}: corrupt the checkpoint's own dataset with `advcorrupt corrupt-dataset`, or leave "
            f"--corrupted-root out"
        )
    return layout


def _root_settings(root: Path, manifest: dict[str, Any], corruptions: Sequence[str] | None,
                   severities: Sequence[int] | None) -> tuple[list[str], list[int]]:
    names = list(manifest["corruptions"]) if corruptions is None else list(corruptions)
    unknown = [n for n in names if n not in manifest["corruptions"]]
    if unknown:
        raise KeyError(f"corruptions {unknown} are not in {root}; it holds: {', '.join(manifest['corruptions'])}")
    sevs = [s for s in manifest["severities"] if severities is None or s in severities]
    if not sevs:
        raise ValueError(f"severities must include a level of {root}; it holds {manifest['severities']}, got {list(severities or [])}")
    return names, sevs


def _root_task(root: Path, layout: str, task: Any, clean: Any) -> Any:
    """ISTD: the given task (None or binary). SegNet: a semantic task with known classes (the clean set's by default)."""
    from ..bench.scoring import given_task

    name = getattr(task, "name", task)
    wanted = "binary" if layout == "istd" else "semantic"
    if name not in (None, wanted):
        raise ValueError(f"task must be {wanted!r} (or None) for the corrupted root {root} in the {_LAYOUT_LABELS[layout]}; got {name!r}")
    if layout == "istd":
        return task
    resolved = given_task(task if task is not None else "semantic", num_classes=None, ignore_index=None, dataset=clean)
    if getattr(resolved, "num_classes", None) is None:
        raise ValueError(f"the classes of {root} are unknown: pass task=SemanticTask(num_classes=K, ignore_index=...) or a "
                         f"clean dataset with num_classes (e.g. advcorrupt.data.CamVid); got task={task!r}")
    return resolved


def _root_split(root: Path, manifest: dict[str, Any], split: str | None, clean: Any) -> str:
    if manifest["layout"] == "istd":
        return "test"
    split = split if split is not None else getattr(clean, "split", "test")
    if split not in manifest["splits"]:
        raise ValueError(f"split must be one of the splits of {root} ({', '.join(manifest['splits'])}); got {split!r}")
    return split


def evaluate_corrupted_root(
    model: Any,
    root: str | os.PathLike[str],
    *,
    clean: Any,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    dataset_name: str | None = None,
    split: str | None = None,
    task: Any = None,
    progress: bool = False,
    model_name: str | None = None,
    **evaluate_kwargs: Any,
) -> Any:
    """The robustness report of ``model`` on a folder written by :func:`write_corrupted_dataset`.

    The same report :func:`advcorrupt.benchmark.evaluate_robustness` returns for the clean set and
    the folder's seed: a :class:`~advcorrupt.benchmark.RobustnessReport` for an ISTD copy, a
    :class:`~advcorrupt.bench.SemanticRobustnessReport` (mIoU / aAcc / mAcc / per-class IoU per
    setting, mPC, rPC) for a CamVid / SegNet copy.

    Args:
        model: the model (as for :func:`advcorrupt.benchmark.evaluate`).
        root: the ``corrupt-dataset`` output folder.
        clean: the clean split (the reference of RCE / rPC; its ``class_names`` name the classes).
        corruptions: evaluate only these (default: all in ``root``); each must be in ``root``.
        severities: evaluate only these levels of ``root`` (default: all); at least one must be there.
        dataset_name: ISTD only: split name ``img_idx/test_<NAME>.txt`` (inferred when unique).
        split: SegNet only: the split to read (default: ``clean.split``, else ``"test"``); ISTD copies
            are read at their test split.
        task: ISTD: ``None`` (inferred, binary) or ``"binary"`` / a binary task. SegNet: ``"semantic"``
            or a :class:`~advcorrupt.tasks.SemanticTask` with ``num_classes`` (default: the clean
            set's ``num_classes`` and ``ignore_index``, e.g. CamVid's 11 and 11).
        progress: one progress line per setting.
        model_name: label of the report.
        **evaluate_kwargs: ``preprocess``, ``device``, ``threshold``, ``batch_size``, ``pad_to``.

    Returns:
        The report; its ``seed`` is the one the folder was written with.

    Raises:
        ValueError: a task that is not the layout's, a split the folder lacks, or a SegNet split
            whose images are not the clean set's.

    Example:
        >>> from advcorrupt.data import CamVid
        >>> report = evaluate_corrupted_root(model, "data/CamVid-C", clean=CamVid("../shared/data/CamVid", "test"),
        ...                                  preprocess=normalize)  # doctest: +SKIP
    """
    from ..bench.evaluation import evaluate, robustness_report
    from ..tasks import BinaryTask

    root = Path(root)
    manifest = read_manifest(root)
    layout = manifest["layout"]
    names, sevs = _root_settings(root, manifest, corruptions, severities)
    task = _root_task(root, layout, task, clean)
    split = _root_split(root, manifest, split, clean)
    clean_m = evaluate(model, clean, task=task, progress=progress, **evaluate_kwargs)
    passes = []
    for name in names:
        for s in sevs:
            folder = root / name / str(s)
            ds = read_setting(folder, layout, split=split, dataset_name=dataset_name, task=task, clean=clean)
            passes.append((name, int(s), evaluate(model, ds, task=task, progress=progress, **evaluate_kwargs)))
    return robustness_report(
        clean_m, passes, task=task if task is not None else BinaryTask(),
        threshold=float(evaluate_kwargs.get("threshold", 0.5)), dataset=clean, corruptions=names, severities=sevs,
        seed=int(manifest["seed"]), model=model, model_name=model_name,
        dataset_name=root.name if layout == "istd" else f"{root.name} ({split})",
    )
