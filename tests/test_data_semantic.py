"""Behaviour of the semantic-segmentation data: SegmentationFolder and CamVid on tiny synthetic folders
(written to tmp_path), their checks and on_bad_file handling, colorize / colors_to_labels, the joint
training transforms, and one read of the real CamVid folder when it is present."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advcorrupt.data import (
    BadFileError,
    CamVid,
    Compose,
    RandomHorizontalFlip,
    RandomScaleCrop,
    SegmentationFolder,
    colorize,
    colors_to_labels,
)
from advcorrupt.data.joint import resize_pair

CAMVID = Path(__file__).resolve().parents[2] / "shared/data/CamVid"
H, W = 20, 30


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _labels(seed: int, num_classes: int = 4) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, num_classes, (H, W), dtype=np.uint8)


def _make_folder(root: Path, names: list[str], *, images: str = "images", masks: str = "masks") -> Path:
    """``names[i]`` gets a random RGB image (seed i) and random labels 0..3 (seed 100 + i)."""
    (root / images).mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(_image(i)).save(root / images / f"{name}.png")
        Image.fromarray(_labels(i)).save(root / masks / f"{name}.png")
    return root


def _make_camvid(root: Path, counts: dict[str, int]) -> Path:
    for split, n in counts.items():
        _make_folder(root, [f"{split}_{i:03d}" for i in range(n)], images=split, masks=f"{split}annot")
    return root


# ---------------------------------------------------------------- items
def test_items_are_float_rgb_in_unit_range_and_int64_labels_equal_to_the_files(tmp_path: Path) -> None:
    ds = SegmentationFolder(_make_folder(tmp_path, ["b", "a", "c"]), num_classes=4)
    assert ds.names == ["a", "b", "c"] and len(ds) == 3 and ds.problems == []
    image, mask = ds[0]  # "a" was written second: seeds 1 / 101
    assert image.dtype == torch.float32 and image.shape == (3, H, W)
    assert mask.dtype == torch.int64 and mask.shape == (H, W)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), _image(1) / 255.0, atol=1e-7)
    np.testing.assert_array_equal(mask.numpy(), _labels(1))
    assert torch.equal(ds[-1][1], torch.from_numpy(_labels(2).astype(np.int64)))
    with pytest.raises(IndexError):
        ds[3]


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "I;16"])
def test_gray_alpha_palette_and_16_bit_images_become_three_channels_in_unit_range(tmp_path: Path, mode: str) -> None:
    _make_folder(tmp_path, ["a"])
    gray = np.linspace(0, 255, H * W).reshape(H, W).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(gray.astype(np.uint16) * 257)  # full 16-bit scale: value / 65535 == gray / 255
    elif mode == "P":
        img = Image.fromarray(gray).convert("P")
    else:
        img = Image.fromarray(gray).convert(mode)
    img.save(tmp_path / "images" / "a.png")
    image, _ = SegmentationFolder(tmp_path, num_classes=4)[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
    np.testing.assert_allclose(image[0].numpy(), gray / 255.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["L", "I;16", "P", "1"])
def test_label_maps_in_8_bit_16_bit_palette_and_bilevel_png_give_their_indices(tmp_path: Path, kind: str) -> None:
    _make_folder(tmp_path, ["a"])
    labels = _labels(0, num_classes=2 if kind == "1" else 4)
    if kind == "I;16":
        labels = labels.astype(np.uint16) * 300  # 0, 300, 600, 900
        img = Image.fromarray(labels)
    elif kind == "P":  # the PASCAL VOC convention: indices are classes, the palette only colours them
        img = Image.fromarray(labels, mode="L").convert("P")
        img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    elif kind == "1":
        img = Image.fromarray(labels.astype(bool))
    else:
        img = Image.fromarray(labels)
    img.save(tmp_path / "masks" / "a.png")
    with Image.open(tmp_path / "masks" / "a.png") as check:
        assert check.mode == kind
    _, mask = SegmentationFolder(tmp_path, num_classes=901)[0]
    np.testing.assert_array_equal(mask.numpy(), labels.astype(np.int64))


def test_a_jpeg_image_pairs_with_a_png_mask_of_the_same_name(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a"])
    (tmp_path / "images" / "a.png").unlink()
    Image.fromarray(_image(0)).save(tmp_path / "images" / "a.jpg", quality=95)
    ds = SegmentationFolder(tmp_path, num_classes=4)
    assert ds.files == [(tmp_path / "images" / "a.jpg", tmp_path / "masks" / "a.png")]
    assert ds[0][0].shape == (3, H, W)


def test_names_select_and_order_samples_and_duplicates_are_reported(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a", "b", "c"])
    ds = SegmentationFolder(tmp_path, num_classes=4, names=["c", "a", "c"])
    assert ds.names == ["c", "a"]
    assert [(p.name, p.kind, p.action) for p in ds.problems] == [("c", "duplicate_name", "first kept")]
    np.testing.assert_array_equal(ds[0][1].numpy(), _labels(2))


def test_other_folder_names_and_the_class_metadata_are_kept(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a"], images="img", masks="ann")
    ds = SegmentationFolder(tmp_path, images="img", masks="ann", num_classes=4, ignore_index=255,
                            class_names=["w", "x", "y", "z"], palette=[(1, 2, 3), (4, 5, 6), (7, 8, 9), (0, 0, 1), (9, 9, 9)])
    assert ds.class_names == ("w", "x", "y", "z") and ds.palette is not None and len(ds.palette) == 5
    assert ds.ignore_index == 255 and ds.num_classes == 4 and len(ds) == 1


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("missing", ["images", "masks"])
def test_a_missing_folder_names_the_argument_and_the_path(tmp_path: Path, missing: str) -> None:
    _make_folder(tmp_path, ["a"])
    (tmp_path / missing / "a.png").unlink()
    (tmp_path / missing).rmdir()
    with pytest.raises(FileNotFoundError, match=rf"{missing} folder not found: {tmp_path / missing} \({missing}='{missing}'"):
        SegmentationFolder(tmp_path, num_classes=4)


def test_an_image_without_a_mask_is_named(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a", "b"])
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"image b.png has no mask: expected {tmp_path / 'masks' / 'b'}.png"):
        SegmentationFolder(tmp_path, num_classes=4)
    with pytest.raises(FileNotFoundError, match=r"image for 'ghost' not found"):
        SegmentationFolder(tmp_path, num_classes=4, names=["a", "ghost"])


def test_a_mask_of_another_size_names_the_file_and_both_sizes(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a", "b"])
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(tmp_path / "masks" / "b.png")
    with pytest.raises(ValueError, match=rf"mask {tmp_path / 'masks' / 'b.png'} is 31x20 \(WxH\) but its image b.png is 30x20"):
        SegmentationFolder(tmp_path, num_classes=4)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_colour_coded_mask_is_refused_with_how_to_convert_it(tmp_path: Path, mode: str) -> None:
    _make_folder(tmp_path, ["a"])
    colour = colorize(_labels(0), CamVid.palette)
    Image.fromarray(colour).convert(mode).save(tmp_path / "masks" / "a.png")
    with pytest.raises(ValueError, match=rf"mask .*a.png has PIL mode '{mode}': masks must be class-index images") as e:
        SegmentationFolder(tmp_path, num_classes=4)
    assert "8-bit 'L' or 16-bit 'I;16'" in str(e.value) and "colors_to_labels" in str(e.value)
    # ... and the advice works: converting it back gives the original labels.
    rgb = np.asarray(Image.open(tmp_path / "masks" / "a.png").convert("RGB"))
    Image.fromarray(colors_to_labels(rgb, CamVid.palette, ignore_index=11).astype(np.uint8)).save(tmp_path / "masks" / "a.png")
    np.testing.assert_array_equal(SegmentationFolder(tmp_path, num_classes=4)[0][1].numpy(), _labels(0))


def test_a_jpeg_mask_is_refused(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a"])
    (tmp_path / "masks" / "a.png").unlink()
    Image.fromarray(_labels(0)).save(tmp_path / "masks" / "a.jpg")
    with pytest.raises(ValueError, match=r"a.jpg is a JPEG: lossy compression changes class indices"):
        SegmentationFolder(tmp_path, num_classes=4)


def test_a_label_out_of_range_is_named_with_its_value_and_first_pixel_when_the_item_is_read(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a", "b"])
    labels = _labels(1)
    labels[7, 12] = 9
    labels[7, 20] = 4
    labels[15, 3] = 9
    Image.fromarray(labels).save(tmp_path / "masks" / "b.png")
    ds = SegmentationFolder(tmp_path, num_classes=4)  # construction reads headers only
    assert ds[0][1].shape == (H, W)
    path = tmp_path / "masks" / "b.png"
    with pytest.raises(ValueError, match=rf"mask {path} has label 9 at pixel \(row 7, col 12\) \(3 pixels out of range, values \[4, 9\]\); labels must be in 0..3 \(num_classes=4"):
        ds[1]


def test_the_ignore_label_is_accepted_and_only_it(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a"])
    labels = _labels(0)
    labels[0, :5] = 255
    Image.fromarray(labels).save(tmp_path / "masks" / "a.png")
    assert int(SegmentationFolder(tmp_path, num_classes=4, ignore_index=255)[0][1][0, 0]) == 255
    with pytest.raises(ValueError, match=r"has label 255 at pixel \(row 0, col 0\).*0..3 or the ignore_index 4"):
        SegmentationFolder(tmp_path, num_classes=4, ignore_index=4)[0]
    with pytest.raises(ValueError, match=r"has label 255 at pixel \(row 0, col 0\).*ignore_index=None"):
        SegmentationFolder(tmp_path, num_classes=4)[0]


def test_two_images_with_one_name_are_refused(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a"])
    Image.fromarray(_image(0)).save(tmp_path / "images" / "a.jpg")
    with pytest.raises(ValueError, match=r"two images share the name 'a': a.jpg and a.png"):
        SegmentationFolder(tmp_path, num_classes=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, r"num_classes must be a positive int .*got 0"),
        ({"num_classes": True}, r"num_classes must be a positive int .*got True"),
        ({"num_classes": 4, "ignore_index": -1}, r"ignore_index must be None or a non-negative int .*got -1"),
        ({"num_classes": 4, "class_names": ["a", "b"]}, r"class_names must be 4 strings .*got \['a', 'b'\]"),
        ({"num_classes": 2, "palette": [(0, 0, 0)]}, r"palette must be at least 2 \(R, G, B\) colours"),
        ({"num_classes": 1, "palette": [(0, 0, 256)]}, r"palette must be at least 1 \(R, G, B\) colours with ints in 0..255"),
        ({"num_classes": 4, "on_bad_file": "ignore"}, r"on_bad_file must be 'error' or 'skip'; got 'ignore'"),
        ({"num_classes": 4, "names": "abc"}, r"names must be a sequence of file names"),
    ],
)
def test_bad_arguments_name_the_argument_the_expectation_and_the_value(tmp_path: Path, kwargs: dict, message: str) -> None:
    _make_folder(tmp_path, ["a"])
    with pytest.raises(ValueError, match=message):
        SegmentationFolder(tmp_path, **kwargs)
    with pytest.raises(TypeError, match=r"transform must be None or a callable .*got int"):
        SegmentationFolder(tmp_path, num_classes=4, transform=3)  # type: ignore[arg-type]


# ---------------------------------------------------------------- damaged files, on_bad_file
def _damage(root: Path, how: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """Damage sample ``b``; return the damaged file and the expected cause (as in tests/test_data.py)."""
    image, mask = root / "images" / "b.png", root / "masks" / "b.png"
    data = image.read_bytes()
    if how == "zero_bytes":
        image.write_bytes(b"")
        return image, "empty \\(0 bytes\\)"
    if how == "truncated_image":
        image.write_bytes(data[: len(data) // 2])
        return image, "truncated or corrupt"
    if how == "flipped_byte_image":  # decodes as a header, fails the PNG chunk checksum
        broken = bytearray(data)
        broken[len(data) // 2] ^= 0xFF
        image.write_bytes(bytes(broken))
        return image, "truncated or corrupt"
    if how == "garbage_image":
        image.write_bytes(bytes(reversed(data)))
        return image, "truncated or corrupt"
    if how == "truncated_mask":
        mask.write_bytes(mask.read_bytes()[:60])
        return mask, "truncated or corrupt"
    if how == "symlink_loop":
        image.unlink()
        image.symlink_to(image.name)
        return image, "symbolic-link loop"
    if how == "unreadable":  # simulated: the suite may run as root
        real_open = Image.open

        def refuse(fp: object, *args: object, **kwargs: object) -> Image.Image:
            if Path(str(fp)) == image:
                raise PermissionError(13, "Permission denied", str(image))
            return real_open(fp, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr("advcorrupt.data.segmentation.Image.open", refuse)
        return image, "permission denied"
    raise AssertionError(how)


BROKEN = ["zero_bytes", "truncated_image", "flipped_byte_image", "garbage_image", "truncated_mask", "symlink_loop", "unreadable"]


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_file_raises_at_construction_naming_the_file_and_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _make_folder(tmp_path, ["a", "b", "c"])
    path, cause = _damage(tmp_path, how, monkeypatch)
    with pytest.raises(BadFileError, match=rf"cannot read {path}: .*{cause}") as e:
        SegmentationFolder(tmp_path, num_classes=4, names=["a", "b", "c"])
    assert e.value.path == path and isinstance(e.value, ValueError)


@pytest.mark.parametrize("how", [*BROKEN, "missing_mask"])
def test_the_skip_policy_drops_broken_or_missing_files_with_a_warning_and_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _make_folder(tmp_path, ["a", "b", "c"])
    if how == "missing_mask":
        (tmp_path / "masks" / "b.png").unlink()
    else:
        _damage(tmp_path, how, monkeypatch)
    with pytest.warns(UserWarning, match=r"skipped 1 sample\(s\) whose image or mask is missing or unreadable: \['b'\]"):
        ds = SegmentationFolder(tmp_path, num_classes=4, on_bad_file="skip")
    assert ds.names == ["a", "c"]
    [problem] = ds.problems
    assert problem.name == "b" and problem.action == "skipped"
    assert problem.kind == ("missing_file" if how == "missing_mask" else "bad_file")
    np.testing.assert_array_equal(ds[1][1].numpy(), _labels(2))


def test_a_file_damaged_after_construction_names_the_file_when_read(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a", "b"])
    ds = SegmentationFolder(tmp_path, num_classes=4)
    mask = tmp_path / "masks" / "b.png"
    mask.write_bytes(mask.read_bytes()[:70])
    assert ds[0][1].shape == (H, W)
    with pytest.raises(BadFileError, match=rf"cannot read {mask}: the file is truncated or corrupt"):
        ds[1]


# ---------------------------------------------------------------- CamVid
def test_camvid_reads_the_segnet_layout_with_its_classes_and_palette(tmp_path: Path) -> None:
    _make_camvid(tmp_path, {"train": 3, "val": 2})
    with pytest.warns(UserWarning, match=r"CamVid 'val' at .* holds 2 image\(s\); SegNet's release has 101"):
        ds = CamVid(tmp_path, "val")
    assert ds.names == ["val_000", "val_001"] and ds.split == "val"
    assert ds.files[0] == (tmp_path / "val" / "val_000.png", tmp_path / "valannot" / "val_000.png")
    image, mask = ds[1]
    assert image.shape == (3, H, W) and image.dtype == torch.float32 and mask.dtype == torch.int64
    np.testing.assert_array_equal(mask.numpy(), _labels(1))
    assert CamVid.num_classes == ds.num_classes == 11 and CamVid.ignore_index == ds.ignore_index == 11
    assert CamVid.class_names == ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                                  "Pedestrian", "Bicyclist")
    assert CamVid.palette[3] == (128, 64, 128) and CamVid.palette[4] == (60, 40, 222) and CamVid.palette[10] == (0, 128, 192)
    assert CamVid.palette[11] == (0, 0, 0) and len(set(CamVid.palette)) == 12
    assert CamVid.split_sizes == {"train": 367, "val": 101, "test": 233}


def test_camvid_with_the_published_count_does_not_warn_and_accepts_void(tmp_path: Path) -> None:
    _make_camvid(tmp_path, {"val": 101})
    labels = _labels(0)
    labels[:2] = 11
    Image.fromarray(labels).save(tmp_path / "valannot" / "val_000.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = CamVid(tmp_path, "val")
    assert len(ds) == 101 and int(ds[0][1][0, 0]) == 11


def test_camvid_refuses_an_unknown_split_listing_the_valid_ones(tmp_path: Path) -> None:
    _make_camvid(tmp_path, {"train": 1})
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train', 'val'\]; got 'validation'"):
        CamVid(tmp_path, "validation")  # type: ignore[arg-type]


def test_camvid_missing_folder_names_the_path_and_the_layout(tmp_path: Path) -> None:
    _make_camvid(tmp_path, {"train": 1})
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'test'} not found: .*SegNet layout \(expected train/, trainannot/"):
        CamVid(tmp_path, "test")
    (tmp_path / "train" / "train_000.png").unlink()
    (tmp_path / "train").rmdir()
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'train'} not found"):
        CamVid(tmp_path, "train")


def test_camvid_on_bad_file_skip_drops_a_broken_pair(tmp_path: Path) -> None:
    _make_camvid(tmp_path, {"test": 3})
    (tmp_path / "testannot" / "test_001.png").write_bytes(b"")
    with pytest.raises(BadFileError, match="test_001.png: the file is empty"):
        CamVid(tmp_path, "test")
    with pytest.warns(UserWarning) as record:
        ds = CamVid(tmp_path, "test", on_bad_file="skip")
    messages = [str(w.message) for w in record]
    assert any("skipped 1 sample(s)" in m and "['test_001']" in m for m in messages)
    assert any("holds 3 image(s); SegNet's release has 233" in m for m in messages)  # skipped pairs count as found
    assert ds.names == ["test_000", "test_002"]


def test_colorize_maps_labels_to_the_palette_and_unknown_labels_to_the_ignore_colour() -> None:
    labels = torch.tensor([[0, 3, 11], [10, 255, -1]])
    rgb = colorize(labels, CamVid.palette)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb.tolist() == [[[128, 128, 128], [128, 64, 128], [0, 0, 0]], [[0, 128, 192], [0, 0, 0], [0, 0, 0]]]
    assert colorize(labels.numpy(), CamVid.palette[:11], ignore_color=(255, 255, 255))[0, 2].tolist() == [255, 255, 255]
    assert colorize(torch.zeros(2, 4, 5, dtype=torch.int64), CamVid.palette).shape == (2, 4, 5, 3)
    with pytest.raises(ValueError, match="mask must hold integer labels; got dtype float32"):
        colorize(torch.zeros(2, 2), CamVid.palette)


def test_colors_to_labels_inverts_colorize_and_marks_unknown_colours() -> None:
    labels = np.random.default_rng(0).integers(0, 11, (12, 17))
    rgb = colorize(labels, CamVid.palette)
    rgb[0, 0] = (1, 2, 3)
    back = colors_to_labels(rgb, CamVid.palette[:11], ignore_index=11)
    assert back.dtype == np.int64 and back[0, 0] == 11
    np.testing.assert_array_equal(back.ravel()[1:], labels.ravel()[1:])
    with pytest.raises(ValueError, match=r"rgb must have shape \(H, W, 3\) or \(H, W, 4\); got \(12, 17\)"):
        colors_to_labels(labels, CamVid.palette, ignore_index=11)


# ---------------------------------------------------------------- joint transforms
def _circle_scene(size: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocky labels 0..7 and an image whose colour is a function of the label: colours on a circle,
    so no mix of several colours (what bilinear resampling makes at edges) equals another one."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 8, (size[0] // 8 + 1, size[1] // 8 + 1), generator=g)
    labels = coarse.repeat_interleave(8, 0).repeat_interleave(8, 1)[: size[0], : size[1]]
    angle = torch.arange(8) * (2 * math.pi / 8)
    colours = torch.stack([0.5 + 0.4 * angle.cos(), 0.5 + 0.4 * angle.sin(), torch.full((8,), 0.9)], 1)  # (8, 3)
    image = colours[labels].permute(2, 0, 1).contiguous()
    return image, labels, colours


def _assert_aligned(image: torch.Tensor, labels: torch.Tensor, colours: torch.Tensor, *, pad_label: int | None = None) -> None:
    """Wherever the image shows a region's exact colour, the label is that region's class."""
    pixels = image.permute(1, 2, 0).reshape(-1, 1, 3)
    match = (pixels - colours).abs().amax(-1) < 1e-5  # (N, 8): pixel shows colour k exactly
    shown = match.any(1)
    padding = labels.reshape(-1) == (pad_label if pad_label is not None else -1)
    assert int(shown.sum()) > 0.4 * int((~padding).sum())  # most pixels are inside a region
    assert torch.equal(match[shown].float().argmax(1), labels.reshape(-1)[shown])
    assert torch.all(pixels[padding] == 0) and not torch.any(shown & padding)


def test_resizing_keeps_labels_aligned_with_the_bilinear_image_at_any_scale() -> None:
    # Labels resampled with "nearest" instead of "nearest-exact" fail this (they shift by up to a pixel).
    for seed in range(3):
        image, labels, colours = _circle_scene((40, 56), seed)
        for out_h in range(9, 80, 7):
            out_image, out_labels = resize_pair(image, labels, (out_h, int(out_h * 1.4)))
            _assert_aligned(out_image, out_labels, colours)


@pytest.mark.parametrize("seed", range(4))
def test_scale_crop_and_flip_keep_labels_aligned_with_the_image(seed: int) -> None:
    image, labels, colours = _circle_scene((40, 56), seed)
    t = Compose([RandomScaleCrop((36, 60), scale=(0.5, 2.0), ignore_index=99), RandomHorizontalFlip()])
    out_image, out_labels = t(image, labels, generator=torch.Generator().manual_seed(seed))
    assert out_image.shape == (3, 36, 60) and out_labels.shape == (36, 60)
    _assert_aligned(out_image, out_labels, colours, pad_label=99)


def test_scale_crop_never_invents_a_label_value_even_for_large_ones() -> None:
    values = torch.tensor([0, 7, 255, 65535, 2**40 + 1])
    g = torch.Generator().manual_seed(0)
    labels = values[torch.randint(0, 5, (23, 31), generator=g)]
    t = RandomScaleCrop((40, 40), scale=(0.3, 3.0), ignore_index=-5)
    for _ in range(20):
        _, out = t(torch.rand(3, 23, 31, generator=g), labels, generator=g)
        assert out.dtype == torch.int64
        assert set(out.unique().tolist()) <= {*values.tolist(), -5}
    small = values[:3][torch.randint(0, 3, (9, 11), generator=g)].to(torch.uint8)
    _, out = resize_pair(torch.rand(1, 9, 11), small, (31, 17))
    assert out.dtype == torch.uint8 and set(out.unique().tolist()) <= {0, 7, 255}


def test_scale_crop_pads_with_fill_and_ignore_index_when_the_scaled_image_is_smaller() -> None:
    image, labels = torch.rand(3, 20, 30), torch.randint(0, 4, (20, 30))
    out_image, out_labels = RandomScaleCrop((32, 48), scale=(0.5, 0.5), ignore_index=11, fill=0.25)(image, labels)
    # 20x30 at scale 0.5 is 10x15, padded bottom/right to 32x48: the crop can only start at (0, 0).
    nearest = torch.nn.functional.interpolate(labels[None, None].double(), size=(10, 15), mode="nearest-exact")[0, 0].long()
    assert torch.equal(out_labels[:10, :15], nearest)
    assert bool((out_labels[10:] == 11).all()) and bool((out_labels[:, 15:] == 11).all())
    assert bool((out_image[:, 10:] == 0.25).all()) and bool((out_image[:, :, 15:] == 0.25).all())
    expected = torch.nn.functional.interpolate(image[None], size=(10, 15), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(out_image[:, :10, :15], expected)


def test_scale_one_crop_is_an_exact_window_of_the_input() -> None:
    image, labels = torch.rand(3, 20, 30), torch.randint(0, 4, (20, 30))
    out_image, out_labels = RandomScaleCrop((8, 9), scale=(1.0, 1.0), ignore_index=11)(image, labels, generator=torch.Generator().manual_seed(1))
    hits = [(y, x) for y in range(13) for x in range(22) if torch.equal(image[:, y : y + 8, x : x + 9], out_image)]
    assert len(hits) == 1
    y, x = hits[0]
    assert torch.equal(labels[y : y + 8, x : x + 9], out_labels)


def test_transforms_replay_with_a_generator_and_with_the_global_seed() -> None:
    image, labels = torch.rand(3, 40, 50), torch.randint(0, 11, (40, 50))
    t = Compose([RandomScaleCrop((24, 32), ignore_index=11), RandomHorizontalFlip()])
    runs = [t(image, labels, generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6, 7, 8)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not all(torch.equal(runs[0][0], r[0]) for r in runs[2:])
    torch.manual_seed(3)
    a = t(image, labels)
    torch.manual_seed(3)
    b = t(image, labels)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_flip_mirrors_both_or_neither() -> None:
    image, labels = torch.rand(3, 4, 5), torch.randint(0, 9, (4, 5))
    out = RandomHorizontalFlip(p=1.0)(image, labels)
    assert torch.equal(out[0], image.flip(-1)) and torch.equal(out[1], labels.flip(-1))
    out = RandomHorizontalFlip(p=0.0)(image, labels)
    assert out[0] is image and out[1] is labels
    g = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(200):
        out_image, out_labels = RandomHorizontalFlip(p=0.5)(image, labels, generator=g)
        flipped = torch.equal(out_image, image.flip(-1))
        assert torch.equal(out_labels, labels.flip(-1) if flipped else labels)
        flips += flipped
    assert 70 < flips < 130


def test_a_batch_shares_one_draw() -> None:
    image, labels = torch.rand(2, 3, 20, 30), torch.randint(0, 4, (2, 20, 30))
    image[1], labels[1] = image[0], labels[0]
    out_image, out_labels = RandomScaleCrop((16, 16), ignore_index=11)(image, labels, generator=torch.Generator().manual_seed(0))
    assert out_image.shape == (2, 3, 16, 16) and out_labels.shape == (2, 16, 16)
    assert torch.equal(out_image[0], out_image[1]) and torch.equal(out_labels[0], out_labels[1])


@pytest.mark.parametrize(
    ("image", "labels", "message"),
    [
        (torch.rand(3, 4, 5), torch.rand(4, 5), r"mask must be an integer tensor of class indices .*got torch.float32"),
        (torch.rand(3, 4, 5), torch.zeros(1, 4, 5, dtype=torch.int64), r"mask must have shape \(4, 5\) to match image \(3, 4, 5\)"),
        (torch.zeros(3, 4, 5, dtype=torch.uint8), torch.zeros(4, 5, dtype=torch.int64), r"image must be a float tensor .*got torch.uint8"),
        (torch.rand(4, 5), torch.zeros(4, 5, dtype=torch.int64), r"image must be a float tensor of shape \(C, H, W\)"),
    ],
)
def test_transforms_refuse_bad_pairs(image: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    for t in (RandomScaleCrop(8, ignore_index=11), RandomHorizontalFlip()):
        with pytest.raises(ValueError, match=message):
            t(image, labels)


def test_transforms_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"size must be a positive int or a pair \(h, w\) .*got \(0, 4\)"):
        RandomScaleCrop((0, 4), ignore_index=11)
    with pytest.raises(ValueError, match=r"scale must be a pair \(low, high\) with 0 < low <= high; got \(2.0, 1.0\)"):
        RandomScaleCrop(8, scale=(2.0, 1.0), ignore_index=11)
    with pytest.raises(ValueError, match=r"ignore_index must be an int .*got None"):
        RandomScaleCrop(8, ignore_index=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]; got 1.5"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(TypeError, match=r"transforms must be callables .*got non-callable \['int'\]"):
        Compose([RandomHorizontalFlip(), 3])  # type: ignore[list-item]


def test_a_dataset_applies_its_joint_transform(tmp_path: Path) -> None:
    _make_folder(tmp_path, ["a", "b"])
    t = Compose([RandomScaleCrop((16, 24), ignore_index=255), RandomHorizontalFlip()])
    ds = SegmentationFolder(tmp_path, num_classes=4, ignore_index=255, transform=t)
    torch.manual_seed(0)
    image, mask = ds[1]
    torch.manual_seed(0)
    again = ds[1]
    assert image.shape == (3, 16, 24) and mask.shape == (16, 24) and mask.dtype == torch.int64
    assert torch.equal(image, again[0]) and torch.equal(mask, again[1])
    assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 255}


# ---------------------------------------------------------------- the real CamVid
@pytest.mark.skipif(not CAMVID.is_dir(), reason="CamVid not found next to the repository")
def test_real_camvid_splits_sizes_shapes_and_labels() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published counts: no warning
        splits = {s: CamVid(CAMVID, s) for s in ("train", "val", "test")}
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 367, "val": 101, "test": 233}
    assert not set(splits["train"].names) & set(splits["test"].names)
    for ds in splits.values():
        for index in (0, len(ds) // 2, len(ds) - 1):
            image, mask = ds[index]
            assert image.shape == (3, 180, 240) and image.dtype == torch.float32
            assert mask.shape == (180, 240) and mask.dtype == torch.int64
            assert 0.0 <= float(image.min()) < float(image.max()) <= 1.0
            assert 0 <= int(mask.min()) and int(mask.max()) <= 11


def test_resizing_keeps_a_0_1_image_inside_0_1_on_one_thread() -> None:
    # torch's one-thread bilinear kernel rounds to 1 + 1 ulp next to saturated 8-bit pixels at these
    # sizes; without the clamp the trainer refuses the crop ("images must hold values in [0, 1]").
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 180, 240, generator=g) * 255).round() / 255
    image[:, :40] = 1.0
    labels = torch.zeros(180, 240, dtype=torch.int64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for h in (110, 140, 155, 165, 175, 305, 345, 350):
            out, _ = resize_pair(image, labels, (h, round(h * 4 / 3)))
            assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0, h
    finally:
        torch.set_num_threads(threads)


def test_the_range_error_shows_a_value_one_ulp_above_1_as_such() -> None:
    from advcorrupt.corruptions import corrupt

    x = torch.full((1, 3, 8, 8), 1.0).nextafter(torch.tensor(2.0))
    with pytest.raises(ValueError, match=r"finite range \[1\.0000001\d*, 1\.0000001\d*\]"):
        corrupt(x, "gaussian_noise", 1)
