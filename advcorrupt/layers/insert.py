"""``insert_sfim``: put SFIM after named submodules of an existing network.

BALISTD (AAAI 2024) places its spatial-frequency interaction module (Fig. 2c) inside the
detector. ``insert_sfim`` does the same for any ``nn.Module`` without editing its code: each
target submodule is replaced, in place, by an :class:`SFIMAfter` wrapper that calls the original
module and then an :class:`~advcorrupt.layers.SFIM` on its output. Channel counts are read from
a dry forward pass with hooks on a tiny input, so nothing about the host needs to be declared.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .sfim import SFIM

__all__ = ["SFIMAfter", "default_sfim_targets", "insert_sfim"]


class SFIMAfter(nn.Module):
    """Wraps a module so that SFIM refines its (B, C, H, W) output.

    The wrapped module keeps its parameters under ``.module`` and the SFIM lives in ``.sfim``;
    any positional and keyword arguments are passed through, so wrapped decoder blocks that take
    skips or target sizes keep working.

    Args:
        module: the original submodule; its output must be a (B, C, H, W) tensor.
        sfim: the SFIM applied to that output.

    Shape:
        - Output: the wrapped module's output shape.

    Example:
        >>> block = SFIMAfter(nn.Conv2d(1, 8, 3, padding=1), SFIM(8))
        >>> block(torch.randn(1, 1, 9, 9)).shape
        torch.Size([1, 8, 9, 9])
    """

    def __init__(self, module: nn.Module, sfim: SFIM) -> None:
        super().__init__()
        self.module = module
        self.sfim = sfim

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.sfim(self.module(*args, **kwargs))


def default_sfim_targets(model: nn.Module) -> list[str]:
    """Where ``insert_sfim`` puts SFIM when no names are given.

    * a model with a ``sfim_targets`` attribute (a sequence of names): those names. Every
      ``advcorrupt.models`` detector declares its own as a class attribute (ACM and ISNet after
      ``layer1``-``layer3`` and both decoder stages, ALCNet after its stages and two fusions,
      RDIAN after ``conv2`` and ``conv_cat``, DNANet and SFIM-DNANet after the encoder nodes
      ``conv0_0``-``conv4_0``, ISTDU-Net after its decoder steps ``up1``-``up3``), and so can
      any model of your own.
    * timm models (they expose ``feature_info``): every feature stage with stride >= 4, i.e. the
      stages after the stem (``layer1`` ... ``layer4`` of a ResNet), classifier or
      ``features_only``.
    * segmentation-models-pytorch models (``encoder`` + ``decoder.blocks``): the ``layer*``
      stages of a ResNet-style encoder and every decoder block.

    Args:
        model: the host network.

    Returns:
        Qualified submodule names, in ``named_modules`` order.

    Raises:
        ValueError: for a model of another kind; pass ``names`` to ``insert_sfim`` then.

    Example:
        >>> import timm
        >>> default_sfim_targets(timm.create_model("resnet18", pretrained=False))
        ['layer1', 'layer2', 'layer3', 'layer4']
        >>> from advcorrupt.models import create_model
        >>> default_sfim_targets(create_model("rdian"))
        ['conv2', 'conv_cat']
    """
    declared = getattr(model, "sfim_targets", None)
    if declared is not None:
        return [str(n) for n in declared]
    feature_info = getattr(model, "feature_info", None)
    if feature_info is not None:
        infos = list(feature_info.info) if hasattr(feature_info, "info") else list(feature_info)
        names = [str(i["module"]) for i in infos if int(i.get("reduction", 1)) >= 4]
        # FeatureListNet flattens "a.b" to "a_b"; keep the names that exist in this model.
        present = dict(model.named_modules())
        names = [n if n in present else n.replace(".", "_") for n in names]
        names = [n for n in names if n in present]
        if names:
            return names
    encoder = getattr(model, "encoder", None)
    decoder = getattr(model, "decoder", None)
    blocks = getattr(decoder, "blocks", None)
    if isinstance(encoder, nn.Module) and isinstance(blocks, nn.ModuleList):
        enc = [f"encoder.{n}" for n, _ in encoder.named_children() if fnmatch.fnmatch(n, "layer*")]
        dec = [f"decoder.blocks.{i}" for i in range(len(blocks))]
        return enc + dec
    raise ValueError(
        "insert_sfim cannot guess target modules for a "
        f"{type(model).__name__}; pass names=[...] (qualified submodule names or glob patterns)"
    )


def _resolve(model: nn.Module, names: Iterable[str]) -> list[str]:
    all_names = [n for n, _ in model.named_modules() if n]
    chosen: list[str] = []
    for pattern in names:
        if not isinstance(pattern, str):
            raise TypeError(f"names must contain str; got {type(pattern).__name__}")
        hits = [n for n in all_names if _matches(n, pattern)]
        if not hits:
            close = difflib.get_close_matches(pattern, all_names, n=5)
            raise ValueError(
                f"names entry {pattern!r} matches no submodule of {type(model).__name__}; "
                f"top-level submodules: {[n for n, _ in model.named_children()]}"
                + (f"; close matches: {close}" if close else "")
            )
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _matches(name: str, pattern: str) -> bool:
    """Glob match per dotted segment, so ``"blocks.*"`` matches ``blocks.0``, not ``blocks.0.conv``."""
    parts, pats = name.split("."), pattern.split(".")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats))


def _first_conv_in_channels(model: nn.Module) -> int:
    declared = getattr(model, "in_channels", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError("cannot infer the input channels (no nn.Conv2d found); pass example_input=")


def _module_factory_kwargs(module: nn.Module, fallback: nn.Module) -> dict[str, Any]:
    for source in (module, fallback):
        for p in source.parameters():
            return {"device": p.device, "dtype": p.dtype}
    return {}


def insert_sfim(
    model: nn.Module,
    names: Iterable[str] | None = None,
    *,
    example_input: Tensor | None = None,
    input_size: tuple[int, int] = (64, 64),
    sfim_kwargs: Mapping[str, Any] | None = None,
    forward_fn: Callable[[nn.Module, Tensor], Any] | None = None,
) -> nn.Module:
    """Insert an SFIM after each named submodule of ``model``, in place.

    Channel counts come from one dry forward pass (eval mode, no grad, hooks on the targets) on
    ``example_input`` or on a zero tensor of shape (1, C_in, *input_size), where C_in is the
    ``in_channels`` of the model's first ``nn.Conv2d``. Training mode is restored afterwards and
    BatchNorm statistics are untouched. Each target is replaced by ``SFIMAfter(target, SFIM(C))``
    on the target's device and dtype; the new parameters are trainable. With the default
    ``zero_init_last=True`` a fresh SFIM is the identity, so the model's outputs are unchanged
    until training moves them; insert after loading any checkpoint, since the wrapped
    parameters move from ``<name>.*`` to ``<name>.module.*``.

    Args:
        model: the host network (timm, segmentation-models-pytorch or any ``nn.Module``).
        names: qualified submodule names or glob patterns (``"layer*"``,
            ``"decoder.blocks.*"``); ``None`` uses :func:`default_sfim_targets`.
        example_input: input for the dry forward pass; overrides ``input_size``.
        input_size: (H, W) of the zero dry-run input when no ``example_input`` is given.
        sfim_kwargs: extra keyword arguments for every :class:`SFIM` (e.g. ``kernel_size``).
        forward_fn: how to call the model on the dry input, ``forward_fn(model, x)``; default
            ``model(x)``.

    Returns:
        ``model`` itself, modified.

    Raises:
        ValueError: if ``names`` is empty, a name matches nothing (the message lists the model's
            submodules and close matches), ``input_size`` is not two integers >= 1, or a target's
            output is not a (B, C, H, W) tensor.

    Example:
        >>> import timm
        >>> net = insert_sfim(timm.create_model("resnet18", pretrained=False, num_classes=3))
        >>> net(torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 3])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
    if isinstance(names, str):
        names = [names]
    if names is not None:
        names = list(names)
        if not names:
            raise ValueError("names must hold at least one submodule name or pattern; got an empty list")
    targets = _resolve(model, default_sfim_targets(model) if names is None else names)
    if example_input is None:
        example_input = _zero_input(model, input_size)
    shapes = _dry_run_shapes(model, targets, example_input, forward_fn)
    # Deepest first, so that wrapping an outer target does not move an inner one's path.
    for name in sorted(targets, key=lambda n: n.count("."), reverse=True):
        target = model.get_submodule(name)
        sfim = SFIM(shapes[name][1], **_module_factory_kwargs(target, model), **dict(sfim_kwargs or {}))
        sfim.train(target.training)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, SFIMAfter(target, sfim))
    return model


