"""Infrared small-target detection metrics: IoU, nIoU, Pd, Fa (BasicIRSTD semantics) and RCE.

Definitions (see ``docs/metrics.md`` for the formulas and the differences from reference
toolkits):

* binarisation: a pixel is predicted positive when its *probability* is strictly greater
  than ``threshold`` (0.5); pass ``from_logits=True`` for raw network outputs (sigmoid first,
  which is the same as ``logit > 0``);
* **IoU** accumulated over the dataset: ``sum_i |P_i & G_i| / sum_i |P_i | G_i|``;
* **nIoU**: the mean over images of ``|P_i & G_i| / |P_i | G_i|``; an image whose mask and
  prediction are both empty scores ``empty_iou`` (1.0 by default: a perfect answer);
* **Pd / Fa** on 8-connected components at native size: a ground-truth target is detected
  when an as-yet unmatched predicted component has its centroid within ``distance`` (3 px,
  strictly less by default, as in BasicIRSTD) of the target's centroid; pairs are matched
  one-to-one, greedily, closest pair first. ``Pd = matched targets / all targets``;
  ``Fa = pixels of unmatched predicted components / all pixels``, reported in units of 1e-6;
* **RCE** (BALISTD, AAAI 2024, Eq. 9): relative corruption error
  ``RCE = (IoU_clean - IoU_corrupted) / IoU_clean``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
import torch

__all__ = ["ISTDMetrics", "iou", "niou", "pd_fa", "rce"]

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity

Maps = torch.Tensor | Sequence[torch.Tensor]


def _as_list(x: Maps, name: str) -> list[torch.Tensor]:
    """Split (B, 1, H, W) / (1, H, W) / (H, W) tensors or a list of maps into (H, W) maps."""
    if isinstance(x, torch.Tensor):
        if x.ndim == 4 and x.shape[1] == 1:
            return list(x[:, 0])
        if x.ndim == 3 and x.shape[0] == 1:
            return [x[0]]
        if x.ndim == 2:
            return [x]
        raise ValueError(f"{name} must have shape (B, 1, H, W), (1, H, W) or (H, W); got {tuple(x.shape)}")
    if isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        out: list[torch.Tensor] = []
        for i, t in enumerate(x):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}[{i}] must be a tensor; got {type(t).__name__}")
            out.extend(_as_list(t, f"{name}[{i}]"))
        return out
    raise TypeError(f"{name} must be a tensor or a list of tensors; got {type(x).__name__}")


def _binarise(
    probs: Maps, masks: Maps, threshold: float, from_logits: bool
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor | None, list[tuple[int, int]] | None]:
    """Boolean (N, H, W) predictions and masks (a list holding one batch), a device flag
    'some probability was outside [0, 1]', and the true (H, W) of each map when a list of
    differently sized maps was zero-padded into the batch (else ``None``)."""
    sizes: list[tuple[int, int]] | None = None
    if isinstance(probs, torch.Tensor) and isinstance(masks, torch.Tensor):
        p_groups, m_groups = [_as_batch(probs, "probs")], [_as_batch(masks, "masks")]
    else:
        p_list, m_list = _as_list(probs, "probs"), _as_list(masks, "masks")
        if len(p_list) != len(m_list):
            raise ValueError(f"probs and masks must hold the same number of maps; got {len(p_list)} and {len(m_list)}")
        for i, (p, m) in enumerate(zip(p_list, m_list)):
            if p.shape != m.shape:
                raise ValueError(f"probs and masks must have the same size (native resolution); map {i}: {tuple(p.shape)} vs {tuple(m.shape)}")
        # Zero-pad to one (N, Hmax, Wmax) batch: padding is background in both maps, so it adds
        # nothing to intersections, unions or components; the true sizes are kept apart.
        hmax = max((p.shape[-2] for p in p_list), default=0)
        wmax = max((p.shape[-1] for p in p_list), default=0)
        fill = -math.inf if from_logits else 0.0  # below any threshold in [0, 1)
        p_groups = [torch.stack([_pad(p, hmax, wmax, fill) for p in p_list])] if p_list else []
        m_groups = [torch.stack([_pad(m, hmax, wmax, 0) for m in m_list])] if m_list else []
        sizes = [tuple(p.shape[-2:]) for p in p_list]
    preds, gts, bad = [], [], []
    for p, m in zip(p_groups, m_groups):
        if p.shape != m.shape:
            raise ValueError(f"probs and masks must have the same size (native resolution); got {tuple(p.shape)} vs {tuple(m.shape)}")
        if not p.is_floating_point():
            raise TypeError(f"probs must be floating point (probabilities in [0, 1]); got {p.dtype}")
        p = p.detach()
        if from_logits:
            bad.append(p.isnan().any())
            preds.append(p > _logit(threshold))
        else:
            bad.append(((p < 0) | (p > 1) | p.isnan()).any())
            preds.append(p > threshold)
        gts.append(m.detach() > 0.5 if m.dtype != torch.bool else m.detach())
    flag = torch.stack(bad).any() if bad else None
    return preds, gts, flag, sizes


def _pad(x: torch.Tensor, h: int, w: int, value: float) -> torch.Tensor:
    """Pad an (H, W) map at the bottom/right to (h, w) with ``value``."""
    if x.shape == (h, w):
        return x
    out = x.new_full((h, w), value)
    out[: x.shape[0], : x.shape[1]] = x
    return out


def _logit(t: float) -> float:
    """The logit threshold equivalent to ``sigmoid(x) > t``."""
    if t <= 0.0:
        return -math.inf
    if t >= 1.0:
        return math.inf
    return math.log(t / (1.0 - t))


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    if x.ndim == 3 and x.shape[0] == 1:
        return x
    if x.ndim == 2:
        return x[None]
    raise ValueError(f"{name} must have shape (B, 1, H, W), (1, H, W) or (H, W); got {tuple(x.shape)}")


def _components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (N, 2) as (row, col) and areas (N,) of the 8-connected components.

    Labelling runs on the bounding box of the foreground only (ISTD maps are sparse).
    """
    from scipy import ndimage  # lazy: keeps `import advcorrupt.metrics` light

    rows_any = np.flatnonzero(binary.any(axis=1))
    if len(rows_any) == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    cols_any = np.flatnonzero(binary.any(axis=0))
    r0, c0 = int(rows_any[0]), int(cols_any[0])
    sub = binary[r0 : int(rows_any[-1]) + 1, c0 : int(cols_any[-1]) + 1]
    labels, n = ndimage.label(sub, structure=_EIGHT)
    rows, cols = np.nonzero(sub)
    lab = labels[rows, cols]
    area = np.bincount(lab, minlength=n + 1)[1:]
    cy = np.bincount(lab, weights=rows, minlength=n + 1)[1:] + r0 * area
    cx = np.bincount(lab, weights=cols, minlength=n + 1)[1:] + c0 * area
    return np.stack([cy / area, cx / area], axis=1), area


