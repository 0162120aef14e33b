"""The model-output forms advcorrupt accepts, shared by the trainer and the benchmark."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

__all__ = ["output_heads"]


def output_heads(output: object) -> list[Tensor]:
    """The logit maps of a model output, in order.

    Accepted: a tensor of logits, a non-empty list/tuple of them (deep supervision: the trainer
    averages the loss over the heads, evaluation uses the last) or a mapping with key ``"out"``.

    Raises:
        TypeError: any other output.
    """
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (list, tuple)) and output and all(isinstance(o, Tensor) for o in output):
        return list(output)
    if isinstance(output, Mapping) and isinstance(output.get("out"), Tensor):
        return [output["out"]]
    raise TypeError(
        "model output must be a Tensor of logits, a non-empty list/tuple of them (deep supervision) "
        f"or a dict with key 'out'; got {_describe(output)}"
    )


def _describe(obj: object) -> str:
    if isinstance(obj, Mapping):
        return f"{type(obj).__name__} with keys {sorted(map(str, obj))}"
    if isinstance(obj, (list, tuple)):
        return f"{type(obj).__name__} of {[type(o).__name__ for o in obj]}"
    return type(obj).__name__
