"""CUDA-graph replay of the adversary's per-step work, with an eager fallback.

On a GPU the adversary's arithmetic (a 64x64 policy network, ten corruption kernels on one batch)
costs microseconds; launching its few hundred small kernels from Python costs milliseconds. A CUDA
graph records those launches once and replays them with one call. :class:`GraphedCall` wraps a
function of tensors: per input signature (shapes, dtypes, strides) it warms the function up on a
side stream, captures it into a graph with static input buffers and the random generators
registered with the graph (the warm-up's draws are rewound, so a replay draws what an eager call
would have drawn), and afterwards copies the inputs in, replays, and returns a copy of the static
outputs. Anything that goes wrong (an op that cannot be captured, a host-device sync, an
out-of-memory during capture) turns the wrapper into a plain call for good, with one warning.

It is used only on CUDA and only without autograd (the corruption of a batch); everywhere else the
function runs as is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["GraphedCall"]

_Key = tuple[tuple[tuple[int, ...], torch.dtype, torch.device, tuple[int, ...]], ...]


class GraphedCall:
    """Run ``fn(*tensors) -> Tensor`` as a replayed CUDA graph, one graph per input signature.

    Args:
        fn: a function of tensors only, returning one tensor; it must not read device values on
            the host (a sync fails the capture) and must not depend on Python state that changes
            between calls (a graph replays exactly what was recorded).
        name: what the one warning calls it.
        generators: the ``torch.Generator`` objects (CUDA) ``fn`` draws from besides the default
            one; they are registered with every graph so each replay draws fresh numbers.
        enabled: ``False`` always calls ``fn`` directly.
        warmup: eager calls on a side stream before the capture (lazy initialisation, cuDNN/cuFFT
            plans, cached constants).
        max_graphs: signatures kept; a new signature beyond it runs eagerly.

    Example:
        >>> import torch
        >>> double = GraphedCall(lambda x: x * 2, name="double")
        >>> double(torch.ones(2)).tolist()  # on CPU: a plain call
        [2.0, 2.0]
    """

    def __init__(
        self,
        fn: Callable[..., Tensor],
        *,
        name: str,
        generators: Sequence[torch.Generator | None] = (),
        enabled: bool = True,
        warmup: int = 2,
        max_graphs: int = 4,
    ) -> None:
        self.fn = fn
        self.name = name
        self.generators = [g for g in generators if g is not None]
        self.enabled = bool(enabled)
        self.warmup = int(warmup)
        self.max_graphs = int(max_graphs)
        self._graphs: dict[_Key, tuple[torch.cuda.CUDAGraph, list[Tensor], Tensor]] = {}
        self.failure: str | None = None  # why capture was given up, if it was

    @property
    def num_graphs(self) -> int:
        """Graphs captured so far."""
        return len(self._graphs)

    def __call__(self, *args: Tensor) -> Tensor:
        if not self._eligible(args):
            return self.fn(*args)
        key: _Key = tuple((tuple(a.shape), a.dtype, a.device, tuple(a.stride())) for a in args)
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self.max_graphs:
                return self.fn(*args)
            entry = self._capture(key, args)
            if entry is None:
                return self.fn(*args)
        graph, static_in, static_out = entry
        try:
            for s, a in zip(static_in, args):
                s.copy_(a)
            graph.replay()
        except RuntimeError as e:  # pragma: no cover - depends on the CUDA runtime
            self._give_up(f"replay failed: {e}")
            return self.fn(*args)
        return static_out.clone()

    def _eligible(self, args: tuple[Tensor, ...]) -> bool:
        return (
            self.enabled
            and self.failure is None
            and bool(args)
            and all(isinstance(a, Tensor) and a.device.type == "cuda" for a in args)
            and not (torch.is_grad_enabled() and any(a.requires_grad for a in args))
            and not torch.cuda.is_current_stream_capturing()
        )

    def _capture(self, key: _Key, args: tuple[Tensor, ...]) -> tuple[torch.cuda.CUDAGraph, list[Tensor], Tensor] | None:
        static_in = [a.detach().clone() for a in args]
        try:
            device = args[0].device
            # Warm-up draws must not shift the random stream: the first replay then draws exactly
            # what an eager call would have drawn here.
            saved = [g.get_state() for g in self.generators]
            saved_default = torch.cuda.get_rng_state(device)
            side = torch.cuda.Stream(device=device)
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(self.warmup):
                    self.fn(*static_in)
            torch.cuda.current_stream().wait_stream(side)
            for g, st in zip(self.generators, saved):
                g.set_state(st)
            torch.cuda.set_rng_state(saved_default, device)
            graph = torch.cuda.CUDAGraph()
            for g in self.generators:
                graph.register_generator_state(g)
            # thread_local: a DataLoader's pin-memory thread may allocate pinned memory meanwhile.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"), torch.no_grad():
                static_out = self.fn(*static_in)
            if not isinstance(static_out, Tensor):
                raise TypeError(f"{self.name} must return one tensor; got {type(static_out).__name__}")
        except Exception as e:  # noqa: BLE001 - any capture failure falls back to eager
            self._give_up(f"{type(e).__name__}: {e}")
            return None
        entry = (graph, static_in, static_out)
        self._graphs[key] = entry
        return entry

    def _give_up(self, why: str) -> None:
        self.failure = why
        self._graphs.clear()
        warnings.warn(
            f"CUDA graph capture of {self.name} failed ({why}); running it eagerly from now on",
            RuntimeWarning,
            stacklevel=4,
        )

    def state(self) -> dict[str, Any]:
        """What happened so far: enabled, graphs captured, failure (for logs and tests)."""
        return {"enabled": self.enabled, "num_graphs": self.num_graphs, "failure": self.failure}
