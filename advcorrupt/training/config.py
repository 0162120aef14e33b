"""What defines a training run: :class:`TrainConfig`, and :func:`check_config`, which refuses a
configuration that cannot train before anything is built.

A config is a frozen dataclass saved in every checkpoint (as :meth:`TrainConfig.to_dict`); a
resumed run must share the fields that define it (:mod:`advcorrupt.training.checkpoints`).

``TrainConfig.dataset`` says what the data is, and with it the task (:mod:`advcorrupt.tasks`):
``"istd"`` (the default: an ISTD-layout folder or synthetic scenes; binary masks, one channel),
``"camvid"`` (:class:`~advcorrupt.data.CamVid`: 11 classes, void = 11 ignored, RGB) or
``"folder"`` (:class:`~advcorrupt.data.SegmentationFolder` splits: K classes given by
``num_classes``, RGB). :func:`run_task` turns a config into its task without reading any file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..tasks import Task

__all__ = ["DATASETS", "TrainConfig", "check_config", "run_task"]

#: The values of ``TrainConfig.dataset``.
DATASETS: tuple[str, ...] = ("istd", "camvid", "folder")
#: CamVid (SegNet's 11-class version): its classes and its void label (advcorrupt.data.CamVid).
_CAMVID_CLASSES, _CAMVID_IGNORE = 11, 11
#: The sub-folders a CamVid root needs for training (the test split is the bench's).
_CAMVID_TRAINING = ("train", "trainannot", "val", "valannot")

_AMP = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# What a run folder's config.json records beside the fields (training/logs.py writes it): which
# code trained the run, not how. Not a field: it must never make two recipes differ.
_RUN_RECORD_KEYS = frozenset({"git"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Attributes:
        model: a name from :func:`advcorrupt.models.list_models`.
        model_kwargs: extra arguments of the model factory.
        strategy: ``None`` (default): the task's default, resolved when the config is made, so
            ``config.json`` names the strategy that ran (binary: ``"random@1-5"``; semantic:
            ``"curriculum@1-3"``; :attr:`~advcorrupt.tasks.Task.default_strategy`; ``"learned"`` where
            ``policy_kwargs`` / ``reinforce_kwargs`` are given). Or ``"learned"``, an adversary's
            name, ``"random"``, ``"none"``, a corruption, a category or a schedule (``"random@3"``).
        data_root: the dataset folder (ISTD layout for ``"istd"``, where ``None`` uses
            :class:`SyntheticIRSTD`; SegNet's layout for ``"camvid"``; see ``dataset``).
        dataset_name: ISTD split-file name (``img_idx/train_<name>.txt``); inferred when ``None``.
        dataset: what ``data_root`` holds: ``"istd"`` (binary infrared masks, one channel),
            ``"camvid"`` (CamVid: validation on ``val``, the bench on ``test``) or ``"folder"``
            (class-index masks: ``<root>/<split>/images`` + ``<root>/<split>/masks``, or
            ``<root>/images`` + ``<root>/masks`` with ``<root>/<split>.txt`` listing the names;
            splits ``train``, ``val`` and, for the bench, ``test``).
        task: ``"binary"`` or ``"semantic"``; ``None``: the dataset's (istd: binary; camvid,
            folder: semantic).
        num_classes: K of a semantic task; ``None``: the dataset's (CamVid: 11; a folder needs it).
        ignore_index: the label left out of the loss and the metrics; ``None``: the dataset's
            (CamVid: 11, void). A folder without one pads its training crops with label K,
            which the task then ignores (no real pixel holds it).
        crop_size: ``(h, w)`` of the semantic training crops (random scale 0.5-2, crop, flip).
        synthetic_train, synthetic_test, synthetic_size: the synthetic default's sizes.
        epochs: number of epochs.
        steps_per_epoch: cap on optimizer steps per epoch (``None``: one pass over the data).
        batch_size: clean images per step (the forward pass sees twice as many).
        patch_size: training crop side for real data.
        lr: detector Adam learning rate (paper: 5e-4), cosine-annealed to ``lr * 0.01``.
        warmup_epochs: linear learning-rate warm-up from ``lr / 100`` over this many epochs
            (0: none). A few epochs keep the high rates of short schedules from collapsing the
            detector to all-background on some seeds (docs/results.md).
        grad_clip: clip the detector's gradient norm to this value (``None``: no clipping).
        on_bad_file: ``"error"`` (default) or ``"skip"``: what to do with a split entry whose image
            or mask is missing or cannot be read (skipped pairs are warned about and reported).
        bce_weight: weight of a per-sample binary cross-entropy added to the Soft-IoU loss (0: the
            paper's Soft-IoU alone); it keeps a gradient on target pixels when every logit is far
            below zero, the all-background collapse (docs/results.md).
        bce_pos_weight: weight of the target pixels inside the BCE term (1: unweighted); targets
            cover ~0.1% of an infrared image, so a plain mean pulls the background down far harder
            than it pulls the targets up.
        deterministic: set torch's reproducibility switches (deterministic algorithms, cuDNN
            without autotuning, ``CUBLAS_WORKSPACE_CONFIG``); matters on CUDA, slower there.
        policy_lr: policy SGD learning rate (paper: 1e-4, which barely moves the policy within a
            run; default 1e-2, see docs/trainer.md).
        lam: weight of the corrupted loss (Eq. 1).
        corruptions, severities: the action space (``None``: all registered corruptions).
        seed: seeds initialisation, data order, augmentation and the adversary.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available.
        out_dir: where checkpoints and logs go.
        keep_last: checkpoints kept.
        checkpoint_every: also checkpoint every N steps inside an epoch (0: only at epoch ends).
        max_consecutive_skips: stop after this many consecutive non-finite steps.
        eval_every: validate every N epochs (and always after the last).
        num_workers: DataLoader workers.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (fp16 uses a GradScaler).
        log_format: ``"jsonl"`` or ``"csv"``.
        reinforce_kwargs: extra arguments of :class:`~advcorrupt.Reinforce`.
        policy_kwargs: extra arguments of :class:`~advcorrupt.PolicyNetwork` (``input_size``,
            ``widths``).
    """

    model: str = "sfim_dnanet"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    strategy: str | None = None  # None: the task's default, set in __post_init__ (a str after)
    data_root: str | None = None
    dataset_name: str | None = None
    dataset: str = "istd"
    task: str | None = None
    num_classes: int | None = None
    ignore_index: int | None = None
    crop_size: tuple[int, int] = (160, 224)
    synthetic_train: int = 256
    synthetic_test: int = 64
    synthetic_size: int = 128
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 16
    patch_size: int = 256
    lr: float = 5e-4
    warmup_epochs: int = 0
    grad_clip: float | None = None
    bce_weight: float = 0.0
    bce_pos_weight: float = 1.0
    on_bad_file: str = "error"
    deterministic: bool = False
    policy_lr: float = 1e-2
    lam: float = 1.0
    corruptions: tuple[str, ...] | None = None
    severities: tuple[int, ...] = (1, 2, 3)
    seed: int = 0
    device: str | None = None
    out_dir: str = "runs/default"
    keep_last: int = 3
    checkpoint_every: int = 0
    max_consecutive_skips: int = 10
    eval_every: int = 1
    num_workers: int = 0
    amp: str = "none"
    log_format: str = "jsonl"
    reinforce_kwargs: Mapping[str, Any] = field(default_factory=dict)
    policy_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "patch_size", "keep_last", "eval_every", "synthetic_train",
                    "synthetic_test", "synthetic_size", "max_consecutive_skips")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        for name in ("checkpoint_every", "num_workers", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0; got {value!r}")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be None or an int >= 1; got {self.steps_per_epoch!r}")
        for name in ("lr", "policy_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        if self.grad_clip is not None and (
            not isinstance(self.grad_clip, (int, float)) or not math.isfinite(self.grad_clip) or self.grad_clip <= 0
        ):
            raise ValueError(f"grad_clip must be None or a finite number > 0; got {self.grad_clip!r}")
        if self.on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file must be 'error' or 'skip'; got {self.on_bad_file!r} (--on-bad-file)")
        if not isinstance(self.bce_weight, (int, float)) or not math.isfinite(self.bce_weight) or self.bce_weight < 0:
            raise ValueError(f"bce_weight must be a finite number >= 0; got {self.bce_weight!r}")
        if (
            isinstance(self.bce_pos_weight, bool) or not isinstance(self.bce_pos_weight, (int, float))
            or not math.isfinite(self.bce_pos_weight) or self.bce_pos_weight <= 0
        ):
            raise ValueError(f"bce_pos_weight must be a finite number > 0; got {self.bce_pos_weight!r}")
        if not isinstance(self.lam, (int, float)) or not math.isfinite(self.lam) or self.lam < 0:
            raise ValueError(f"lam must be a finite number >= 0; got {self.lam!r}")
        if self.amp not in _AMP:
            raise ValueError(f"amp must be one of {list(_AMP)}; got {self.amp!r}")
        if self.log_format not in ("jsonl", "csv"):
            raise ValueError(f"log_format must be 'jsonl' or 'csv'; got {self.log_format!r}")
        self._check_task_fields()
        if self.strategy is None:  # the rule the trainer follows; the task is the config's own
            from ..tasks import default_strategy

            wants_policy = bool(self.policy_kwargs) or bool(self.reinforce_kwargs)
            object.__setattr__(self, "strategy", default_strategy(run_task(self), wants_policy=wants_policy))
        # Normalise containers so configs compare equal after a JSON round trip.
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "reinforce_kwargs", dict(self.reinforce_kwargs))
        object.__setattr__(self, "policy_kwargs", dict(self.policy_kwargs))
        object.__setattr__(self, "severities", tuple(int(s) for s in self.severities))
        if self.corruptions is not None:
            if isinstance(self.corruptions, str):
                raise TypeError(f"corruptions must be a sequence of names or None; got the str {self.corruptions!r}")
            object.__setattr__(self, "corruptions", tuple(self.corruptions))

    def _check_task_fields(self) -> None:
        """The values of ``dataset``, ``task``, ``num_classes``, ``ignore_index`` and ``crop_size``."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {list(DATASETS)}; got {self.dataset!r} (--dataset)")
        if self.task not in (None, "binary", "semantic"):
            raise ValueError(f"task must be 'binary', 'semantic' or None (the dataset's); got {self.task!r} (--task)")
        k = self.num_classes
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
            raise ValueError(f"num_classes must be an int >= 2 or None (the dataset's); got {k!r} (--num-classes)")
        ii = self.ignore_index
        if ii is not None and (isinstance(ii, bool) or not isinstance(ii, int) or ii < 0):
            raise ValueError(f"ignore_index must be an int >= 0 or None (the dataset's); got {ii!r} (--ignore-index)")
        crop = self.crop_size
        if (isinstance(crop, str) or not hasattr(crop, "__len__") or len(crop) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in crop)):
            raise ValueError(f"crop_size must be (h, w), two ints >= 1; got {crop!r} (--crop-size H W)")
        object.__setattr__(self, "crop_size", (int(crop[0]), int(crop[1])))

    def to_dict(self) -> dict[str, Any]:
        """Plain-container form (JSON- and checkpoint-safe)."""
        out = asdict(self)
        out["crop_size"] = list(self.crop_size)
        out["severities"] = list(self.severities)
        out["corruptions"] = None if self.corruptions is None else list(self.corruptions)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config of :meth:`to_dict`'s form, or of a run folder's ``config.json``.

        The records ``config.json`` keeps beside the fields (``"git"``: the commit the run was
        trained from, :mod:`~advcorrupt.training.provenance`) are not part of a run's recipe and
        are dropped; any other unknown key raises.

        Raises:
            ValueError: an unknown field (the message lists the known ones), or a bad value.

        Example:
            >>> config = TrainConfig(model="acm", epochs=2)
            >>> saved = {**config.to_dict(), "git": {"commit": None, "dirty": None}}  # a config.json
            >>> TrainConfig.from_dict(saved) == config
            True
            >>> TrainConfig.from_dict({"model": "acm", "epoch": 2})
            Traceback (most recent call last):
            ...
            ValueError: unknown TrainConfig field(s) ['epoch']; known: [...]
        """
        data = {k: v for k, v in data.items() if k not in _RUN_RECORD_KEYS}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        kw = dict(data)
        if kw.get("severities") is not None:
            kw["severities"] = tuple(kw["severities"])
        if kw.get("corruptions") is not None:
            kw["corruptions"] = tuple(kw["corruptions"])
        if kw.get("crop_size") is not None:
            kw["crop_size"] = tuple(kw["crop_size"])
        return cls(**kw)


