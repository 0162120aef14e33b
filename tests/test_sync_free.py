"""The accelerator code paths never read a device value on the host (issue 10).

A host read (``.item()``, ``.tolist()``, ``nonzero``, boolean indexing, data-dependent output
sizes) stalls a CUDA stream until the GPU catches up, and it breaks CUDA-graph capture. CI has
no GPU, so these tests run the accelerator paths on CPU (the internal ``_emulate_accelerator``
flag) under a ``TorchDispatchMode`` that fails on every op that needs such a read. The CUDA tests
at the end check the same under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from advcorrupt._graphs import GraphedCall
from advcorrupt.corruptions.functional import _emulate_accelerator
from advcorrupt.policy import PolicyNetwork, Reinforce
from advcorrupt.policy.action_space import ActionSpace

aten = torch.ops.aten

# Ops whose result (or output size) needs a device value on the host.
_HOST_READS = {
    aten._local_scalar_dense, aten.nonzero, aten.nonzero_static, aten.masked_select, aten.equal,
    aten.is_nonzero, aten.bincount, aten.repeat_interleave, aten._unique2, aten.unique_dim,
    aten.unique_consecutive, aten.masked_scatter,
}  # fmt: skip


class NoHostReads(TorchDispatchMode):
    """Fail on any op that reads a tensor's values on the host, or indexes with a bool mask.

    ``Tensor.tolist`` and ``Tensor.numpy`` read CPU memory without dispatching an op, so they are
    patched to fail while the mode is active.
    """

    def __enter__(self) -> NoHostReads:
        def refuse(name: str) -> Any:
            def fail(*_: Any, **__: Any) -> Any:
                raise AssertionError(f"host-device sync: Tensor.{name}()")

            return fail

        self._saved = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}
        for name in self._saved:
            setattr(torch.Tensor, name, refuse(name))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for name, fn in self._saved.items():
            setattr(torch.Tensor, name, fn)
        super().__exit__(*exc)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        packet = func.overloadpacket
        if packet in _HOST_READS:
            raise AssertionError(f"host-device sync: {func}")
        if packet in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())  # type: ignore[union-attr]
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                raise AssertionError(f"host-device sync: boolean indexing ({func})")
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def accelerator_semantics() -> Iterator[None]:
    """Accelerator code paths on CPU, value checks off (on CUDA they are asynchronous asserts)."""
    try:
        from advcorrupt._checks import set_value_checks, value_checks_enabled
    except ImportError:  # value checks not present in this version
        with _emulate_accelerator():
            yield
        return
    before = value_checks_enabled()
    set_value_checks(False)
    try:
        with _emulate_accelerator():
            yield
    finally:
        set_value_checks(before)


@pytest.mark.parametrize(
    "bad",
    [
        lambda x: x.sum().item(),
        lambda x: x.max().tolist(),
        lambda x: x[x > 0.5],
        lambda x: torch.nonzero(x),
        lambda x: torch.bincount((x * 3).long().flatten()),
        lambda x: bool(x.sum() > 0),
    ],
)
def test_the_guard_catches_every_kind_of_host_read(bad: Any) -> None:
    x = torch.rand(4, 4)
    with pytest.raises(AssertionError, match="host-device sync"), NoHostReads():
        bad(x)


def test_the_guard_catches_the_subset_grouping_and_cpu_kernels() -> None:
    x, actions = torch.rand(4, 1, 32, 32), torch.tensor([0, 5, 14, 29])
    with pytest.raises(AssertionError, match="host-device sync"), NoHostReads():
        ActionSpace(grouping="subset").apply(x, actions)
    with pytest.raises(AssertionError, match="host-device sync"), NoHostReads():
        ActionSpace(grouping="fused").apply(x, actions)  # CPU semantics: exact bounds read on the host


@pytest.mark.parametrize("grouping", ["auto", "fused", "masked"])
@pytest.mark.parametrize("channels", [1, 3])
def test_accelerator_corruption_of_a_mixed_batch_reads_nothing_on_the_host(grouping: str, channels: int) -> None:
    space = ActionSpace(grouping=grouping)
    x = torch.rand(space.size, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    actions = torch.arange(space.size)
    with accelerator_semantics():
        ref = space.apply(x, actions, generator=torch.Generator().manual_seed(1))
        with NoHostReads():
            out = space.apply(x, actions, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, ref) and out.shape == x.shape  # second call: caches warm, same draw


def test_policy_sampling_and_update_read_nothing_on_the_host() -> None:
    updater = Reinforce(PolicyNetwork(1, 30), lr=1e-2)
    x = torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in updater.params]
    with accelerator_semantics(), NoHostReads():
        for _ in range(2):  # first update initialises the baseline, the second uses it
            sample = updater.act(x, generator=torch.Generator().manual_seed(1))
            rewards = torch.rand(8).masked_fill(torch.arange(8) == 3, float("nan"))  # non-finite: no weight
            stats = updater.update(sample, rewards)
    assert all(torch.isfinite(v).all() for v in stats.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, updater.params))


# ----------------------------------------------------------------------------- CUDA graphs
def test_graphed_call_is_a_plain_call_off_cuda() -> None:
    calls = []
    graphed = GraphedCall(lambda x: calls.append(1) or x * 2, name="double")
    assert torch.equal(graphed(torch.ones(3)), torch.full((3,), 2.0)) and calls == [1]
    assert graphed.state() == {"enabled": True, "num_graphs": 0, "failure": None}


def test_graphed_call_falls_back_to_eager_with_one_warning_when_capture_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    space = ActionSpace(["contrast", "brightness"], severities=(1,))
    graphed = GraphedCall(space.apply, name="the corruption")
    monkeypatch.setattr(graphed, "_eligible", lambda args: graphed.failure is None)  # force a capture on CPU
    x, actions = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.warns(RuntimeWarning, match="CUDA graph capture of the corruption failed") as record:
        out = graphed(x, actions)
        again = graphed(x, actions)
    assert len(record) == 1 and graphed.failure is not None and graphed.num_graphs == 0
    assert torch.equal(out, space.apply(x, actions)) and torch.equal(again, out)


def test_graphed_call_disabled_never_captures() -> None:
    graphed = GraphedCall(lambda x: x + 1, name="inc", enabled=False)
    assert not graphed._eligible((torch.ones(1),))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@needs_cuda
def test_cuda_graphed_corruption_equals_eager_and_replays_fresh_noise() -> None:
    space = ActionSpace()  # "auto": fused on CUDA
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.rand(space.size, 1, 64, 64, device="cuda")
    actions = torch.arange(space.size, device="cuda")
    run = GraphedCall(lambda im, a: space.apply(im, a, generator=gen), name="corruption", generators=[gen])
    gen.manual_seed(5)
    first = run(x, actions)  # captures (warm-up draws rewound), then replays
    second = run(x, actions)
    gen.manual_seed(5)
    ref_first = space.apply(x, actions, generator=gen)
    ref_second = space.apply(x, actions, generator=gen)
    assert run.num_graphs == 1 and run.failure is None
    torch.testing.assert_close(first, ref_first, atol=1e-5, rtol=0)
    torch.testing.assert_close(second, ref_second, atol=1e-5, rtol=0)
    assert not torch.equal(first, second)  # fresh random numbers on every replay
