"""Record (or recompute) the golden end-to-end run behind ``tests/test_golden_run.py``.

The run: ``advcorrupt train`` in-process on the built-in synthetic scenes (model ``acm``, the
default strategy, CPU, one thread, fixed seed, a few tiny steps), then
:func:`advcorrupt.benchmark.evaluate_robustness` of the trained model on a tiny seeded synthetic
test set. What it records must not change when the code is only moved around:

- ``model``: the sha256 of every tensor of the final checkpoint's model state dict;
- ``trainer``: the same for every tensor of the trainer's state (the policy's weights, the
  REINFORCE baseline...), plus the plain values (step counts, the adversary's name);
- ``rng``: the sha256 of the saved torch generator states (they pin how many numbers were drawn);
- ``policy_history``: the per-epoch action shares saved in the checkpoint;
- ``metrics`` and ``steps``: the lines of ``metrics.jsonl`` / ``steps.jsonl`` without their
  wall-clock fields (see :func:`_strip_timing`);
- ``policy_actions``: ``policy_actions.json``;
- ``report``: the robustness report's ``to_dict()``.

Regenerate it only from a commit whose behaviour is the reference, e.g.::

    git worktree add /tmp/golden_base <commit>
    cd /tmp/golden_base && PYTHONPATH=/tmp/golden_base /work/main/.venv/bin/python \\
        /work/main/tests/data/make_golden_run.py --out /work/main/tests/data/golden_run.json
    git worktree remove /tmp/golden_base
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

SEED = 0
TRAIN_ARGS = (
    "train", "--model", "acm", "--device", "cpu", "--seed", str(SEED),
    "--epochs", "3", "--steps-per-epoch", "4", "--batch-size", "2", "--lr", "0.003",
    "--synthetic-train", "8", "--synthetic-test", "4", "--synthetic-size", "32",
    "--bce-weight", "1", "--bce-pos-weight", "10", "--no-progress",
    # Named since the binary default became the schedule random@3 (issue 20); the run is the same.
    "--strategy", "learned",
)
BENCH = {"num_images": 4, "size": 32, "data_seed": 7, "corruptions": ("gaussian_noise", "motion_blur"),
         "severities": (1, 3), "seed": 11}


def tensor_sha256(t: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and raw bytes (contiguous, on the CPU)."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _hash_tree(obj: Any) -> Any:
    """``obj`` with every tensor replaced by its sha256 (containers kept, plain values kept)."""
    if torch.is_tensor(obj):
        return "sha256:" + tensor_sha256(obj)
    if isinstance(obj, Mapping):
        return {str(k): _hash_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_hash_tree(v) for v in obj]
    return obj


def _is_timing(key: str) -> bool:
    """Wall-clock fields of the logs: ``time_s``, ``*_time``, ``*_seconds``, ``*_per_s``..."""
    k = key.lower()
    return "time" in k or k.endswith(("_s", "seconds", "_sec", "per_s", "per_sec", "wall"))


def _strip_timing(record: Any) -> Any:
    if isinstance(record, Mapping):
        return {k: _strip_timing(v) for k, v in record.items() if not _is_timing(str(k))}
    return record


def _read_jsonl(path: Path) -> list[Any]:
    return [_strip_timing(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _json_roundtrip(obj: Any) -> Any:
    """What ``obj`` reads back as from JSON (tuples become lists, NaN stays NaN)."""
    return json.loads(json.dumps(obj))


def golden_run(out_dir: str | Path) -> dict[str, Any]:
    """Train, benchmark and return the record (JSON-ready; see the module docstring)."""
    from advcorrupt.benchmark import evaluate_robustness
    from advcorrupt.checkpoint import load_checkpoint
    from advcorrupt.cli import main
    from advcorrupt.data import Normalize, SyntheticIRSTD
    from advcorrupt.models import create_model

    out_dir = Path(out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = main([*TRAIN_ARGS, "--out-dir", str(out_dir)])
        if rc != 0:
            raise RuntimeError(f"advcorrupt train exited with {rc}")
        ckpt_path = sorted(out_dir.glob("ckpt_*.pt"))[-1]
        ckpt = load_checkpoint(ckpt_path, map_location="cpu")

        model = create_model("acm")
        model.load_state_dict(ckpt["model"])
        model.eval()
        norm = ckpt["normalize"]
        test = SyntheticIRSTD(BENCH["num_images"], size=BENCH["size"], seed=BENCH["data_seed"])
        report = evaluate_robustness(
            model, test, corruptions=list(BENCH["corruptions"]), severities=BENCH["severities"],
            seed=BENCH["seed"], preprocess=Normalize(norm["mean"], norm["std"]), device="cpu",
            progress=False, model_name="acm (golden)", dataset_name="synthetic",
        )
    finally:
        torch.set_num_threads(threads)

    trainer = dict(ckpt["trainer"])
    return _json_roundtrip({
        "torch_version": torch.__version__,
        "train_args": list(TRAIN_ARGS),
        "bench": dict(BENCH),
        "checkpoint": ckpt_path.name,
        "model": {k: tensor_sha256(v) for k, v in ckpt["model"].items()},
        "trainer": _hash_tree(trainer),
        # The run seeds torch only: the saved numpy/Python states depend on the process's history.
        "rng": _hash_tree({"generators": ckpt["generators"], "torch": ckpt["rng"]["torch"]}),
        "normalize": dict(norm),
        "policy_history": ckpt["policy_history"],
        "metrics": _read_jsonl(out_dir / "metrics.jsonl"),
        "steps": _read_jsonl(out_dir / "steps.jsonl"),
        "policy_actions": json.loads((out_dir / "policy_actions.json").read_text()),
        "report": report.to_dict(),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write golden_run.json")
    args = parser.parse_args(argv)
    import advcorrupt

    print(f"advcorrupt imported from {advcorrupt.__file__}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        record = golden_run(Path(tmp) / "run")
    root = Path(advcorrupt.__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    record["generated_from"] = commit.stdout.strip() or str(root)
    Path(args.out).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