def _match(gt: np.ndarray, pred: np.ndarray, distance: float, inclusive: bool) -> np.ndarray:
    """One-to-one greedy matching, closest pair first; returns a bool 'matched' flag per prediction."""
    matched_pred = np.zeros(len(pred), dtype=bool)
    if len(gt) == 0 or len(pred) == 0:
        return matched_pred
    if len(gt) * len(pred) <= 20_000:
        d = np.sqrt(((gt[:, None, :] - pred[None, :, :]) ** 2).sum(-1))
        ok = d <= distance if inclusive else d < distance
        gi, pj = np.nonzero(ok)
        dist = d[gi, pj]
    else:  # many components (e.g. noisy maps): only look at pairs within reach
        from scipy.spatial import cKDTree

        radius = distance if inclusive else np.nextafter(distance, 0)
        sdm = cKDTree(gt).sparse_distance_matrix(cKDTree(pred), radius, output_type="ndarray")
        gi, pj, dist = sdm["i"].astype(np.int64), sdm["j"].astype(np.int64), sdm["v"]
    if len(gi) == 0:
        return matched_pred
    order = np.lexsort((pj, gi, dist))
    if len(np.unique(gi)) == len(gi) and len(np.unique(pj)) == len(pj):
        matched_pred[pj] = True  # no competition: every candidate pair is a match
        return matched_pred
    matched_gt = np.zeros(len(gt), dtype=bool)
    for k in order.tolist():
        a, b = gi[k], pj[k]
        if not matched_gt[a] and not matched_pred[b]:
            matched_gt[a] = matched_pred[b] = True
    return matched_pred


