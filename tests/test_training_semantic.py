"""``advcorrupt train`` / ``bench`` on multi-class segmentation (issue 21, items 1, 4 and 5).

Every run here is tiny: a CamVid-layout folder of a few 32x48 RGB scenes written to ``tmp_path``
(labels 0-10 and the void label 11), an smp Unet with a small timm encoder cut to three stages
(``smp:Unet:tu-resnet10t``, ~0.4 M parameters, random initialisation), two steps per epoch. The
real CamVid is read by one test only, to check the configuration and the datasets it builds.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from advcorrupt.checkpoint import list_checkpoints, load_checkpoint
from advcorrupt.cli import main
from advcorrupt.training import (
    TrainConfig,
    build_datasets,
    check_config,
    is_collapsed,
    load_model,
    run_task,
)

# The tiny CamVid copies here are not SegNet's 367 / 101 / 233 images: CamVid warns, as it should.
pytestmark = pytest.mark.filterwarnings("ignore:CamVid .* SegNet's release has:UserWarning")

REAL_CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "CamVid"
MODEL = "smp:Unet:tu-resnet10t"
MODEL_KWARGS = {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}
SMALL_POLICY = {"input_size": 32, "widths": [4, 4, 8, 8, 8]}
SPLITS = {"train": 4, "val": 2, "test": 2}
H, W = 32, 48


def write_scenes(folder: Path, masks: Path, n: int, *, seed: int, rgb_masks: bool = False) -> None:
    """``n`` random RGB scenes with class-index masks (0-10, a band of road, some void = 11)."""
    folder.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        labels = rng.integers(0, 12, (H, W)).astype(np.uint8)
        labels[: H // 2] = 3
        image = (rng.random((H, W, 3)) * 255).astype(np.uint8)
        image[: H // 2] = (128, 64, 128)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
        mask = np.stack([labels * 20] * 3, axis=-1) if rgb_masks else labels
        Image.fromarray(mask).save(masks / f"{i:03d}.png")


def write_camvid(root: Path) -> Path:
    """A CamVid folder in SegNet's layout (train/, trainannot/, val/, ...), SPLITS sized."""
    for k, (split, n) in enumerate(SPLITS.items()):
        write_scenes(root / split, root / f"{split}annot", n, seed=k)
    return root


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_camvid(tmp_path_factory.mktemp("data") / "CamVid")


