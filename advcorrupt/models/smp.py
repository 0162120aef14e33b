"""Any segmentation-models-pytorch model by name: ``create_model("smp:<Arch>:<encoder>", ...)``.

``create_model("smp:Unet:resnet18", in_channels=3, classes=11)`` builds
``segmentation_models_pytorch.create_model("Unet", encoder_name="resnet18", encoder_weights=None,
in_channels=3, classes=11)``: any architecture of smp (``Unet``, ``FPN``, ``DeepLabV3Plus``,
``Segformer``...) with any of its encoders (``resnet18``, ``mobilenet_v2``, ``efficientnet-b0``,
``tu-<timm model>``...). Further keyword arguments go to smp (``encoder_depth``,
``decoder_channels``...). ``num_classes=`` is accepted as a synonym of smp's ``classes=`` (the
name the training loop passes to every model).

Encoder weights: ``encoder_weights=None`` (the default here, unlike smp's ``"imagenet"``) trains
from scratch and never touches the network. A name such as ``"imagenet"`` loads smp's pretrained
weights from the Hugging Face cache, downloading them only when the Hub can be reached; where it
cannot (no network, ``HF_HUB_OFFLINE=1``) and they are not cached, :class:`WeightsUnavailableError`
says so at once (no retry loop on a network timeout) and how to go on. A path to a local file
(``.pth`` / ``.pt`` state dict or ``.safetensors``) loads that file into ``model.encoder``.

These names are not in :func:`~advcorrupt.models.list_models` (which lists the registered ISTD
models): every ``smp:<Arch>:<encoder>`` combination works; :func:`parse_smp_name` checks one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import nn

__all__ = ["SMP_PREFIX", "WeightsUnavailableError", "create_smp_model", "is_smp_name", "parse_smp_name"]

#: The prefix of smp model names: ``smp:<Arch>:<encoder>``.
SMP_PREFIX = "smp:"
_EXAMPLE = "'smp:Unet:resnet18'"
_PROBE_TIMEOUT_S = 3.0


class WeightsUnavailableError(ValueError):
    """Pretrained encoder weights were asked for, but they are neither cached nor downloadable here."""


def is_smp_name(name: object) -> bool:
    """Whether ``name`` asks for a segmentation-models-pytorch model (starts with ``"smp:"``).

    Example:
        >>> is_smp_name("smp:Unet:resnet18"), is_smp_name("dnanet")
        (True, False)
    """
    return isinstance(name, str) and name.startswith(SMP_PREFIX)


def parse_smp_name(name: str) -> tuple[str, str]:
    """Split and check ``"smp:<Arch>:<encoder>"``; cheap (builds nothing).

    Returns:
        ``(architecture, encoder)`` as written.

    Raises:
        KeyError: a malformed name, an unknown architecture or an unknown encoder (the message
            lists the valid architectures, or says where the encoders are listed).

    Example:
        >>> parse_smp_name("smp:FPN:mobilenet_v2")
        ('FPN', 'mobilenet_v2')
        >>> parse_smp_name("smp:Unet:resnet1800")
        Traceback (most recent call last):
        ...
        KeyError: "unknown smp encoder 'resnet1800' in 'smp:Unet:resnet1800'; ..."
    """
    parts = name.split(":") if isinstance(name, str) else []
    if len(parts) != 3 or parts[0] != SMP_PREFIX[:-1] or not parts[1] or not parts[2]:
        raise KeyError(f"an smp model name is 'smp:<Arch>:<encoder>', e.g. {_EXAMPLE}; got {name!r}")
    import segmentation_models_pytorch as smp

    arch, encoder = parts[1], parts[2]
    archs = {cls.__name__: key for key, cls in smp.MODEL_ARCHITECTURES_MAPPING.items()}
    if arch.lower() not in smp.MODEL_ARCHITECTURES_MAPPING:
        raise KeyError(f"unknown smp architecture {arch!r} in {name!r}; available: {sorted(archs)}")
    if encoder.startswith("tu-"):
        import timm

        if not timm.is_model(encoder[3:]):
            raise KeyError(f"unknown timm model {encoder[3:]!r} for the smp encoder {encoder!r} in {name!r}; "
                           f"see timm.list_models()")
    elif encoder not in smp.encoders.get_encoder_names():
        raise KeyError(
            f"unknown smp encoder {encoder!r} in {name!r}; see segmentation_models_pytorch.encoders."
            f"get_encoder_names() (e.g. resnet18, mobilenet_v2, efficientnet-b0) or use 'tu-<timm model>'"
        )
    return arch, encoder


def create_smp_model(
    name: str,
    *,
    in_channels: int = 3,
    classes: int | None = None,
    num_classes: int | None = None,
    encoder_weights: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the smp model ``name`` (``"smp:<Arch>:<encoder>"``), from scratch by default.

    Args:
        name: ``"smp:<Arch>:<encoder>"``, e.g. ``"smp:Unet:resnet18"``.
        in_channels: image channels.
        classes: output channels K (smp's name); default 1.
        num_classes: the same as ``classes`` (give one, or both equal).
        encoder_weights: ``None`` (random initialisation), an smp weight name such as
            ``"imagenet"`` (from the Hugging Face cache, or downloaded where the Hub can be
            reached), or the path of a local encoder state dict (``.pth`` / ``.pt`` /
            ``.safetensors``), loaded into ``model.encoder``.
        **kwargs: passed to ``segmentation_models_pytorch.create_model``.

    Shape:
        - Input: (B, in_channels, H, W); Unet takes any size, most other architectures need H and
          W divisible by 32. Output: (B, K, H, W) logits.

    Raises:
        KeyError: a bad name (:func:`parse_smp_name`).
        ValueError: ``classes`` and ``num_classes`` disagree; a local weight file that does not fit.
        WeightsUnavailableError: pretrained weights asked for that are not cached and cannot be
            downloaded here (raised at once, before anything is trained).

    Example:
        >>> import torch
        >>> net = create_smp_model("smp:Unet:resnet18", in_channels=3, classes=11)
        >>> net.eval()(torch.rand(1, 3, 64, 96)).shape
        torch.Size([1, 11, 64, 96])
    """
    arch, encoder = parse_smp_name(name)
    if classes is not None and num_classes is not None and classes != num_classes:
        raise ValueError(f"classes and num_classes are the same thing (smp's name and ours); got classes={classes}, "
                         f"num_classes={num_classes}")
    k = classes if classes is not None else (num_classes if num_classes is not None else 1)
    import segmentation_models_pytorch as smp

    def build(weights: str | None) -> nn.Module:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=weights, in_channels=in_channels,
                                classes=k, **kwargs)

    if encoder_weights is None:
        return build(None)
    if not isinstance(encoder_weights, str):
        raise ValueError(  # noqa: TRY004  (a bad --model-kwargs value: the CLI reports ValueError as a user error)
            f"encoder_weights must be None, a weight name such as 'imagenet' or a file path; got {encoder_weights!r}"
        )
    if _looks_like_path(encoder_weights):
        return _with_local_weights(build(None), Path(encoder_weights), name)
    return _pretrained(build, encoder_weights, name)