def _pd_fa_counts(pred: np.ndarray, gt: np.ndarray, distance: float, inclusive: bool) -> tuple[int, int, int]:
    """(detected targets, targets, false-alarm pixels) for one (H, W) pair of bool maps."""
    gt_c, _ = _components(gt)
    pred_c, pred_area = _components(pred)
    matched = _match(gt_c, pred_c, distance, inclusive)
    return int(matched.sum()), len(gt_c), int(pred_area[~matched].sum())


class ISTDMetrics:
    """Accumulates IoU, nIoU, Pd and Fa over a dataset, as the ISTD field reports them.

    IoU/nIoU counts stay on the inputs' device (no host sync in :meth:`update` unless Pd/Fa
    are on); connected components for Pd/Fa run on the CPU (scipy.ndimage), one transfer of
    the binary maps per :meth:`update`.

    Args:
        threshold: probability threshold; a pixel is positive when ``prob > threshold``.
        distance: centroid distance (pixels) for a prediction to detect a target.
        inclusive: count a centroid exactly ``distance`` away as a detection (``<=``);
            the default ``False`` uses ``<``, as BasicIRSTD does.
        from_logits: apply a sigmoid to the inputs first.
        pd_fa: compute Pd and Fa (turn off to keep :meth:`update` free of host syncs).
        empty_iou: nIoU score of an image with empty mask and empty prediction; ``None``
            leaves such images out of the nIoU average.

    Shape:
        - probs: (B, 1, H, W) or a list of (1, H, W) / (H, W) maps of different sizes.
        - masks: same layout as ``probs``, values in {0, 1}.

    Example:
        >>> m = ISTDMetrics()
        >>> probs = torch.zeros(1, 1, 8, 8); probs[0, 0, 2:4, 2:4] = 0.9
        >>> masks = torch.zeros(1, 1, 8, 8); masks[0, 0, 2:4, 2:5] = 1
        >>> m.update(probs, masks)
        >>> {k: round(v, 4) for k, v in m.compute().items()}
        {'iou': 0.6667, 'niou': 0.6667, 'pd': 1.0, 'fa': 0.0}
    """

    def __init__(
        self,
        threshold: float = 0.5,
        distance: float = 3.0,
        *,
        inclusive: bool = False,
        from_logits: bool = False,
        pd_fa: bool = True,
        empty_iou: float | None = 1.0,
    ) -> None:
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise TypeError(f"threshold must be a float; got {type(threshold).__name__}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1); got {threshold!r}")
        if not (isinstance(distance, (int, float)) and distance > 0):
            raise ValueError(f"distance must be a positive number; got {distance!r}")
        self.threshold = float(threshold)
        self.distance = float(distance)
        self.inclusive = bool(inclusive)
        self.from_logits = bool(from_logits)
        self.pd_fa = bool(pd_fa)
        self.empty_iou = empty_iou
        self.reset()

    def reset(self) -> None:
        """Clear every accumulator."""
        self._inter: torch.Tensor | int = 0
        self._union: torch.Tensor | int = 0
        self._niou_sum: torch.Tensor | float = 0.0
        self._niou_count: torch.Tensor | int = 0
        self._bad: torch.Tensor | bool = False
        self.images = 0
        self.pixels = 0
        self.targets = 0
        self.detected = 0
        self.false_alarm_pixels = 0

    def update(self, probs: Maps, masks: Maps) -> None:
        """Add a batch of probability maps and their masks (both at native image size)."""
        preds, gts, bad, sizes = _binarise(probs, masks, self.threshold, self.from_logits)
        if bad is not None:
            self._bad = self._bad | bad
        for p, g in zip(preds, gts):
            n = p.shape[0]
            if n == 0:
                continue
            inter = (p & g).sum((1, 2))
            union = (p | g).sum((1, 2))
            self._inter = self._inter + inter.sum()
            self._union = self._union + union.sum()
            per_image = inter.float() / union.clamp(min=1).float()
            if self.empty_iou is None:
                keep = union > 0
                self._niou_sum = self._niou_sum + torch.where(keep, per_image, 0.0).sum()
                self._niou_count = self._niou_count + keep.sum()
            else:
                per_image = torch.where(union > 0, per_image, float(self.empty_iou))
                self._niou_sum = self._niou_sum + per_image.sum()
                self._niou_count = self._niou_count + n
            hw = sizes if sizes is not None else [tuple(p.shape[-2:])] * n
            self.images += n
            self.pixels += sum(h * w for h, w in hw)
            if self.pd_fa:
                p_np, g_np = p.cpu().numpy(), g.cpu().numpy()  # the one host transfer
                for i, (h, w) in enumerate(hw):
                    d, t, fa = _pd_fa_counts(p_np[i, :h, :w], g_np[i, :h, :w], self.distance, self.inclusive)
                    self.detected += d
                    self.targets += t
                    self.false_alarm_pixels += fa

    def compute(self) -> dict[str, float]:
        """Return ``{"iou", "niou", "pd", "fa"}``; ``fa`` is in units of 1e-6 (false-alarm
        pixels per million pixels). A ratio with a zero denominator is NaN; Pd/Fa are NaN
        when ``pd_fa=False``.

        Raises:
            ValueError: probabilities outside [0, 1] were passed (logits?) without
                ``from_logits=True``, or NaN probabilities / logits.
        """
        if bool(self._bad):
            raise ValueError(
                "probs must be probabilities in [0, 1] (logits with from_logits=True), without NaN; got NaN or "
                "values outside [0, 1] (logits? pass from_logits=True)"
            )
        inter, union = float(self._inter), float(self._union)
        count = float(self._niou_count)
        nan = math.nan
        return {
            "iou": inter / union if union > 0 else nan,
            "niou": float(self._niou_sum) / count if count > 0 else nan,
            "pd": self.detected / self.targets if self.pd_fa and self.targets > 0 else nan,
            "fa": self.false_alarm_pixels / self.pixels * 1e6 if self.pd_fa and self.pixels > 0 else nan,
        }

    def __repr__(self) -> str:
        return f"ISTDMetrics(threshold={self.threshold}, distance={self.distance}, inclusive={self.inclusive}, images={self.images})"


