"""The (corruption, severity) action grid of BALISTD's policy (paper Sec. 3.2).

An action is a flat index ``a = k * S + j`` over ``K`` corruptions and ``S`` severity levels;
``ActionSpace.apply`` corrupts a whole batch where every sample has its own action, either running
each corruption once on its subset of the batch (``grouping="subset"``: one small host-device copy
to size the subsets), running each corruption on the whole batch and selecting per sample with
``torch.where`` (``grouping="masked"``: no host-device sync, ``K`` times the corruption compute), or
like "masked" but with the built-in noises and blurs each applied by one fixed-shape kernel
(``grouping="fused"``: no sync, fewer launches, capturable in a CUDA graph).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor

from ..corruptions import _builtins, _registry
from ..corruptions._common import _values_validated
from ..corruptions.functional import _host_reads_ok

__all__ = ["ActionSpace", "GROUPINGS"]

GROUPINGS: tuple[str, ...] = ("auto", "subset", "masked", "fused")


class ActionSpace:
    """The grid of ``K`` corruptions x ``S`` severity levels the policy chooses from.

    Args:
        corruptions: names from :func:`advcorrupt.corruptions.available`; ``None`` takes all
            registered corruptions at construction time.
        severities: the 1-based levels to use (the paper uses three); each must exist in every
            chosen corruption's level table.
        grouping: how :meth:`apply` batches samples with different corruptions. ``"subset"`` runs
            each corruption once on the samples that drew it (needs the ``K`` group sizes on the
            host: one small device-to-host copy per call); ``"masked"`` runs every corruption on
            the whole batch and keeps each sample's own result with ``torch.where`` (no sync, ``K``
            times the corruption compute); ``"fused"`` is ``"masked"`` with the built-in noises
            (one uniform draw) and blurs (one FFT correlation) each applied by one kernel whose
            shapes do not depend on the actions; ``"auto"`` (default) is ``"subset"`` on CPU and
            ``"fused"`` on other devices, where a sync would stall the stream.

    Example:
        >>> import torch
        >>> from advcorrupt import ActionSpace
        >>> space = ActionSpace(["gaussian_noise", "contrast"], severities=(1, 3))
        >>> space.size
        4
        >>> space.decode(torch.tensor([0, 3]))
        (tensor([0, 1]), tensor([1, 3]))
        >>> space.apply(torch.rand(2, 1, 16, 16), torch.tensor([0, 3])).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = (1, 2, 3),
        *,
        grouping: str = "auto",
    ) -> None:
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {list(GROUPINGS)}; got {grouping!r}")
        self.grouping = grouping
        names = list(_registry.available() if corruptions is None else corruptions)
        if isinstance(corruptions, str):
            raise TypeError(f"corruptions must be a sequence of names; got the str {corruptions!r}")
        if not names:
            raise ValueError("corruptions must name at least one corruption; got an empty list")
        if len(set(names)) != len(names):
            raise ValueError(f"corruptions must not repeat a name; got {names}")
        self.specs = tuple(_registry.get(n) for n in names)  # KeyError lists valid names
        sev = [int(s) for s in severities]
        if not sev or len(set(sev)) != len(sev):
            raise ValueError(f"severities must be distinct levels, at least one; got {list(severities)}")
        for spec in self.specs:
            bad = [s for s in sev if not 1 <= s <= spec.num_levels]
            if bad:
                raise ValueError(
                    f"severities must be in [1, {spec.num_levels}] for {spec.name!r}; got {bad}"
                )
        self.corruptions: tuple[str, ...] = tuple(names)
        self.severities: tuple[int, ...] = tuple(sev)
        self._sev_table: dict[torch.device, Tensor] = {}
        self._member_tables: dict[tuple[int, torch.device], Tensor] = {}
        self._families = self._plan_families()
        self._builtin = tuple(_builtins.is_builtin_spec(spec) for spec in self.specs)

    @property
    def num_corruptions(self) -> int:
        return len(self.corruptions)

    @property
    def num_severities(self) -> int:
        return len(self.severities)

    @property
    def size(self) -> int:
        """Number of actions, ``K * S``."""
        return self.num_corruptions * self.num_severities

    def labels(self) -> list[str]:
        """Human-readable action names, ``"<corruption>@<severity>"``, in action order."""
        return [f"{c}@{s}" for c in self.corruptions for s in self.severities]

    def actions_of(self, selector: str) -> list[int]:
        """Flat action indices of a corruption name or a category (``"noise"``, ``"blur"``, ...)."""
        if selector in self.corruptions:
            ks = [self.corruptions.index(selector)]
        elif selector in _registry.CATEGORIES:
            ks = [k for k, s in enumerate(self.specs) if s.category == selector]
        else:
            raise KeyError(
                f"unknown corruption or category {selector!r}; corruptions in this action space: "
                f"{', '.join(self.corruptions)}; categories: {', '.join(_registry.CATEGORIES)}"
            )
        if not ks:
            raise ValueError(f"no corruption of category {selector!r} in this action space {self.corruptions}")
        s = self.num_severities
        return [k * s + j for k in ks for j in range(s)]

    def _check_actions(self, actions: object, batch: int | None = None) -> Tensor:
        if not isinstance(actions, Tensor) or actions.dtype.is_floating_point or actions.dtype == torch.bool:
            what = actions.dtype if isinstance(actions, Tensor) else type(actions).__name__
            raise TypeError(f"actions must be a (B,) integer tensor; got {what}")
        if actions.ndim != 1 or (batch is not None and actions.shape[0] != batch):
            want = "(B,)" if batch is None else f"(B,) = ({batch},)"
            raise ValueError(f"actions must have shape {want}; got {tuple(actions.shape)}")
        if _host_reads_ok(actions.device) and actions.numel():
            lo, hi = int(actions.min()), int(actions.max())
            if lo < 0 or hi >= self.size:
                raise ValueError(f"actions must be in [0, {self.size - 1}]; got range [{lo}, {hi}]")
        return actions.long()

    def decode(self, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Split flat actions into (corruption index, 1-based severity), both (B,) long tensors."""
        actions = self._check_actions(actions)
        table = self._sev_table.get(actions.device)
        if table is None:
            table = self._sev_table[actions.device] = torch.tensor(
                self.severities, dtype=torch.long, device=actions.device
            )
        return actions // self.num_severities, table[actions % self.num_severities]

    def encode(self, corruption: Tensor, severity: Tensor) -> Tensor:
        """Inverse of :meth:`decode` (severity given as a 1-based level in ``self.severities``)."""
        lookup = torch.full((max(self.severities) + 1,), -1, dtype=torch.long, device=severity.device)
        lookup[list(self.severities)] = torch.arange(self.num_severities, device=severity.device)
        return corruption.long() * self.num_severities + lookup[severity.long()]

    def apply(self, x: Tensor, actions: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Corrupt each sample of ``x`` with its own action.

        With ``grouping="subset"`` samples are grouped by corruption with one ``argsort`` and each
        corruption runs once on its subset (with per-sample severities); sizing the subsets needs
        the ``K`` group counts on the host: one small device-to-host copy per call. With
        ``grouping="masked"`` every corruption runs on the whole batch and each sample keeps its
        own corruption's output (``torch.where``): no host-device sync, ``K`` x the compute. The
        two modes give the same corruptions; random corruptions draw different random numbers.

        Args:
            x: images, float in [0, 1].
            actions: flat action indices in ``[0, size)``.
            generator: optional generator on ``x``'s device for exact replay.

        Shape:
            x: (B, C, H, W), C in {1, 3}; actions: (B,). Output: (B, C, H, W).

        Returns:
            The corrupted batch (x's dtype and device, values in [0, 1]).
        """
        _registry.validate_images(x)
        actions = self._check_actions(actions, x.shape[0])
        if x.shape[0] == 0:
            return x.clone()
        kind, severity = self.decode(actions.to(x.device))
        grouping = self._resolve_grouping(x.device)
        if grouping == "fused":
            return self._apply_fused(x, kind, severity, generator)
        if grouping == "masked":
            return self._apply_masked(x, kind, severity, generator, range(self.num_corruptions))
        return self._apply_subsets(x, kind, severity, generator)

    def _apply_subsets(self, x: Tensor, kind: Tensor, severity: Tensor, generator: torch.Generator | None) -> Tensor:
        """Each corruption once on the samples that drew it ("subset"; ``x`` already validated).

        Built-in kernels skip the value check of their (already checked) subset, and their
        output, already clamped and in x's dtype, is copied without another clamp.
        """
        order = torch.argsort(kind, stable=True)
        counts = torch.bincount(kind, minlength=self.num_corruptions).tolist()
        out = torch.empty_like(x)
        start = 0
        for spec, builtin, n in zip(self.specs, self._builtin, counts):
            if n:
                idx = order[start : start + n]
                with _values_validated() if builtin else contextlib.nullcontext():
                    part = spec.fn(x.index_select(0, idx), spec.params_for(severity.index_select(0, idx)), generator)
                if not builtin or part.dtype != x.dtype:
                    part = part.to(x.dtype).clamp_(0.0, 1.0)
                out.index_copy_(0, idx, part)
                start += n
        return out

    def _apply_masked(
        self,
        x: Tensor,
        kind: Tensor,
        severity: Tensor,
        generator: torch.Generator | None,
        ks: Sequence[int],
        out: Tensor | None = None,
    ) -> Tensor:
        """Corruptions ``ks`` each on the whole batch; each sample keeps its own (no sync)."""
        out = x.clone() if out is None else out
        for k in ks:
            spec = self.specs[k]
            part = spec.fn(x, spec.params_for(severity), generator).to(x.dtype).clamp_(0.0, 1.0)
            out = torch.where((kind == k).view(-1, 1, 1, 1), part, out)
        return out

    def _apply_fused(self, x: Tensor, kind: Tensor, severity: Tensor, generator: torch.Generator | None) -> Tensor:
        """As "masked", but each family of built-ins (noises, blurs) runs as one fixed-shape kernel."""
        out = x
        for f, (family, ks) in enumerate(self._families):
            table = self._member_tables.get((f, x.device))
            if table is None:
                idx = [-1] * self.num_corruptions
                for k in ks:
                    idx[k] = family.members.index(self.corruptions[k])
                table = self._member_tables[(f, x.device)] = torch.tensor(idx, dtype=torch.long, device=x.device)
            which = table[kind]
            present = [self.corruptions[k] for k in ks]
            part = family.fn(x, which, severity, present, self.severities, generator)
            out = torch.where((which >= 0).view(-1, 1, 1, 1), part, out)
        rest = [k for k in range(self.num_corruptions) if all(k not in ks for _, ks in self._families)]
        return self._apply_masked(x, kind, severity, generator, rest, out=out) if rest else out

    def _plan_families(self) -> list[tuple[_builtins.Family, list[int]]]:
        """Families with enough built-in members in this space, and those members' indices."""
        plan = []
        for family in _builtins.FAMILIES:
            ks = [
                k for k, spec in enumerate(self.specs)
                if spec.name in family.members and _builtins.is_builtin_spec(spec)
            ]
            if len(ks) >= family.min_members:
                plan.append((family, ks))
        return plan

    def _resolve_grouping(self, device: torch.device) -> str:
        if self.grouping == "auto":
            return "subset" if _host_reads_ok(device) else "fused"
        return self.grouping

    def __repr__(self) -> str:
        return (
            f"ActionSpace(corruptions={list(self.corruptions)}, severities={self.severities}, "
            f"grouping={self.grouping!r})"
        )

    def state_dict(self) -> dict[str, list[str] | list[int]]:
        """What identifies this space, for checkpoints (a mismatch on load is an error)."""
        return {"corruptions": list(self.corruptions), "severities": list(self.severities)}