def _zero_input(model: nn.Module, input_size: object) -> Tensor:
    """The dry run's (1, C_in, H, W) zero tensor on the model's device and dtype."""
    if (
        not isinstance(input_size, (tuple, list))
        or len(input_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_size)
    ):
        raise ValueError(f"input_size must be two integers (H, W) >= 1; got {input_size!r}")
    p = next(iter(model.parameters()), None)
    return torch.zeros(
        1,
        _first_conv_in_channels(model),
        *input_size,
        device=None if p is None else p.device,
        dtype=None if p is None else p.dtype,
    )


def _dry_run_shapes(
    model: nn.Module,
    targets: list[str],
    example_input: Tensor,
    forward_fn: Callable[[nn.Module, Tensor], Any] | None,
) -> dict[str, tuple[int, ...]]:
    """Output shape of every target in one eval, no-grad forward; training mode restored.

    Raises:
        ValueError: a target that was not called or whose output is not a (B, C, H, W) tensor.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name in targets:

        def hook(_m: nn.Module, _args: Any, out: Any, _name: str = name) -> None:
            shapes[_name] = tuple(out.shape) if isinstance(out, Tensor) else ()

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            (forward_fn or (lambda m, x: m(x)))(model, example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for name in targets:
        shape = shapes.get(name)
        if shape is None:
            raise ValueError(f"submodule {name!r} was not called in the dry forward pass")
        if len(shape) != 4:
            raise ValueError(
                f"SFIM needs a (B, C, H, W) tensor output; submodule {name!r} returned "
                f"{'a non-tensor' if not shape else f'shape {shape}'}"
            )
    return shapes
