"""Behaviour of advcorrupt.data: the ISTD-layout dataset on the real NUAA-SIRST folder and on crafted
defects, training/test views, normalisation, collation and the synthetic scenes."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from advcorrupt.data import (
    DATASET_STATS,
    BadFileError,
    ISTDDataset,
    Normalize,
    SyntheticIRSTD,
    TrainView,
    collate,
    load_image,
    load_mask,
    pad_to_multiple,
)

NUAA = Path(__file__).resolve().parents[2] / "shared/data/NUAA-SIRST"
needs_nuaa = pytest.mark.skipif(not NUAA.is_dir(), reason="NUAA-SIRST not found next to the repository")


def _quiet(*args: object, **kwargs: object) -> ISTDDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ISTDDataset(*args, **kwargs)  # type: ignore[arg-type]


def _first_with_mode(mode: str) -> Path:
    for path in sorted((NUAA / "images").iterdir()):
        with Image.open(path) as im:
            if im.mode == mode:
                return path
    pytest.skip(f"no {mode} image in NUAA-SIRST")


# ---------------------------------------------------------------- real NUAA-SIRST
@needs_nuaa
def test_nuaa_splits_build_with_their_published_sizes_and_no_overlap() -> None:
    train = _quiet(NUAA, "train")
    test = _quiet(NUAA, "test")
    assert train.name == test.name == "NUAA-SIRST"
    assert (len(train), len(test)) == (213, 214)
    assert not set(train.names) & set(test.names)
    image, mask = test[0]
    assert image.dtype == mask.dtype == torch.float32
    assert image.shape[0] == 1 and image.shape == mask.shape
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


@needs_nuaa
def test_nuaa_size_mismatch_of_misc_111_is_resized_warned_and_reported() -> None:
    with pytest.warns(UserWarning, match="Misc_111"):
        test = ISTDDataset(NUAA, "test")
    problems = [p for p in test.problems if p.kind == "size_mismatch"]
    assert [p.name for p in problems] == ["Misc_111"]
    image, mask = test[test.names.index("Misc_111")]
    assert image.shape == mask.shape == (1, 220, 325)
    assert mask.sum() > 0
    # The resized target sits on the image's brightest spot.
    ys, xs = torch.nonzero(mask[0], as_tuple=True)
    peak = torch.nonzero(image[0] == image[0].max())[0]
    assert abs(ys.float().mean() - peak[0]) < 3 and abs(xs.float().mean() - peak[1]) < 3


@needs_nuaa
def test_nuaa_size_mismatch_policies_skip_and_error() -> None:
    with pytest.warns(UserWarning, match="skipped"):
        skipped = ISTDDataset(NUAA, "test", on_mismatch="skip")
    assert len(skipped) == 213 and "Misc_111" not in skipped.names
    with pytest.raises(ValueError, match="Misc_111"):
        ISTDDataset(NUAA, "test", on_mismatch="error")


@needs_nuaa
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_nuaa_images_of_every_mode_become_one_luma_channel(mode: str) -> None:
    path = _first_with_mode(mode)
    got = load_image(path)
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGBA" if mode == "P" else im.mode).convert("RGB"), dtype=np.float64)
        size = im.size
    expected = (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114) / 255.0
    assert got.shape == (size[1], size[0]) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)


@needs_nuaa
def test_nuaa_known_stats_match_a_measurement_over_the_train_split() -> None:
    train = _quiet(NUAA, "train")
    mean, std = train.compute_stats()
    assert (mean, std) == pytest.approx(DATASET_STATS["NUAA-SIRST"], abs=1e-5)
    assert _quiet(NUAA, "test").mean == train.mean


@needs_nuaa
def test_nuaa_training_view_gives_256_patches_and_test_view_native_size() -> None:
    torch.manual_seed(0)
    train = _quiet(NUAA, "train", transform="train")
    for i in range(3):
        image, mask = train[i]
        assert image.shape == mask.shape == (1, 256, 256)
    test = _quiet(NUAA, "test", transform="test")
    image, mask = test[0]
    with Image.open(test._files[0][0]) as im:
        assert image.shape == (1, im.size[1], im.size[0])


@needs_nuaa
def test_training_crops_are_reproducible_under_torch_manual_seed() -> None:
    train = _quiet(NUAA, "train", transform="train")
    torch.manual_seed(3)
    a = [train[i][0] for i in range(3)]
    torch.manual_seed(3)
    b = [train[i][0] for i in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------- crafted defects (tmp_path)
def _make_dataset(root: Path, names: list[str], *, train_text: str | None = None, test_text: str = "") -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "img_idx").mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray((rng.random((20, 30)) * 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
        m = np.zeros((20, 30), np.uint8)
        m[5:7, 5:7] = 255
        Image.fromarray(m).save(root / "masks" / f"{name}.png")
    text = train_text if train_text is not None else "\n".join(names) + "\n"
    (root / "img_idx" / "train_TOY.txt").write_bytes(text.encode())
    (root / "img_idx" / "test_TOY.txt").write_bytes(test_text.encode())


def test_crlf_blank_lines_and_whitespace_in_split_files_are_ignored(tmp_path: Path) -> None:
    _make_dataset(tmp_path, ["a", "b", "c"], train_text="a\r\n\r\n  b \r\nc.png\r\n\r\n")
    ds = ISTDDataset(tmp_path, "train")
    assert ds.names == ["a", "b", "c"]
    assert ds.problems == []


def test_missing_file_named_in_a_split_raises_naming_the_file(tmp_path: Path) -> None:
    _make_dataset(tmp_path, ["a", "b"], train_text="a\nghost\nb\n")
    with pytest.raises(FileNotFoundError, match="ghost"):
        ISTDDataset(tmp_path, "train")
    (tmp_path / "masks" / "b.png").unlink()
    (tmp_path / "img_idx" / "train_TOY.txt").write_text("a\nb\n")
    with pytest.raises(FileNotFoundError, match=r"mask for 'b'"):
        ISTDDataset(tmp_path, "train")


@needs_nuaa
def test_missing_file_in_a_copy_of_real_files_raises(tmp_path: Path) -> None:
    for sub in ("images", "masks", "img_idx"):
        (tmp_path / sub).mkdir()
    for name in ("Misc_1", "Misc_10"):
        shutil.copy(NUAA / "images" / f"{name}.png", tmp_path / "images")
        shutil.copy(NUAA / "masks" / f"{name}.png", tmp_path / "masks")
    (tmp_path / "img_idx" / "test_NUAA-SIRST.txt").write_text("Misc_1\r\nMisc_10\r\nMisc_2\r\n")
    with pytest.raises(FileNotFoundError, match="Misc_2"):
        ISTDDataset(tmp_path, "test")
    (tmp_path / "img_idx" / "test_NUAA-SIRST.txt").write_text("Misc_1\r\nMisc_10\r\n")
    assert len(ISTDDataset(tmp_path, "test")) == 2


def _damage(root: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """Damage sample ``b`` of a toy dataset; return the damaged file and the expected cause."""
    image, mask = root / "images" / "b.png", root / "masks" / "b.png"
    data = image.read_bytes()
    if how == "zero_bytes":
        image.write_bytes(b"")
        return image, "empty \\(0 bytes\\)"
    if how == "truncated_image":
        image.write_bytes(data[: len(data) // 2])
        return image, "truncated or corrupt"
    if how == "garbage_image":
        image.write_bytes(bytes(reversed(data)))
        return image, "truncated or corrupt"
    if how == "truncated_mask":
        mask.write_bytes(mask.read_bytes()[:60])
        return mask, "truncated or corrupt"
    if how == "symlink_loop":
        image.unlink()
        image.symlink_to(image.name)  # b.png -> b.png
        return image, "symbolic-link loop"
    if how == "unreadable":
        # Simulated: this suite may run as root, who reads any file whatever its mode.
        real_open = Image.open

        def refuse(fp: object, *args: object, **kwargs: object) -> Image.Image:
            if Path(str(fp)) == image:
                raise PermissionError(13, "Permission denied", str(image))
            return real_open(fp, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr("advcorrupt.data.istd.Image.open", refuse)
        return image, "permission denied"
    raise AssertionError(how)


BROKEN = ["zero_bytes", "truncated_image", "garbage_image", "truncated_mask", "symlink_loop", "unreadable"]


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_file_raises_naming_the_file_and_the_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    _make_dataset(tmp_path, ["a", "b", "c"])
    path, cause = _damage(tmp_path, how, monkeypatch)
    with pytest.raises(BadFileError, match=rf"cannot read {path}: .*{cause}") as e:
        ISTDDataset(tmp_path, "train")
    assert e.value.path == path and isinstance(e.value, ValueError)


@pytest.mark.parametrize("how", [*BROKEN, "missing_in_split"])
def test_the_skip_policy_drops_broken_or_missing_files_with_a_warning_and_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "missing_in_split":
        _make_dataset(tmp_path, ["a", "c"], train_text="a\nb\nc\n")
    else:
        _make_dataset(tmp_path, ["a", "b", "c"])
        _damage(tmp_path, how, monkeypatch)
    with pytest.warns(UserWarning, match=r"skipped 1 sample\(s\) whose image or mask is missing or unreadable: \['b'\]"):
        ds = ISTDDataset(tmp_path, "train", on_bad_file="skip")
    assert ds.names == ["a", "c"] and len(ds) == 2
    [problem] = [p for p in ds.problems if p.name == "b"]
    assert problem.kind == ("missing_file" if how == "missing_in_split" else "bad_file") and problem.action == "skipped"
    image, mask = ds[1]
    assert image.shape == mask.shape == (1, 20, 30) and 0 <= float(image.min()) <= float(image.max()) <= 1


def test_a_file_damaged_after_the_dataset_was_built_names_the_file_when_read(tmp_path: Path) -> None:
    _make_dataset(tmp_path, ["a", "b"])
    ds = ISTDDataset(tmp_path, "train")
    image = tmp_path / "images" / "b.png"
    image.write_bytes(image.read_bytes()[:40])
    assert ds[0][0].shape == (1, 20, 30)
    with pytest.raises(BadFileError, match=rf"cannot read {image}: the file is truncated or corrupt"):
        ds[1]
    with pytest.raises(ValueError, match="on_bad_file"):
        ISTDDataset(tmp_path, "train", on_bad_file="ignore")  # type: ignore[arg-type]


def test_mask_defects_are_binarised_and_reported(tmp_path: Path) -> None:
    _make_dataset(tmp_path, ["gray", "rgb", "empty", "bits16", "dup", "shared"], test_text="shared\n")
    gray = np.zeros((20, 30), np.uint8)
    gray[2, 2:6] = [100, 127, 128, 255]  # anti-aliased edge
    Image.fromarray(gray).save(tmp_path / "masks" / "gray.png")
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[4, 4] = (255, 0, 0)  # red target: luma 76 would lose it; "any channel" keeps it
    Image.fromarray(rgb).save(tmp_path / "masks" / "rgb.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "masks" / "empty.png")
    m16 = np.zeros((20, 30), np.uint16)
    m16[3, 3], m16[3, 4] = 65535, 20000
    Image.fromarray(m16).save(tmp_path / "masks" / "bits16.png")
    (tmp_path / "img_idx" / "train_TOY.txt").write_text("gray\nrgb\nempty\nbits16\ndup\ndup\nshared\n")
    ds = ISTDDataset(tmp_path, "train")
    kinds = {(p.name, p.kind) for p in ds.problems}
    assert {("gray", "nonbinary_mask"), ("rgb", "mask_channels"), ("empty", "empty_mask"),
            ("bits16", "nonbinary_mask"), ("dup", "duplicate_name"), ("shared", "in_both_splits")} <= kinds
    assert ds.names.count("dup") == 1
    assert load_mask(tmp_path / "masks" / "gray.png")[2, 2:6].tolist() == [False, False, True, True]
    assert ds[ds.names.index("rgb")][1][0, 4, 4] == 1.0
    assert ds[ds.names.index("bits16")][1][0, 3, 3:5].tolist() == [1.0, 0.0]


def test_sixteen_bit_and_rgba_images_load_in_unit_range(tmp_path: Path) -> None:
    img16 = np.full((4, 5), 32768, np.uint16)
    Image.fromarray(img16).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png") == pytest.approx(np.full((4, 5), 32768 / 65535))
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 200, 0  # fully transparent: alpha is dropped, not composited
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    assert load_image(tmp_path / "b.png") == pytest.approx(np.full((4, 5), 0.587 * 200 / 255), abs=1e-6)


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    _make_dataset(tmp_path, ["a"])
    with pytest.raises(ValueError, match="split"):
        ISTDDataset(tmp_path, "val")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_mismatch"):
        ISTDDataset(tmp_path, on_mismatch="crop")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="images/"):
        ISTDDataset(tmp_path / "images")
    (tmp_path / "img_idx" / "train_OTHER.txt").write_text("a\n")
    with pytest.raises(ValueError, match="name="):
        ISTDDataset(tmp_path, "train")
    assert len(ISTDDataset(tmp_path, "train", name="TOY")) == 1


# ---------------------------------------------------------------- views, normalisation, collation
def test_training_view_pads_small_images_to_the_patch() -> None:
    out = TrainView(64)(image=np.ones((40, 50), np.float32), mask=np.zeros((40, 50), np.uint8), rng=np.random.default_rng(0))
    assert out["image"].shape == out["mask"].shape == (64, 64)
    assert out["image"].sum() == 40 * 50  # zero padding, nothing lost


@pytest.mark.parametrize(("target_prob", "min_hits", "max_hits"), [(1.0, 40, 40), (0.0, 0, 20)])
def test_training_crop_is_biased_towards_targets(target_prob: float, min_hits: int, max_hits: int) -> None:
    image = np.random.default_rng(0).random((600, 600)).astype(np.float32)
    mask = np.zeros((600, 600), np.uint8)
    mask[450, 120] = 1
    view = TrainView(64, target_prob=target_prob)
    rng = np.random.default_rng(1)
    hits = sum(int(view(image=image, mask=mask, rng=rng)["mask"].sum()) for _ in range(40))
    assert min_hits <= hits <= max_hits


def test_training_view_flips_keep_image_and_mask_aligned() -> None:
    image = np.zeros((64, 64), np.float32)
    mask = np.zeros((64, 64), np.uint8)
    image[10, 50], mask[10, 50] = 1.0, 1
    view = TrainView(64, target_prob=0.0)
    rng = np.random.default_rng(0)
    positions = set()
    for _ in range(30):
        out = view(image=image, mask=mask, rng=rng)
        assert np.array_equal(out["image"] > 0, out["mask"] > 0)
        positions.add(tuple(np.argwhere(out["mask"])[0]))
    assert len(positions) > 2  # flips/transposes actually happen


def test_normalize_uses_scalar_or_per_channel_stats_on_the_inputs_device_and_dtype() -> None:
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    out = Normalize((0.1, 0.2, 0.3), (0.5, 0.5, 0.25))(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out[:, 2], (x[:, 2] - 0.3) / 0.25)
    torch.testing.assert_close(Normalize(0.4, 0.2)(x), (x - 0.4) / 0.2)
    with pytest.raises(ValueError, match="std"):
        Normalize(0.4, 0.0)
    with pytest.raises(TypeError, match="floating"):
        Normalize(0.4, 0.2)(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


def test_collate_stacks_equal_sizes_and_lists_different_ones() -> None:
    same = collate([(torch.zeros(1, 4, 5), torch.zeros(1, 4, 5))] * 3)
    assert isinstance(same[0], torch.Tensor) and same[0].shape == (3, 1, 4, 5)
    mixed = collate([(torch.zeros(1, 4, 5), torch.zeros(1, 4, 5)), (torch.zeros(1, 7, 5), torch.zeros(1, 7, 5))])
    assert isinstance(mixed[0], list) and [t.shape[1] for t in mixed[0]] == [4, 7]


def test_pad_to_multiple_pads_bottom_right_and_reports_the_size() -> None:
    x = torch.rand(1, 1, 220, 325)
    y, (h, w) = pad_to_multiple(x, 32)
    assert y.shape[-2:] == (224, 352) and (h, w) == (220, 325)
    assert torch.equal(y[..., :h, :w], x) and y[..., h:, :].abs().sum() == 0


# ---------------------------------------------------------------- synthetic scenes
def test_synthetic_items_are_reproducible_per_seed_and_index_in_any_order() -> None:
    a = SyntheticIRSTD(10, 48, seed=7)
    b = SyntheticIRSTD(10, 48, seed=7)
    for i in (9, 2, 5):
        xa, ma = a[i]
        xb, mb = b[i]
        assert torch.equal(xa, xb) and torch.equal(ma, mb)
    assert torch.equal(a[-1][0], a[9][0])
    assert not torch.equal(a[2][0], a[3][0])
    assert not torch.equal(a[2][0], SyntheticIRSTD(10, 48, seed=8)[2][0])


def test_synthetic_images_masks_ranges_and_target_count() -> None:
    ds = SyntheticIRSTD(24, (64, 96), seed=0)
    assert len(ds) == 24 and ds.names[5] == "synthetic_0_5"
    for i in range(len(ds)):
        image, mask = ds[i]
        assert image.shape == mask.shape == (1, 64, 96)
        assert image.dtype == mask.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        _, n = ndimage.label(mask[0].numpy() > 0, structure=np.ones((3, 3)))
        assert 1 <= n <= 3  # 1-3 targets (touching ones may merge)
        assert mask.sum() <= 3 * 81  # each at most 9x9 px


def test_synthetic_targets_are_brighter_than_their_surroundings() -> None:
    ds = SyntheticIRSTD(16, 64, seed=3, distractors=False)
    contrasts = []
    for i in range(len(ds)):
        image, mask = ds[i]
        m = mask[0].bool()
        ring = torch.from_numpy(ndimage.binary_dilation(m.numpy(), iterations=4)) & ~m
        contrasts.append(float(image[0][m].mean() - image[0][ring].mean()))
    assert np.median(contrasts) > 0.02


def test_synthetic_dataloader_workers_agree_with_direct_indexing() -> None:
    ds = SyntheticIRSTD(4, 32, seed=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batches = torch.cat([x for x, _ in loader])
    assert torch.equal(batches, torch.stack([ds[i][0] for i in range(4)]))


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must"):
        SyntheticIRSTD(-1)
    with pytest.raises(TypeError, match="size"):
        SyntheticIRSTD(2, "big")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scr"):
        SyntheticIRSTD(2, scr=(5.0, 1.0))
    with pytest.raises(IndexError):
        SyntheticIRSTD(2, 32)[2]


# ---------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_normalize_runs_on_the_batch_device_without_moving_the_module() -> None:
    x = torch.rand(2, 1, 8, 8, device="cuda", dtype=torch.float16)
    for norm in (Normalize(0.4, 0.2), Normalize((0.4,), (0.2,))):
        out = norm(x)
        assert out.device == x.device and out.dtype == torch.float16
        torch.testing.assert_close(out.float(), ((x.float() - 0.4) / 0.2), atol=1e-2, rtol=1e-2)


def test_train_cli_stops_on_a_broken_file_or_skips_it_with_on_bad_file_skip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from advcorrupt.cli import main

    root = tmp_path / "data"
    names = [f"s{i}" for i in range(6)]
    _make_dataset(root, names, test_text="s4\ns5\n")
    (root / "images" / "s1.png").write_bytes((root / "images" / "s1.png").read_bytes()[:40])  # truncated
    args = ["train", "--model", "acm", "--data-root", str(root), "--strategy", "random", "--epochs", "1",
            "--steps-per-epoch", "1", "--batch-size", "2", "--patch-size", "16", "--device", "cpu", "--no-progress"]
    assert main([*args, "--out-dir", str(tmp_path / "a")]) == 2
    assert "s1.png" in capsys.readouterr().err and not (tmp_path / "a").exists()
    with pytest.warns(UserWarning, match="s1"):
        assert main([*args, "--out-dir", str(tmp_path / "b"), "--on-bad-file", "skip"]) == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["on_bad_file"] == "skip"
