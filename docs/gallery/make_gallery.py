"""Regenerate the images of the documentation's gallery (docs/gallery/index.md).

Every image is drawn by the library's own functions, from inputs kept in the repository:

- the corruption grids: :func:`advcorrupt.corruptions.preview.preview_grid` on a crop of the
  built-in synthetic infrared scene (1 channel) and on the photograph matplotlib ships as sample
  data (3 channels);
- the robustness heatmap: ``RobustnessReport.plot_heatmap`` of a recorded benchmark report
  (``results/``, read only);
- the policy's shares: :func:`advcorrupt.training.grid_report.plot_policy_shares` (what
  ``examples/istd_dnanet.py`` draws) on the recorded action counts of the default adversary's five
  recipe-3 runs.

The PNGs are then reduced to 8-bit gray or a 256-colour palette, which keeps the gallery to a few
hundred KB. Run from anywhere (about 10 s on a CPU)::

    python docs/gallery/make_gallery.py            # writes docs/img/gallery/*.png
    python docs/gallery/make_gallery.py --out DIR  # somewhere else
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from advcorrupt.benchmark import RobustnessReport
from advcorrupt.corruptions.preview import preview_grid
from advcorrupt.data import SyntheticIRSTD
from advcorrupt.training.grid_report import plot_policy_shares

REPO = Path(__file__).resolve().parents[2]
RUNS = REPO / "results" / "nuaa_quick_grid_recipe3" / "banded"
HEATMAP_REPORT = RUNS / "seed0" / "bench" / "robustness.json"
SHARES_SEEDS = (0, 1, 2, 3, 4)
SEVERITIES = (1, 3, 5)
IMAGES = ("corruptions_1ch.png", "corruptions_3ch.png", "robustness_heatmap.png", "policy_shares.png")


def _infrared(crop: int = 64) -> torch.Tensor:
    """The crop of the default preview scene holding most target pixels: (1, crop, crop).

    ``preview_grid(None, ...)`` shows the whole 256 x 256 scene, where the targets are a few
    pixels wide; a crop shows them large enough to see what each corruption does to them.
    """
    image, mask = SyntheticIRSTD(1, size=256, seed=0)[0]
    counts = torch.nn.functional.avg_pool2d(mask[None], crop, stride=8)[0, 0]
    row, col = divmod(int(counts.argmax()), counts.shape[1])
    return image[:, row * 8 : row * 8 + crop, col * 8 : col * 8 + crop].contiguous()


def _photo(size: int = 160) -> torch.Tensor:
    """matplotlib's sample photograph (Grace Hopper, public domain) as a (3, size, size) tensor."""
    import matplotlib.cbook
    import numpy as np

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 4
        im = im.convert("RGB").crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _tighten(path: Path, *, gap: int = 14) -> None:
    """Cut the white bands between the grid's rows down to ``gap`` pixels (less scrolling)."""
    import numpy as np

    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    blank = (arr >= 250).all(axis=(1, 2))
    keep = [i for i in range(len(blank)) if not blank[i] or not blank[max(0, i - gap) : i + 1].all()]
    Image.fromarray(arr[keep]).save(path)


def _shrink(path: Path, *, gray: bool) -> None:
    """Rewrite a PNG as 8-bit gray or a 256-colour palette (octree: less banding than median cut)."""
    with Image.open(path) as im:
        small = im.convert("L") if gray else im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    small.save(path, optimize=True)


def make_gallery(out: Path) -> list[Path]:
    """Write the gallery's four PNGs into ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    gray, rgb, heatmap, shares = (out / name for name in IMAGES)
    preview_grid(_infrared(), gray, severities=SEVERITIES, seed=0)
    _tighten(gray)
    _shrink(gray, gray=True)
    preview_grid(_photo(), rgb, severities=SEVERITIES, seed=0)
    _tighten(rgb)
    _shrink(rgb, gray=False)
    RobustnessReport.from_json(HEATMAP_REPORT).plot_heatmap(heatmap, metric="iou", dpi=110)
    _shrink(heatmap, gray=False)
    folders = [RUNS / f"seed{s}" for s in SHARES_SEEDS]
    title = "banded (the default adversary), recipe 3, NUAA-SIRST, ACM: mean over seeds 0-4"
    plot_policy_shares(folders, shares, title=title)
    if not shares.is_file():
        raise FileNotFoundError(f"no policy_actions.json with actions under {RUNS}; got no plot at {shares}")
    _shrink(shares, gray=False)
    return [gray, rgb, heatmap, shares]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "gallery", help="output folder")
    for path in make_gallery(parser.parse_args().out):
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
