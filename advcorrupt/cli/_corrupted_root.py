"""Corrupted copies of an ISTD dataset on disk, ImageNet-C style: writing them and evaluating on them.

``write_corrupted_dataset(SRC, DST, ...)`` writes ``DST/<corruption>/<severity>/`` in the standard
ISTD layout (``images/``, ``masks/``, ``img_idx/``): every image listed in a split file corrupted and
saved as an 8-bit gray PNG at its own size, ``masks/`` and ``img_idx/`` copied unchanged, plus
``DST/corruptions.json`` describing the set. Image ``i`` of a split is corrupted exactly as the
in-memory benchmark corrupts it (:class:`advcorrupt.benchmark.CorruptedDataset`, generator seeded
by :func:`advcorrupt.benchmark.corruption_seed` with its index in the split), so ``advcorrupt bench
--corrupted-root DST`` reproduces ``advcorrupt bench`` up to the 8-bit rounding of the saved PNGs.
Test splits are written first: an image listed in a test and a train split keeps its test version.

Everything is written into a hidden temporary folder beside ``DST`` and renamed to ``DST`` when
complete, so an interrupted run never leaves a half-written dataset.

``advcorrupt corrupt-dataset`` writes such a folder and ``advcorrupt bench --corrupted-root`` reads it; both
subcommands use this module, and :mod:`advcorrupt.cli.corrupt_dataset` re-exports its two public functions.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def _source_splits(src: Path) -> list[tuple[str, str]]:
    """``(split, name)`` of every ``img_idx/{test,train}_<name>.txt`` in ``src``, test splits first."""
    missing = [d for d in ("images", "masks", "img_idx") if not (src / d).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"src {src} lacks the ISTD layout: missing {', '.join(d + '/' for d in missing)} (expected images/, "
            "masks/, img_idx/train_<NAME>.txt, img_idx/test_<NAME>.txt)"
        )
    splits = [(split, f.stem[len(split) + 1 :]) for split in ("test", "train") for f in sorted((src / "img_idx").glob(f"{split}_*.txt"))]
    if not splits:
        raise FileNotFoundError(f"src {src} has no split file: expected img_idx/test_<NAME>.txt and/or img_idx/train_<NAME>.txt")
    return splits


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


def _write_setting(folder: Path, src: Path, datasets: list[Any], corruption: str, severity: int, seed: int, bar: Any) -> None:
    from ..benchmark import CorruptedDataset

    (folder / "images").mkdir(parents=True)
    shutil.copytree(src / "masks", folder / "masks")
    shutil.copytree(src / "img_idx", folder / "img_idx")
    written: set[str] = set()
    for ds in datasets:
        view = CorruptedDataset(ds, corruption, severity, seed=seed)
        for i, stem in enumerate(ds.names):
            if stem not in written:
                _save_png(view[i][0], folder / "images" / f"{stem}.png")
                written.add(stem)
            if bar is not None:
                bar.update(1)


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
    """Write ``dst/<corruption>/<severity>/`` copies of the ISTD dataset ``src``.

    Args:
        src: dataset folder in the standard ISTD layout.
        dst: output folder; must not exist or be empty unless ``overwrite``.
        corruptions: registered names (default: all); an unknown name is a ``KeyError`` listing the valid ones.
        severities: levels (default 1-5), each within every corruption's level table.
        seed: benchmark seed (same images as ``evaluate_robustness(..., seed=seed)``).
        overwrite: replace a non-empty ``dst`` (only once the new copy is complete).
        progress: a progress bar (one line per setting when not on a terminal).

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.

    Example:
        >>> write_corrupted_dataset("data/NUAA-SIRST", "data/NUAA-SIRST-C", severities=(1, 3))  # doctest: +SKIP
    """
    from .._progress import progress_bar
    from ..data import ISTDDataset

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve() or dst.resolve() in src.resolve().parents:
        raise ValueError(f"dst must be outside src; got src {src} and dst {dst}")
    names, sevs = _check_settings(corruptions, severities)
    splits = _source_splits(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # size mismatches etc. are the dataset's own business here
        datasets = [ISTDDataset(src, split, name=name, cache=True) for split, name in splits]
    tmp = _prepare_destination(dst, overwrite)
    total = sum(len(ds) for ds in datasets) * len(names) * len(sevs)
    bar = progress_bar(total=total, desc="corrupt-dataset", unit="img", enabled=progress)
    try:
        for name in names:
            for s in sevs:
                if bar is not None:
                    bar.set_description(f"{name}@{s}")
                _write_setting(tmp / name / str(s), src, datasets, name, s, seed, bar)
        manifest = {"source": str(src.resolve()), "seed": int(seed), "corruptions": names, "severities": sevs,
                    "splits": [f"{a}_{b}" for a, b in splits], "format": "8-bit gray PNG"}
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


def evaluate_corrupted_root(
    model: Any,
    root: str | os.PathLike[str],
    *,
    clean: Any,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    dataset_name: str | None = None,
    progress: bool = False,
    model_name: str | None = None,
    **evaluate_kwargs: Any,
) -> Any:
    """A :class:`~advcorrupt.benchmark.RobustnessReport` from a folder written by :func:`write_corrupted_dataset`.

    Args:
        model: the detector (as for :func:`advcorrupt.benchmark.evaluate`).
        root: the ``corrupt-dataset`` output folder.
        clean: the clean test dataset (the reference of RCE).
        corruptions: evaluate only these (default: all in ``root``); each must be in ``root``.
        severities: evaluate only these levels of ``root`` (default: all); at least one must be there.
        dataset_name: split name ``img_idx/test_<NAME>.txt`` (inferred when unique).
        progress: one progress line per setting.
        model_name: label of the report.
        **evaluate_kwargs: ``preprocess``, ``device``, ``threshold``, ``batch_size``, ``pad_to``.

    Returns:
        The report; its ``seed`` is the one the folder was written with.
    """
    from ..benchmark import METRIC_KEYS, RobustnessReport, SettingResult, _safe_rce, evaluate
    from ..data import ISTDDataset
    from ..metrics import rce

    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(f"corrupted root {root} has no {MANIFEST}: write it with `advcorrupt corrupt-dataset`")
    manifest = json.loads((root / MANIFEST).read_text())
    names = list(manifest["corruptions"]) if corruptions is None else list(corruptions)
    unknown = [n for n in names if n not in manifest["corruptions"]]
    if unknown:
        raise KeyError(f"corruptions {unknown} are not in {root}; it holds: {', '.join(manifest['corruptions'])}")
    sevs = [s for s in manifest["severities"] if severities is None or s in severities]
    if not sevs:
        raise ValueError(f"severities must include a level of {root}; it holds {manifest['severities']}, got {list(severities or [])}")
    clean_m = evaluate(model, clean, progress=progress, **evaluate_kwargs)
    results = []
    for name in names:
        for s in sevs:
            ds = ISTDDataset(root / name / str(s), "test", name=dataset_name)
            m = evaluate(model, ds, progress=progress, **evaluate_kwargs)
            results.append(SettingResult(name, int(s), *(m[k] for k in METRIC_KEYS), rce=_safe_rce(rce, clean_m["iou"], m["iou"])))
    return RobustnessReport(
        clean=clean_m, results=tuple(results), corruptions=tuple(names), severities=tuple(sevs),
        seed=int(manifest["seed"]), num_images=len(clean), model_name=model_name or type(model).__name__,
        dataset_name=root.name, threshold=float(evaluate_kwargs.get("threshold", 0.5)),
    )