# ------------------------------------------------------------------------------- pretrained weights
def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.endswith((".pth", ".pt", ".safetensors", ".bin")) or Path(weights).is_file()


def _with_local_weights(model: nn.Module, path: Path, name: str) -> nn.Module:
    """Load a local encoder state dict into ``model.encoder`` (strict: every key must fit)."""
    import torch

    if not path.is_file():
        raise FileNotFoundError(f"encoder_weights file {path} not found (model {name!r})")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.encoder.load_state_dict(state)  # type: ignore[union-attr,operator]
    except (RuntimeError, TypeError, AttributeError) as e:
        raise ValueError(f"encoder_weights file {path} does not fit the encoder of {name!r}: {e}") from None
    return model


def _hub_host() -> tuple[str, int]:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)


def _hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers within a few seconds (and offline mode is off)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    try:
        with socket.create_connection(_hub_host(), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Hugging Face Hub offline mode for the block: cached files only, no request, no retry loop."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _pretrained(build: Callable[[str | None], nn.Module], weights: str, name: str) -> nn.Module:
    """Build with pretrained weights: online where the Hub answers, else from the cache or a clear error."""
    if _hub_reachable():
        return build(weights)
    try:
        with _hub_offline():
            return build(weights)
    except KeyError:
        raise  # an unknown weight name: smp's message lists the valid ones
    except Exception as e:  # noqa: BLE001  (hub / timm / torch.hub errors all mean "not available here")
        raise WeightsUnavailableError(
            f"{name!r} asks for encoder_weights={weights!r}, but they are not in the local cache and cannot be "
            f"downloaded here (no connection to the Hugging Face Hub, or HF_HUB_OFFLINE is set; "
            f"{type(e).__name__}). Train from scratch with encoder_weights=None (the default: leave it out of "
            f"--model-kwargs), or load local weights: encoder_weights='/path/to/encoder.pth' (a state dict of "
            f"model.encoder, .pth / .pt / .safetensors), or copy the Hugging Face cache (~/.cache/huggingface) "
            f"from a machine that downloaded them"
        ) from None