def run_task(config: TrainConfig) -> Task:
    """The task a run trains on: the config's ``task`` / ``num_classes`` / ``ignore_index``,
    completed by its dataset's (reads no file). A binary task carries the config's loss knobs
    (``bce_weight``, ``bce_pos_weight``): its :meth:`~advcorrupt.tasks.Task.default_loss` is the run's loss.

    Raises:
        ValueError: a task the dataset cannot have (semantic ISTD masks, binary CamVid), a
            ``num_classes`` / ``ignore_index`` that contradicts the dataset's, or a ``"folder"``
            dataset without ``num_classes``.

    Example:
        >>> run_task(TrainConfig())
        BinaryTask()
        >>> run_task(TrainConfig(bce_weight=1.0, bce_pos_weight=10.0))
        BinaryTask(bce_weight=1.0, bce_pos_weight=10.0)
        >>> run_task(TrainConfig(dataset="camvid", data_root="CamVid"))
        SemanticTask(num_classes=11, ignore_index=11, class_weights=None)
        >>> run_task(TrainConfig(dataset="camvid", num_classes=12))
        Traceback (most recent call last):
        ...
        ValueError: CamVid has 11 classes (labels 0-10, void 11 ignored); got num_classes=12 (--num-classes): leave it out
    """
    from ..tasks import BinaryTask, SemanticTask

    dataset, task = config.dataset, config.task
    if dataset == "istd":
        if task == "semantic" or config.num_classes is not None or config.ignore_index is not None:
            raise ValueError(
                "dataset='istd' holds binary target masks: its task is 'binary'; got "
                f"task={task!r}, num_classes={config.num_classes!r}, ignore_index={config.ignore_index!r} "
                "(--task / --num-classes / --ignore-index). For class-index masks use --dataset camvid or folder"
            )
        return BinaryTask(bce_weight=config.bce_weight, bce_pos_weight=config.bce_pos_weight)
    if task == "binary":
        raise ValueError(f"dataset={dataset!r} holds class-index masks: its task is 'semantic'; got task='binary' (--task)")
    if dataset == "camvid":
        for name, value, own in (("num_classes", config.num_classes, _CAMVID_CLASSES),
                                 ("ignore_index", config.ignore_index, _CAMVID_IGNORE)):
            if value is not None and value != own:
                raise ValueError(
                    f"CamVid has 11 classes (labels 0-10, void 11 ignored); got {name}={value} "
                    f"(--{name.replace('_', '-')}): leave it out"
                )
        return SemanticTask(_CAMVID_CLASSES, ignore_index=_CAMVID_IGNORE)
    if config.num_classes is None:
        raise ValueError("dataset='folder' needs num_classes (the number of classes K of its masks; --num-classes)")
    k = config.num_classes
    ignore = config.ignore_index if config.ignore_index is not None else k  # K only ever marks crop padding
    return SemanticTask(k, ignore_index=ignore)