def train_args(out: Path, data: Path, *extra: str, **overrides: Any) -> list[str]:
    options = {
        "--model": MODEL, "--model-kwargs": json.dumps(MODEL_KWARGS), "--dataset": "camvid", "--data-root": str(data),
        "--crop-size": f"{H} {W}", "--batch-size": 2, "--epochs": 2, "--corruptions": "gaussian_noise,brightness",
        "--severities": "1,2", "--policy-kwargs": json.dumps(SMALL_POLICY), "--device": "cpu",
        "--checkpoint-every": 1, "--keep-last": 10, "--out-dir": str(out), **overrides,
    }
    args = ["train"]
    for key, value in options.items():
        args += [key, *str(value).split(" ")] if key == "--crop-size" else [key, str(value)]
    return [*args, "--no-progress", *extra]


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(camvid: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Path:
    out = tmp_path_factory.mktemp("runs") / "reference"
    assert main(train_args(out, camvid)) == 0
    return out


# --------------------------------------------------------------------------------------- training
def test_train_on_camvid_records_the_task_logs_miou_and_checkpoints(trained: Path) -> None:
    config = json.loads((trained / "config.json").read_text())
    assert config["dataset"] == "camvid" and config["model"] == MODEL and config["crop_size"] == [H, W]
    assert config["task"] is None and config["num_classes"] is None  # "the dataset's": resolved below
    epochs = rows(trained / "metrics.jsonl")
    assert [r["epoch"] for r in epochs] == [0, 1]
    for row in epochs:
        assert {"val_mIoU", "val_aAcc", "val_mAcc"} <= set(row) and "val_iou" not in row
        assert len(row["val_IoU"]) == 11 and 0.0 <= row["val_mIoU"] <= 1.0
        assert row["collapsed"] == is_collapsed({"mIoU": row["val_mIoU"], "IoU": row["val_IoU"]})
    assert [s["step"] for s in rows(trained / "steps.jsonl")] == [0, 1, 2, 3]
    last = load_checkpoint(list_checkpoints(trained)[-1])
    assert last["trainer"]["task"] == {"name": "semantic", "num_classes": 11, "ignore_index": 11, "class_weights": None}
    assert last["normalize"] == {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    model, cfg, _ = load_model(list_checkpoints(trained)[-1])
    assert run_task(cfg) == run_task(TrainConfig(dataset="camvid"))
    assert model(torch.rand(1, 3, H, W)).shape == (1, 11, H, W)


@pytest.mark.parametrize("keep", ["ckpt_00000003.pt", "ckpt_00000002.pt"], ids=["mid-epoch", "epoch-boundary"])
def test_resume_replays_the_uninterrupted_run_exactly(trained: Path, tmp_path: Path, camvid: Path, keep: str) -> None:
    interrupted = tmp_path / "interrupted"
    shutil.copytree(trained, interrupted)
    for path in list_checkpoints(interrupted):
        if path.name > keep:
            path.unlink()
    kept = {p.name: p.read_bytes() for p in list_checkpoints(interrupted)}
    assert main(train_args(interrupted, camvid, "--resume")) == 0
    # It continued from the kept checkpoints (a fresh start would have rewritten them).
    assert all((interrupted / name).read_bytes() == data for name, data in kept.items())
    assert rows(interrupted / "steps.jsonl") == rows(trained / "steps.jsonl")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time_s"} for r in rs]
    assert strip(rows(interrupted / "metrics.jsonl")) == strip(rows(trained / "metrics.jsonl"))
    ref, got = (load_checkpoint(list_checkpoints(d)[-1]) for d in (trained, interrupted))
    assert ref["global_step"] == got["global_step"] == 4
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), key
    policy = ref["trainer"]["strategy_state"]["policy"]
    assert all(torch.equal(v, got["trainer"]["strategy_state"]["policy"][k]) for k, v in policy.items())


def test_resume_refuses_another_dataset_or_crop(trained: Path, tmp_path: Path, camvid: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    assert main(train_args(copy, camvid, "--resume", **{"--crop-size": "32 32"})) == 2
    assert "crop_size=[32, 48] (this run: [32, 32])" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ bench
def test_bench_on_a_semantic_run_writes_the_semantic_report_of_the_test_split(trained: Path) -> None:
    from advcorrupt.bench import SemanticRobustnessReport, evaluate
    from advcorrupt.data import CamVid, Normalize

    out = trained.parent / "bench_out"
    args = ["bench", "--checkpoint", str(trained), "--corruptions", "brightness", "--severities", "1", "--out", str(out),
            "--no-progress"]
    assert main(args) == 0
    report = SemanticRobustnessReport.from_json(out / "robustness.json")
    assert report.num_classes == 11 and report.class_names[0] == "Sky" and report.dataset_name == "CamVid (test)"
    assert {p.name for p in out.iterdir()} >= {"robustness.md", "robustness.csv", "robustness_miou.png",
                                              "robustness_class_iou_drop.png"}
    # The clean score is the test split's, normalised as the model was trained.
    model, _, _ = load_model(list_checkpoints(trained)[-1])
    with pytest.warns(UserWarning, match="SegNet's release has 233"):
        test = CamVid(_data_root(trained), "test")
    clean = evaluate(model, test, preprocess=Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    assert report.clean["mIoU"] == pytest.approx(clean["mIoU"], abs=1e-12)
    assert "Per-class IoU" in (out / "robustness.md").read_text()


def _data_root(run: Path) -> Path:
    return Path(json.loads((run / "config.json").read_text())["data_root"])


def test_bench_takes_dataset_split_and_task_options(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["bench", "--checkpoint", str(trained), "--corruptions", "brightness", "--severities", "1", "--no-progress"]
    out = trained.parent / "bench_val"
    assert main([*common, "--dataset", "camvid", "--split", "val", "--num-classes", "11", "--out", str(out)]) == 0
    assert json.loads((out / "robustness.json").read_text())["dataset_name"] == "CamVid (val)"
    assert main([*common, "--task", "binary", "--out", str(trained.parent / "never")]) == 2
    assert "its task is 'semantic'; got task='binary'" in capsys.readouterr().err
    assert main([*common, "--num-classes", "5", "--out", str(trained.parent / "never")]) == 2
    assert "CamVid has 11 classes" in capsys.readouterr().err
    assert not (trained.parent / "never").exists()


# ------------------------------------------------------------------------------------- bad input
def _folder_with_rgb_masks(tmp_path: Path) -> Path:
    root = tmp_path / "rgb"
    for k, split in enumerate(("train", "val")):
        write_scenes(root / split / "images", root / split / "masks", 2, seed=k, rgb_masks=True)
    return root


@pytest.mark.parametrize(
    "case, message",
    [
        ("pretrained", r"encoder_weights='imagenet', but they are not in the local cache and cannot be downloaded"),
        ("rgb_masks", r"PIL mode 'RGB': masks must be class-index images.*colors_to_labels"),
        ("classes", r"num_classes = 11 disagrees with the model's output channels.*K = 5"),
        ("bce", r"bce_weight / bce_pos_weight are knobs of the binary Soft-IoU \+ BCE loss"),
        ("binary_camvid", r"dataset='camvid' holds class-index masks: its task is 'semantic'"),
        ("folder_without_k", r"dataset='folder' needs num_classes"),
        ("no_root", r"dataset='camvid' needs --data-root"),
        ("bad_crop", r"crop_size must be \(h, w\), two ints >= 1"),
    ],
)
def test_bad_input_fails_before_training_with_a_clear_error_and_no_run_folder(
    case: str, message: str, camvid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "run"
    kwargs = dict(MODEL_KWARGS)
    overrides: dict[str, Any] = {}
    extra: list[str] = []
    if case == "pretrained":  # as on a machine without network: offline, nothing cached
        from huggingface_hub import constants

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
        overrides["--model"] = "smp:Unet:resnet18"
        kwargs = {"encoder_weights": "imagenet"}
    elif case == "rgb_masks":
        overrides.update({"--dataset": "folder", "--data-root": str(_folder_with_rgb_masks(tmp_path)),
                          "--num-classes": 11})
    elif case == "classes":
        kwargs["classes"] = 5
    elif case == "bce":
        extra = ["--bce-weight", "1"]
    elif case == "binary_camvid":
        extra = ["--task", "binary"]
    elif case == "folder_without_k":
        overrides["--dataset"] = "folder"
    elif case == "no_root":
        args = [a for a in train_args(out, camvid) if a != "--data-root" and a != str(camvid)]
    elif case == "bad_crop":
        overrides["--crop-size"] = "0 48"
    overrides["--model-kwargs"] = json.dumps(kwargs)
    if case != "no_root":
        args = train_args(out, camvid, *extra, **overrides)
    assert main(args) == 2
    assert re.search(message, capsys.readouterr().err, re.DOTALL)
    assert not out.exists(), "nothing may be written before the configuration is valid"


def test_a_bad_crop_for_the_model_is_refused_before_the_run_folder(camvid: Path, tmp_path: Path) -> None:
    from advcorrupt.training import fit

    out = tmp_path / "run"
    config = TrainConfig(model="smp:FPN:tu-resnet10t", model_kwargs={"decoder_segmentation_channels": 32, "decoder_pyramid_channels": 32},
                         dataset="camvid", data_root=str(camvid), crop_size=(30, 40), out_dir=str(out))
    with pytest.raises(ValueError, match=r"cannot run on 30x40 training crops \(--crop-size"):
        fit(config, progress=False)
    assert not out.exists()


# -------------------------------------------------------------------------------- configuration
def test_folder_dataset_reads_split_subfolders_and_split_files(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    for k, split in enumerate(("train", "val")):
        write_scenes(sub / split / "images", sub / split / "masks", 2, seed=k)
    flat = tmp_path / "flat"
    write_scenes(flat / "images", flat / "masks", 4, seed=0)
    (flat / "train.txt").write_text("000\n001\n002\n")
    (flat / "val.txt").write_text("003\n")
    for root, sizes in ((sub, (2, 2)), (flat, (3, 1))):
        config = TrainConfig(dataset="folder", data_root=str(root), num_classes=12, crop_size=(16, 24))
        check_config(config)
        train, val, _ = build_datasets(config)
        assert (len(train), len(val)) == sizes
        image, mask = train[0]
        assert image.shape == (3, 16, 24) and mask.shape == (16, 24) and mask.dtype == torch.int64
        assert int(mask.max()) <= 12  # 12 = K: only where the crop padded a downscaled scene
    # No ignore label: K pads the crops, and the task ignores it.
    assert run_task(TrainConfig(dataset="folder", num_classes=11)).ignore_index == 11  # type: ignore[attr-defined]
    with pytest.raises(FileNotFoundError, match=r"no 'train' split: expected train/images/ \+ train/masks/, or images/"):
        check_config(TrainConfig(dataset="folder", data_root=str(flat / "images"), num_classes=11))


def test_old_configs_read_as_the_same_istd_recipe() -> None:
    old = {k: v for k, v in TrainConfig().to_dict().items()
           if k not in ("dataset", "task", "num_classes", "ignore_index", "crop_size")}
    assert TrainConfig.from_dict(old) == TrainConfig()
    assert run_task(TrainConfig.from_dict(old)).name == "binary"
    with pytest.raises(ValueError, match="dataset='istd' holds binary target masks"):
        check_config(TrainConfig(num_classes=3))


def test_a_run_without_a_strategy_uses_its_tasks_default_and_records_it(camvid: Path, tmp_path: Path) -> None:
    from advcorrupt.cli import build_parser
    from advcorrupt.cli.train import config_from_args

    assert TrainConfig().strategy == "random@1-5"  # binary: the best one-line schedule (issue 20)
    assert TrainConfig(dataset="camvid").strategy == "curriculum@1-3"  # semantic: measured best on CamVid
    assert TrainConfig(dataset="camvid", policy_kwargs=SMALL_POLICY).strategy == "learned"  # asks for a policy
    assert TrainConfig(dataset="camvid", strategy="learned").strategy == "learned"
    args = train_args(tmp_path / "run", camvid)
    args = args[:args.index("--policy-kwargs")] + args[args.index("--policy-kwargs") + 2:]
    config = config_from_args(build_parser().parse_args(args))
    assert config.strategy == "curriculum@1-3" and TrainConfig.from_dict(config.to_dict()) == config  # type: ignore[attr-defined]


def test_smp_names_build_any_architecture_and_refuse_bad_ones() -> None:
    from advcorrupt.models import create_model

    net = create_model("smp:FPN:tu-resnet10t", in_channels=3, num_classes=4, decoder_segmentation_channels=32,
                       decoder_pyramid_channels=32)
    assert net.eval()(torch.rand(2, 3, 64, 64)).shape == (2, 4, 64, 64)
    with pytest.raises(KeyError, match=r"unknown smp architecture 'Unett'.*'Unet'"):
        create_model("smp:Unett:resnet18")
    with pytest.raises(KeyError, match=r"an smp model name is 'smp:<Arch>:<encoder>'"):
        create_model("smp:Unet")
    with pytest.raises(ValueError, match=r"classes and num_classes are the same thing"):
        create_model("smp:Unet:resnet18", classes=3, num_classes=4)
    with pytest.raises(KeyError, match=r"unknown smp encoder 'nope' in 'smp:Unet:nope'.*--model"):
        check_config(TrainConfig(model="smp:Unet:nope", dataset="camvid", data_root="x"))


def test_local_encoder_weights_load_and_load_model_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from advcorrupt.checkpoint import save_checkpoint
    from advcorrupt.models import create_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    source = create_model(MODEL, in_channels=3, num_classes=11, **MODEL_KWARGS)
    weights = tmp_path / "encoder.pth"
    torch.save(source.encoder.state_dict(), weights)  # type: ignore[union-attr]
    loaded = create_model(MODEL, in_channels=3, num_classes=11, encoder_weights=str(weights), **MODEL_KWARGS)
    for k, v in source.encoder.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(v, loaded.encoder.state_dict()[k])  # type: ignore[union-attr]
    # A run configured with pretrained weights: its checkpoint reloads offline (weights come from the file).
    config = TrainConfig(model=MODEL, model_kwargs={**MODEL_KWARGS, "encoder_weights": "imagenet"}, dataset="camvid")
    path = save_checkpoint({"config": config.to_dict(), "model": source.state_dict()}, tmp_path / "ckpt_00000001.pt")
    model, _, _ = load_model(path)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in source.state_dict().items())


@pytest.mark.skipif(not (REAL_CAMVID / "trainannot").is_dir(), reason=f"CamVid not found at {REAL_CAMVID}")
def test_real_camvid_configures_and_builds_its_splits() -> None:
    config = TrainConfig(model="smp:Unet:resnet18", dataset="camvid", data_root=str(REAL_CAMVID))
    check_config(config)
    train, val, preprocess = build_datasets(config)
    _, test, _ = build_datasets(config, split="test")
    assert (len(train), len(val), len(test)) == (367, 101, 233)
    image, mask = train[0]
    assert image.shape == (3, 160, 224) and mask.shape == (160, 224) and mask.dtype == torch.int64
    assert int(mask.max()) <= 11 and val[0][0].shape == (3, 180, 240)
    assert preprocess.mean == (0.485, 0.456, 0.406)