def iou(probs: Maps, masks: Maps, *, threshold: float = 0.5, from_logits: bool = False) -> float:
    """Dataset IoU: total intersection / total union over all maps.

    Args:
        probs: probability maps, (B, 1, H, W) or a list of (1, H, W) maps.
        masks: binary masks in the same layout.
        threshold: a pixel is positive when ``prob > threshold``.
        from_logits: apply a sigmoid first.

    Returns:
        The IoU (NaN when both are empty everywhere).

    Example:
        >>> p = torch.tensor([[[[0.9, 0.9, 0.1]]]]); g = torch.tensor([[[[1.0, 0.0, 0.0]]]])
        >>> iou(p, g)
        0.5
    """
    m = ISTDMetrics(threshold, from_logits=from_logits, pd_fa=False)
    m.update(probs, masks)
    return m.compute()["iou"]


def niou(probs: Maps, masks: Maps, *, threshold: float = 0.5, from_logits: bool = False, empty_iou: float | None = 1.0) -> float:
    """nIoU: per-image IoU averaged over images.

    Args:
        probs: probability maps, (B, 1, H, W) or a list of (1, H, W) maps.
        masks: binary masks in the same layout.
        threshold: a pixel is positive when ``prob > threshold``.
        from_logits: apply a sigmoid first.
        empty_iou: score of an image with empty mask and empty prediction (``None``: skip it).

    Returns:
        The nIoU.

    Example:
        >>> p = torch.tensor([[[[0.9, 0.1]]], [[[0.9, 0.9]]]]); g = torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]])
        >>> niou(p, g)
        0.75
    """
    m = ISTDMetrics(threshold, from_logits=from_logits, pd_fa=False, empty_iou=empty_iou)
    m.update(probs, masks)
    return m.compute()["niou"]