def check_config(config: TrainConfig) -> None:
    """Raise, naming the fix, if ``config`` cannot train; cheap (builds no model and no dataset).

    Checks the model name (registered, or ``smp:<Arch>:<encoder>``), the task against the dataset
    (:func:`run_task`; the binary loss's ``bce_*`` knobs are refused for a semantic task), the
    action space (corruption names, severities within each corruption's level table), the
    strategy, the device and the data root's layout (ISTD: ``images/``, ``masks/``, ``img_idx/``;
    CamVid: ``train/``, ``trainannot/``, ``val/``, ``valannot/``; a folder: ``train`` and ``val``
    splits).

    Raises:
        KeyError: unknown model or corruption name (the message lists the valid names).
        ValueError: severities outside the tables, unknown strategy, unavailable device, a task
            the dataset cannot have, ``bce_*`` with a semantic task, no ``data_root`` for CamVid.
        FileNotFoundError: ``data_root`` missing or without its dataset's layout.

    Example:
        >>> check_config(TrainConfig(model="acm"))
        >>> check_config(TrainConfig(model="nope"))
        Traceback (most recent call last):
        ...
        KeyError: "unknown model 'nope'; ..."
        >>> check_config(TrainConfig(model="smp:Unet:resnet18", dataset="camvid", data_root="/nowhere"))
        Traceback (most recent call last):
        ...
        FileNotFoundError: data_root /nowhere does not exist (--data-root; dataset='camvid')
    """
    _check_model(config)
    task = run_task(config)
    if not task.accepts_loss_options and (config.bce_weight != 0.0 or config.bce_pos_weight != 1.0):
        raise ValueError(
            f"bce_weight / bce_pos_weight are knobs of the binary Soft-IoU + BCE loss; this run's task is {task.name} "
            f"({type(task.default_loss()).__name__}); got bce_weight={config.bce_weight}, "
            f"bce_pos_weight={config.bce_pos_weight}: leave --bce-weight / --bce-pos-weight out"
        )
    from ..policy.schedules import parse_schedule, schedule_action_space

    parse_schedule(config.strategy)  # a schedule string that cannot be read: ValueError naming it
    try:
        space = schedule_action_space(config.strategy, config.corruptions, config.severities)
    except KeyError as e:
        raise KeyError(f"{e.args[0]} (--corruptions / TrainConfig.corruptions)") from None
    except ValueError as e:
        raise ValueError(f"{e} (--severities / TrainConfig.severities; levels are listed in docs/)") from None
    from ..policy.adversaries import list_adversaries

    adversaries = list_adversaries()
    if config.strategy not in ("learned", "random", "none", *adversaries) and parse_schedule(config.strategy) is None:
        try:
            space.actions_of(config.strategy)
        except (KeyError, ValueError):
            raise ValueError(
                f"unknown strategy {config.strategy!r}; use 'learned', an adversary ({', '.join(adversaries)}), "
                f"'random', 'none', a corruption of the action space ({', '.join(space.corruptions)}) or a "
                f"category with members in it (noise, blur, digital) (--strategy / TrainConfig.strategy)"
            ) from None
    _check_policy(config, space)
    if config.device is not None:
        try:
            dev = torch.device(config.device)
        except RuntimeError:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N'; got {config.device!r} (--device)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} was asked for, but CUDA is not available here; use --device cpu")
    if config.dataset == "istd":
        _check_istd_root(config)
    else:
        _check_segmentation_root(config)


