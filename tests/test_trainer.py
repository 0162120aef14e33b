"""Behaviour of AdversarialCorruptionTrainer: Alg. 1 step, two-line integration, errors, AMP, GPU."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advcorrupt.corruptions import available, corrupt
from advcorrupt.losses import SoftIoULoss
from advcorrupt.policy import ActionSpace
from advcorrupt.trainer import AdversarialCorruptionTrainer

SPACE_NAMES = ["gaussian_noise", "impulse_noise", "brightness"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(seed: int = 0, width: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 1, 1),
    )


class DeepSupervised(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.a, self.b, self.kind = nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 1), kind

    def forward(self, x: Tensor) -> object:
        h = self.a(x)
        if self.kind == "list":
            return [h, self.b(h)]
        if self.kind == "dict":
            return {"out": h, "aux": self.b(h)}
        if self.kind == "bad":
            return {"logits": h}
        if self.kind == "small":
            return F.avg_pool2d(h, 2)
        return h


def _batch(b: int = 4, size: int = 32, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 1, size, size, generator=g) * 0.5
    m = torch.zeros(b, 1, size, size)
    m[:, :, 10:14, 10:14] = 1
    return torch.where(m > 0, 0.9, x), m


def _trainer(model: nn.Module | None = None, **kw: object) -> AdversarialCorruptionTrainer:
    model = model if model is not None else _net()
    kw.setdefault("action_space", ActionSpace(SPACE_NAMES))
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    kw.setdefault("policy_kwargs", {"input_size": 32})
    kw.setdefault("in_channels", 1)  # the policy exists from the start (zero-config has its own tests)
    return AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), **kw)  # type: ignore[arg-type]


def _snapshot(trainer: AdversarialCorruptionTrainer) -> list[Tensor]:
    params = list(trainer.model.parameters())
    if trainer.policy is not None:
        params += list(trainer.policy.parameters())
    return [p.detach().clone() for p in params]


def _unchanged(trainer: AdversarialCorruptionTrainer, before: list[Tensor]) -> bool:
    now = _snapshot(trainer)
    return len(now) == len(before) and all(torch.equal(a, b) for a, b in zip(now, before))


# ----------------------------------------------------------------------------- the step
def test_step_updates_detector_and_policy_and_returns_detached_stats() -> None:
    trainer = _trainer(policy_lr=0.1)
    before = _snapshot(trainer)
    n_model = len(list(trainer.model.parameters()))
    stats = trainer.step(*_batch())
    expected = {"loss", "loss_clean", "loss_corrupted", "policy_entropy", "reward", "baseline", "skipped"}
    assert expected <= set(stats)
    assert all(isinstance(v, Tensor) and not v.requires_grad and v.ndim == 0 for v in stats.values())
    assert torch.allclose(stats["loss"], stats["loss_clean"] + stats["loss_corrupted"])
    # the default adversary is rewarded with damage: loss(corrupted) - loss(clean), per image
    assert torch.allclose(stats["reward"], stats["loss_corrupted"] - stats["loss_clean"], atol=1e-6)
    assert stats["skipped"] == 0 and trainer.num_steps == 1
    now = _snapshot(trainer)
    assert any(not torch.equal(a, b) for a, b in zip(now[:n_model], before[:n_model]))
    assert any(not torch.equal(a, b) for a, b in zip(now[n_model:], before[n_model:]))


def test_lambda_weights_the_corrupted_loss() -> None:
    stats = _trainer(lam=0.25).step(*_batch())
    assert torch.allclose(stats["loss"], stats["loss_clean"] + 0.25 * stats["loss_corrupted"])


def test_one_forward_pass_sees_clean_then_corrupted_and_preprocess_runs_after_corruption() -> None:
    seen: list[Tensor] = []

    def preprocess(t: Tensor) -> Tensor:
        seen.append(t.clone())
        return (t - 0.5) / 0.25

    calls: list[int] = []
    model = _net()
    model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    x, m = _batch()
    trainer = _trainer(model, action_space=ActionSpace(["brightness"], severities=(2,)), preprocess=preprocess)
    trainer.step(x, m)
    assert calls == [8]  # one forward pass on the 2B batch
    assert torch.equal(seen[0][:4], x)
    assert torch.allclose(seen[0][4:], corrupt(x, "brightness", 2))


@pytest.mark.parametrize("kind", ["list", "dict", "tensor"])
def test_model_outputs_tensor_list_or_dict_are_accepted(kind: str) -> None:
    model = DeepSupervised(kind)
    trainer = _trainer(model)
    stats = trainer.step(*_batch())
    assert torch.isfinite(stats["loss"])
    if kind == "list":  # the loss averages the heads
        x, m = _batch()
        trainer2 = _trainer(copy.deepcopy(model), strategy="none")
        with torch.no_grad():
            outs = model(x)
            expect = (SoftIoULoss("none")(outs[0], m) + SoftIoULoss("none")(outs[1], m)).mean() / 2
        trainer2.model.load_state_dict(model.state_dict())
        assert torch.allclose(trainer2.step(x, m)["loss"], expect, atol=1e-6)


def test_strategy_none_is_plain_training_through_the_same_path() -> None:
    calls: list[int] = []
    model = _net()
    model.register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    trainer = _trainer(model, strategy="none")
    x, m = _batch()
    assert trainer.corrupt(x).shape == (0, 1, 32, 32)
    stats = trainer.step(x, m)
    assert calls == [4] and stats["loss_corrupted"] == 0
    assert torch.equal(stats["loss"], stats["loss_clean"])


def test_two_line_integration_matches_the_documented_loop() -> None:
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = AdversarialCorruptionTrainer(
        model, opt, action_space=ActionSpace(SPACE_NAMES), policy_lr=0.1, policy_kwargs={"input_size": 32}
    )
    loss_fn = SoftIoULoss(reduction="none")
    x, m = _batch()
    x_hat = trainer.corrupt(x)  # line 1 (zero-config: the policy is built from this batch)
    policy_before = [p.detach().clone() for p in trainer.policy.parameters()]  # type: ignore[union-attr]
    assert x_hat.shape == x.shape and not torch.equal(x_hat, x)
    per = loss_fn(model(torch.cat([x, x_hat])), torch.cat([m, m]))
    loss = per[:4].mean() + per[4:].mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    stats = trainer.update_policy(per[4:].detach(), clean_loss=per[:4].detach())  # line 2
    assert torch.allclose(stats["reward"], (per[4:] - per[:4]).mean(), atol=1e-6)  # damage, the default reward
    assert any(not torch.equal(a, b) for a, b in zip(trainer.policy.parameters(), policy_before))  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="corrupt"):
        trainer.update_policy(per[4:].detach(), clean_loss=per[:4].detach())
    trainer.corrupt(x)
    with pytest.raises(ValueError, match="per_sample_corrupted_loss"):
        trainer.update_policy(per[4:].mean())


def test_autocast_bf16_on_cpu_and_channels_last_model_train() -> None:
    model = _net().to(memory_format=torch.channels_last)
    trainer = _trainer(model, autocast_dtype=torch.bfloat16)
    before = _snapshot(trainer)
    stats = trainer.step(*_batch())
    assert torch.isfinite(stats["loss"]) and stats["skipped"] == 0
    assert not _unchanged(trainer, before)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the user's own autocast block works too
        assert torch.isfinite(_trainer(_net()).step(*_batch())["loss"])


# ----------------------------------------------------------------------------- bad input
def _bad_cases() -> dict[str, tuple[Callable[[], tuple[object, object]], type[Exception], str]]:
    x, m = _batch()
    return {
        "images_uint8": (lambda: ((x * 255).to(torch.uint8), m), TypeError, "images"),
        "images_3d": (lambda: (x[0], m), ValueError, "images"),
        "masks_batch": (lambda: (x, m[:3]), ValueError, "masks"),
        "masks_size": (lambda: (x, m[..., :16]), ValueError, "masks"),
        "masks_type": (lambda: (x, m.numpy()), TypeError, "masks"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_step_input_is_a_clear_error_and_changes_nothing(case: str) -> None:
    make, exc, name = _bad_cases()[case]
    trainer = _trainer(policy_lr=0.1)
    before = _snapshot(trainer)
    images, masks = make()
    with pytest.raises(exc, match=name):
        trainer.step(images, masks)  # type: ignore[arg-type]
    assert _unchanged(trainer, before) and trainer.num_steps == 0


@pytest.mark.parametrize(
    "kind, exc, match",
    [("small", ValueError, "spatial size"), ("bad", TypeError, "dict with key 'out'")],
)
def test_bad_model_output_is_a_clear_error_and_changes_nothing(kind: str, exc: type[Exception], match: str) -> None:
    trainer = _trainer(DeepSupervised(kind))
    before = _snapshot(trainer)
    with pytest.raises(exc, match=match):
        trainer.step(*_batch())
    assert _unchanged(trainer, before)


def test_scalar_loss_is_rejected_with_the_reason() -> None:
    trainer = _trainer(loss_fn=SoftIoULoss(reduction="mean"))
    before = _snapshot(trainer)
    with pytest.raises(ValueError, match="per-sample losses.*reward"):
        trainer.step(*_batch())
    assert _unchanged(trainer, before)


@pytest.mark.parametrize("lam", [-0.1, float("nan"), "1"])
def test_negative_or_non_numeric_lambda_is_rejected(lam: object) -> None:
    with pytest.raises(ValueError, match="lam"):
        _trainer(lam=lam)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(loss_fn="softiou"), TypeError, "loss_fn must be callable or None; got str"),
        (dict(preprocess=3), TypeError, "preprocess must be callable or None; got int"),
        (dict(generator=0), TypeError, "generator must be a torch.Generator or None; got int"),
        (dict(scaler=object()), TypeError, "scaler must be a torch.amp.GradScaler or None; got object"),
        (dict(max_grad_norm=0.0), ValueError, "max_grad_norm must be a finite number > 0 or None; got 0.0"),
        (dict(max_grad_norm=True), ValueError, "max_grad_norm must be a finite number > 0 or None; got True"),
        (dict(in_channels=0), ValueError, "in_channels must be a positive int or None .*; got 0"),
    ],
)
def test_each_bad_constructor_argument_is_named_with_what_was_expected_and_received(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _trainer(**kwargs)


def test_model_and_optimizer_of_the_wrong_type_are_rejected() -> None:
    model = _net()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got function"):
        AdversarialCorruptionTrainer(_net, torch.optim.SGD(model.parameters(), lr=0.1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer; got list"):
        AdversarialCorruptionTrainer(model, list(model.parameters()))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model must have parameters to train"):
        AdversarialCorruptionTrainer(nn.ReLU(), torch.optim.SGD(model.parameters(), lr=0.1))


def test_optimizer_without_the_models_parameters_is_rejected() -> None:
    model, other = _net(), _net(1)
    with pytest.raises(ValueError, match="optimizer must hold the model's parameters"):
        AdversarialCorruptionTrainer(model, torch.optim.SGD(other.parameters(), lr=0.1),
                                     action_space=ActionSpace(SPACE_NAMES))


def test_non_finite_loss_skips_both_updates_and_counts_consecutive_skips() -> None:
    poison = {"on": True}

    def loss_fn(logits: Tensor, masks: Tensor) -> Tensor:
        per = SoftIoULoss("none")(logits, masks)
        return per * float("nan") if poison["on"] else per

    trainer = _trainer(loss_fn=loss_fn, policy_lr=0.1)
    before = _snapshot(trainer)
    for i in range(3):
        with pytest.warns(RuntimeWarning, match="non-finite"):
            stats = trainer.step(*_batch())
        assert stats["skipped"] == 1 and trainer.consecutive_skips == i + 1
    assert trainer.num_skipped == 3 and _unchanged(trainer, before)
    poison["on"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = trainer.step(*_batch())
    assert stats["skipped"] == 0 and trainer.consecutive_skips == 0 and trainer.num_skipped == 3
    assert all(torch.isfinite(p).all() for p in _snapshot(trainer))


# ----------------------------------------------------------------------------- checkpoints
def test_state_dict_round_trip_and_foreign_action_space_is_rejected_without_change() -> None:
    a = _trainer(policy_lr=0.1)
    for _ in range(2):
        a.step(*_batch())
    b = _trainer(policy_lr=0.1)
    b.load_state_dict(a.state_dict())
    x, _ = _batch()
    assert torch.allclose(a.policy_probabilities(x), b.policy_probabilities(x))
    assert b.num_steps == 2
    assert torch.equal(a.strategy.reinforce.baseline, b.strategy.reinforce.baseline)  # type: ignore[attr-defined]
    c = _trainer(action_space=ActionSpace(["gaussian_noise", "contrast", "brightness"]), policy_lr=0.1)
    c.step(*_batch())
    before, probs = _snapshot(c), c.policy_probabilities(x)
    with pytest.raises(ValueError, match="different action space"):
        c.load_state_dict(a.state_dict())
    assert _unchanged(c, before) and torch.equal(c.policy_probabilities(x), probs) and c.num_steps == 1


# ----------------------------------------------------------------------------- end to end
def _iou(model: nn.Module, x: Tensor, m: Tensor) -> float:
    with torch.no_grad():
        p = (model(x) > 0).float()
    return float((p * m).sum() / ((p + m) > 0).float().sum().clamp(min=1))


def test_learned_training_is_more_robust_to_noise_than_plain_training() -> None:
    data = pytest.importorskip("advcorrupt.data")
    train, test = data.SyntheticIRSTD(64, size=48, seed=1), data.SyntheticIRSTD(32, size=48, seed=2)
    xs, ms = (torch.stack(t) for t in zip(*[train[i] for i in range(len(train))]))
    xt, mt = (torch.stack(t) for t in zip(*[test[i] for i in range(len(test))]))
    soft_iou = SoftIoULoss(reduction="none")

    def loss_fn(logits: Tensor, masks: Tensor) -> Tensor:  # BCE speeds up the tiny run
        bce = F.binary_cross_entropy_with_logits(
            logits.float(), masks, pos_weight=torch.tensor(10.0), reduction="none"
        ).mean((1, 2, 3))
        return bce + soft_iou(logits, masks)

    results = {}
    for strategy in ("learned", "none"):
        model = _net(width=12)
        g = torch.Generator().manual_seed(0)
        trainer = AdversarialCorruptionTrainer(
            model, torch.optim.Adam(model.parameters(), lr=1e-2), loss_fn, strategy=strategy,
            action_space=ActionSpace(SPACE_NAMES), policy_lr=1e-2, generator=g,
            policy_kwargs={"input_size": 32},
        )
        for _ in range(160):
            idx = torch.randint(0, len(xs), (8,), generator=g)
            trainer.step(xs[idx], ms[idx])
        noisy = corrupt(xt, "gaussian_noise", 3, generator=torch.Generator().manual_seed(5))
        results[strategy] = (_iou(model, xt, mt), _iou(model, noisy, mt))
    (clean_l, noisy_l), (clean_n, noisy_n) = results["learned"], results["none"]
    assert noisy_l > noisy_n + 0.01, results
    assert clean_l > 0.8 * clean_n and clean_l > 0.2, results


# ----------------------------------------------------------------------------- GPU
def _cuda_setup(**kw: object) -> tuple[AdversarialCorruptionTrainer, Tensor, Tensor]:
    model = _net().cuda()
    x, m = _batch(8, 64)
    g = torch.Generator(device="cuda").manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = AdversarialCorruptionTrainer(model, opt, action_space=ActionSpace(available()[:10]),
                                           generator=g, **kw)  # type: ignore[arg-type]
    return trainer, x.cuda(), m.cuda()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_step_under_autocast(dtype: torch.dtype) -> None:
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    trainer, x, m = _cuda_setup(autocast_dtype=dtype, scaler=scaler)
    trainer.model.to(memory_format=torch.channels_last)
    for _ in range(3):
        stats = trainer.step(x, m)
    assert stats["loss"].device.type == "cuda" and torch.isfinite(stats["loss"])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_does_not_sync_host_and_device() -> None:
    trainer, x, m = _cuda_setup(skip_non_finite=False, autocast_dtype=torch.bfloat16)
    assert trainer.action_space._resolve_grouping(x.device) == "fused"
    trainer.step(x, m)  # warm-up: level tables and caches are copied to the device once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            stats = trainer.step(x, m)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(stats["loss"])


def test_per_sample_loss_is_the_loss_the_step_trains_with() -> None:
    """Public per_sample_loss: the loss_fn averaged over deep-supervision heads, one value per image."""
    model = DeepSupervised("list")
    trainer = AdversarialCorruptionTrainer(
        model, torch.optim.SGD(model.parameters(), lr=0.0), strategy="none", task="binary",
    )
    x, y = torch.rand(3, 1, 16, 16), (torch.rand(3, 1, 16, 16) > 0.7).float()
    with torch.no_grad():
        heads = model(x)
        got = trainer.per_sample_loss(heads, y)
    step = trainer.step(x, y)  # lr 0: the same weights
    want = (trainer.loss_fn(heads[0], y) + trainer.loss_fn(heads[1], y)) / 2
    assert got.shape == (3,) and torch.allclose(got, want)
    assert float(step["loss"]) == pytest.approx(float(got.mean()), rel=1e-5)


def test_per_sample_loss_needs_the_task() -> None:
    model = _net()
    trainer = AdversarialCorruptionTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), strategy="random")
    with pytest.raises(RuntimeError, match="per_sample_loss\\(\\) needs the task"):
        trainer.per_sample_loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