def pd_fa(
    probs: Maps,
    masks: Maps,
    *,
    threshold: float = 0.5,
    distance: float = 3.0,
    inclusive: bool = False,
    from_logits: bool = False,
) -> tuple[float, float]:
    """Probability of detection and false-alarm rate (x1e-6) on 8-connected components.

    Args:
        probs: probability maps, (B, 1, H, W) or a list of (1, H, W) maps.
        masks: binary masks in the same layout.
        threshold: a pixel is positive when ``prob > threshold``.
        distance: centroid distance for a detection (``<`` unless ``inclusive``).
        inclusive: use ``<=`` for the distance test.
        from_logits: apply a sigmoid first.

    Returns:
        ``(pd, fa)`` with ``fa`` in units of 1e-6.

    Example:
        >>> p = torch.zeros(1, 1, 10, 10); p[0, 0, 1, 1] = p[0, 0, 8, 8] = 0.9
        >>> g = torch.zeros(1, 1, 10, 10); g[0, 0, 1, 2] = 1
        >>> pd_fa(p, g)
        (1.0, 10000.0)
    """
    m = ISTDMetrics(threshold, distance, inclusive=inclusive, from_logits=from_logits)
    m.update(probs, masks)
    out = m.compute()
    return out["pd"], out["fa"]


@overload
def rce(iou_clean: float, iou_corrupted: float) -> float: ...
@overload
def rce(iou_clean: torch.Tensor, iou_corrupted: torch.Tensor | float) -> torch.Tensor: ...
@overload
def rce(iou_clean: float, iou_corrupted: torch.Tensor) -> torch.Tensor: ...


def rce(iou_clean: float | torch.Tensor, iou_corrupted: float | torch.Tensor) -> float | torch.Tensor:
    """Relative corruption error, BALISTD (AAAI 2024) Eq. 9.

    ``RCE = (IoU_clean - IoU_corrupted) / IoU_clean``: the fraction of the clean IoU lost
    under a corruption (0 = unaffected, 1 = everything lost, negative = the corruption
    helped). Lower is more robust. Works on floats or broadcastable tensors.

    Args:
        iou_clean: IoU on clean images (> 0).
        iou_corrupted: IoU on corrupted images.

    Returns:
        The RCE, a float for float inputs, else a tensor.

    Raises:
        ValueError: ``iou_clean`` is not > 0 (float inputs).

    Example:
        >>> rce(0.8, 0.4)
        0.5
    """
    if isinstance(iou_clean, torch.Tensor) or isinstance(iou_corrupted, torch.Tensor):
        clean = torch.as_tensor(iou_clean)
        return (clean - iou_corrupted) / clean
    if not iou_clean > 0:
        raise ValueError(f"iou_clean must be > 0; got {iou_clean!r}")
    return (float(iou_clean) - float(iou_corrupted)) / float(iou_clean)