def _check_policy(config: TrainConfig, space: Any) -> None:
    """An adversary's policy network and updater build from ``policy_kwargs`` / ``reinforce_kwargs``
    (a throwaway one on the CPU, the global random state untouched), else the error names the flags."""
    from ..policy.adversaries import is_adversary
    from ..policy.strategies import make_strategy

    if not is_adversary(config.strategy):
        return
    try:
        with torch.random.fork_rng(devices=[]):
            make_strategy(config.strategy, space, in_channels=1 if config.dataset == "istd" else 3,
                          policy_lr=config.policy_lr, policy_kwargs=dict(config.policy_kwargs) or None,
                          reinforce_kwargs=dict(config.reinforce_kwargs) or None)
    except (TypeError, ValueError) as e:
        raise type(e)(
            f"{e} (--policy-kwargs {json.dumps(dict(config.policy_kwargs))} / --reinforce-kwargs "
            f"{json.dumps(dict(config.reinforce_kwargs))}; TrainConfig.policy_kwargs / reinforce_kwargs)"
        ) from None


def _check_model(config: TrainConfig) -> None:
    """A registered model, or a well-formed ``smp:<Arch>:<encoder>`` name (KeyError naming the valid ones)."""
    from ..models import list_models
    from ..models.smp import is_smp_name, parse_smp_name

    if is_smp_name(config.model):
        try:
            parse_smp_name(config.model)
        except KeyError as e:
            raise KeyError(f"{e.args[0]} (--model / TrainConfig.model)") from None
        return
    if config.model not in list_models():
        raise KeyError(
            f"unknown model {config.model!r}; choose one of {list_models()} (--model / TrainConfig.model), "
            f"'smp:<Arch>:<encoder>' for a segmentation-models-pytorch model (e.g. 'smp:Unet:resnet18'), "
            f"or register yours with advcorrupt.models.register_model"
        )


