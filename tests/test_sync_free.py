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
from advcorrupt.trainer import AdversarialCorruptionTrainer

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


# ----------------------------------------------------------------------------- the trainer's step
def _trainer(optimizer: str = "sgd", **kw: Any) -> tuple[AdversarialCorruptionTrainer, torch.nn.Module]:
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    opt = {
        "sgd": lambda: torch.optim.SGD(model.parameters(), lr=0.1),
        "adam": lambda: torch.optim.Adam(model.parameters(), lr=0.1),
        "adam_fused": lambda: torch.optim.Adam(model.parameters(), lr=0.1, fused=True),
    }[optimizer]()
    kw.setdefault("strategy", "learned")  # the policy's path: the one with device-side state to keep sync-free
    return AdversarialCorruptionTrainer(model, opt, generator=torch.Generator().manual_seed(1), **kw), model


def _batch(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.rand(b, 1, 32, 32, generator=g), (torch.rand(b, 1, 32, 32, generator=g) > 0.9).float()


@pytest.mark.parametrize("strategy", ["learned", "random", "none", "blur"])
def test_accelerator_trainer_step_reads_nothing_on_the_host(strategy: str) -> None:
    trainer, _ = _trainer(strategy=strategy)
    x, y = _batch()
    with accelerator_semantics():
        trainer.step(x, y)  # first step: lazy policy, cached tables
        with NoHostReads():
            stats = trainer.step(x, y)
            stats = trainer.step(x, y)
    assert float(stats["skipped"]) == 0.0 and torch.isfinite(stats["loss"])
    assert trainer.num_steps == 3 and trainer.num_skipped == 0


class _NaNOnce:
    """SoftIoU, except that the losses are NaN while ``armed``."""

    def __init__(self) -> None:
        from advcorrupt.losses import SoftIoULoss

        self.inner, self.armed = SoftIoULoss(reduction="none"), False

    def __call__(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        out = self.inner(logits, masks)
        return out * float("nan") if self.armed else out


@pytest.mark.parametrize("optimizer", ["sgd", "adam_fused"])
def test_accelerator_step_skips_a_non_finite_step_on_the_device_exactly(optimizer: str) -> None:
    loss_fn = _NaNOnce()
    trainer, model = _trainer(optimizer, loss_fn=loss_fn)
    x, y = _batch()
    with accelerator_semantics():
        trainer.step(x, y)
        weights = [p.detach().clone() for p in model.parameters()]
        policy = [p.detach().clone() for p in trainer.policy.parameters()]
        opt_state = {k: v.clone() for s in trainer.optimizer.state.values() for k, v in s.items()}
        loss_fn.armed = True
        with NoHostReads():
            stats = trainer.step(x, y)
        loss_fn.armed = False
    assert float(stats["skipped"]) == 1.0
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(policy, trainer.policy.parameters()))
    after = {k: v for s in trainer.optimizer.state.values() for k, v in s.items()}
    assert all(torch.equal(opt_state[k], after[k]) for k in opt_state)  # fused Adam: step count too
    with pytest.warns(RuntimeWarning, match="1 step\\(s\\) with a non-finite loss"):
        assert trainer.num_skipped == 1 and trainer.consecutive_skips == 1
    with accelerator_semantics():
        trainer.step(x, y)
    assert trainer.consecutive_skips == 0 and trainer.num_skipped == 1


def test_accelerator_step_with_a_plain_adam_keeps_weights_finite_after_a_nan_step() -> None:
    loss_fn = _NaNOnce()
    trainer, model = _trainer("adam", loss_fn=loss_fn)
    x, y = _batch()
    with accelerator_semantics():
        trainer.step(x, y)
        loss_fn.armed = True
        trainer.step(x, y)
        loss_fn.armed = False
        stats = trainer.step(x, y)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(stats["loss"]) and float(stats["skipped"]) == 0.0
    with pytest.warns(RuntimeWarning, match="non-finite"):
        assert trainer.num_skipped == 1 and trainer.consecutive_skips == 0


def test_cpu_step_keeps_its_host_guard_and_counts_at_once() -> None:
    loss_fn = _NaNOnce()
    trainer, _ = _trainer(loss_fn=loss_fn)
    x, y = _batch()
    loss_fn.armed = True
    with pytest.warns(RuntimeWarning, match="non-finite loss or gradient at step 1"):
        trainer.step(x, y)
    assert trainer.num_skipped == 1 and trainer.consecutive_skips == 1 and not trainer._skips.pending


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_default_trainer_step_never_syncs(bf16: bool) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 1)).cuda()
    trainer = AdversarialCorruptionTrainer(
        model, torch.optim.Adam(model.parameters(), lr=1e-3), generator=torch.Generator(device="cuda").manual_seed(0),
        autocast_dtype=torch.bfloat16 if bf16 else None,
    )
    x = torch.rand(8, 1, 64, 64, device="cuda")
    y = (torch.rand(8, 1, 64, 64, device="cuda") > 0.95).float()
    for _ in range(3):  # lazy policy, cached tables, graph capture
        trainer.step(x, y)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            stats = trainer.step(x, y)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert float(stats["skipped"]) == 0.0 and trainer.num_skipped == 0
    assert trainer._graphed_apply.state()["num_graphs"] == 1 and trainer._graphed_apply.failure is None


@pytest.mark.gpu
@needs_cuda
def test_cuda_graphed_trainer_equals_the_eager_trainer() -> None:
    runs = []
    for graphs in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Conv2d(1, 1, 3, padding=1).cuda()
        trainer = AdversarialCorruptionTrainer(
            model, torch.optim.SGD(model.parameters(), lr=0.1), cuda_graphs=graphs,
            generator=torch.Generator(device="cuda").manual_seed(3),
        )
        g = torch.Generator().manual_seed(4)
        losses = []
        for _ in range(4):
            x = torch.rand(6, 1, 48, 48, generator=g).cuda()
            y = (torch.rand(6, 1, 48, 48, generator=g) > 0.9).float().cuda()
            losses.append(trainer.step(x, y)["loss_corrupted"])
        runs.append((torch.stack(losses).cpu(), [p.detach().cpu() for p in model.parameters()], trainer))
    (la, wa, ta), (lb, wb, _) = runs
    assert ta._graphed_apply.num_graphs == 1
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    for a, b in zip(wa, wb):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_skip_warnings_point_at_the_callers_line() -> None:
    """Both skip warnings (host: at the step; accelerator: at the read) name the user's file, not ours."""
    loss_fn = _NaNOnce()
    trainer, _ = _trainer(loss_fn=loss_fn)
    x, y = _batch()
    loss_fn.armed = True
    with pytest.warns(RuntimeWarning, match="at step 1") as host:
        trainer.step(x, y)
    loss_fn.armed = True
    with accelerator_semantics():
        trainer.step(x, y)
    with pytest.warns(RuntimeWarning, match="since the last check") as read:
        assert trainer.num_skipped == 2
    assert [w.filename for w in (*host, *read)] == [__file__, __file__]