def _check_istd_root(config: TrainConfig) -> None:
    """An ISTD data root: ``images/``, ``masks/`` and ``img_idx/train_<NAME>.txt`` (``None``: synthetic)."""
    if config.data_root is None:
        return
    root = Path(config.data_root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"data_root {root} does not exist; pass the folder holding images/, masks/ and img_idx/ "
            f"(e.g. ../shared/data/NUAA-SIRST), or leave --data-root out to train on synthetic scenes"
        )
    missing = [sub + "/" for sub in ("images", "masks", "img_idx") if not (root / sub).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"data_root {root} lacks the ISTD layout: missing {', '.join(missing)}; expected images/, masks/ "
            f"and img_idx/train_<NAME>.txt + img_idx/test_<NAME>.txt (point --data-root at such a folder)"
        )
    splits = sorted((root / "img_idx").glob("train_*.txt"))
    if config.dataset_name is not None:
        want = root / "img_idx" / f"train_{config.dataset_name}.txt"
        if not want.is_file():
            raise FileNotFoundError(
                f"{want} not found; --dataset-name must be one of "
                f"{[f.stem[len('train_'):] for f in splits]}"
            )
    elif not splits:
        raise FileNotFoundError(f"data_root {root} has no img_idx/train_<NAME>.txt split file")


def _check_segmentation_root(config: TrainConfig) -> None:
    """A CamVid root (SegNet's layout) or a segmentation folder with ``train`` and ``val`` splits."""
    if config.data_root is None:
        example = "../shared/data/CamVid" if config.dataset == "camvid" else "a folder of images/ and masks/"
        raise ValueError(f"dataset={config.dataset!r} needs --data-root (TrainConfig.data_root), e.g. {example}")
    root = Path(config.data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data_root {root} does not exist (--data-root; dataset={config.dataset!r})")
    if config.dataset == "camvid":
        missing = [sub + "/" for sub in _CAMVID_TRAINING if not (root / sub).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"data_root {root} lacks CamVid's SegNet layout: missing {', '.join(missing)}; expected train/, "
                f"trainannot/, val/, valannot/ (and test/, testannot/ for the bench), e.g. ../shared/data/CamVid"
            )
        return
    for split in ("train", "val"):
        if _folder_split(root, split) is None:
            raise FileNotFoundError(
                f"data_root {root} has no {split!r} split: expected {split}/images/ + {split}/masks/, or images/ + "
                f"masks/ with {split}.txt listing the names (dataset='folder')"
            )


def _folder_split(root: Path, split: str) -> tuple[Path, list[str] | None] | None:
    """Where a ``"folder"`` dataset keeps ``split``: ``(folder, None)`` for ``<root>/<split>/images``
    + ``masks``, ``(root, names)`` for ``<root>/<split>.txt`` over ``<root>/images`` + ``masks``;
    ``None`` if neither exists.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "images").mkdir(); (root / "masks").mkdir()
        >>> _ = (root / "val.txt").write_text("a\\nb\\n")
        >>> _folder_split(root, "val") == (root, ["a", "b"]), _folder_split(root, "train")
        (True, None)
    """
    if (root / split / "images").is_dir() and (root / split / "masks").is_dir():
        return root / split, None
    listing = root / f"{split}.txt"
    if listing.is_file() and (root / "images").is_dir() and (root / "masks").is_dir():
        return root, [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return None
