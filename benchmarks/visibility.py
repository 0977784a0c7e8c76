"""How much of the main object a masked encoder sees: MAE's random 75% mask on the patch grid of the synthetic
scenes, by object size.

For each scene, one mask per sample as MAE draws it (uniform noise, argsort, keep the first 25% of patches);
the main object's pixels are those its 4x-supersampled drawing covers at all. Prints, per size: how often no
visible patch overlaps the object by a pixel (wholly hidden), the mean and 10th percentile of the fraction of its
pixels (weighted by coverage) that the visible patches show, how many patches it touches, and how often at
least one copy of each object (the main ones and, where the generator draws one, the reference) shows.
The expected visible fraction is the kept fraction (25%) whatever the object; the hidden rate and the spread
are what size changes.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

import numpy as np
import torch
from PIL import Image, ImageDraw

from mug.data.synthetic import synth


def coverage(obj: synth.SceneObject, size: int) -> np.ndarray:
    """The fraction of each output pixel the object covers [size, size], from its supersampled drawing."""
    side = size * synth.SUPERSAMPLE
    canvas = Image.new("L", (side, side), 0)
    synth._draw(ImageDraw.Draw(canvas), obj, side, 255)
    cover = np.asarray(canvas, dtype=np.float32) / 255
    return cover.reshape(size, synth.SUPERSAMPLE, size, synth.SUPERSAMPLE).mean(axis=(1, 3))


def per_patch(cover: np.ndarray, patch: int) -> np.ndarray:
    """Coverage summed per patch, in the row-major patch order of the encoder [L]."""
    grid = cover.shape[0] // patch
    return cover.reshape(grid, patch, grid, patch).sum(axis=(1, 3)).reshape(-1)


def random_keep(n: int, patches: int, keep: int, generator: torch.Generator) -> np.ndarray:
    """Boolean [n, patches]: the patches MAE's per-sample noise + argsort keeps."""
    noise = torch.rand(n, patches, generator=generator)
    kept = noise.argsort(dim=1)[:, :keep]
    mask = torch.zeros(n, patches, dtype=torch.bool)
    mask.scatter_(1, kept, True)
    return mask.numpy()


def measure(scenes: int, size: int, patch: int, mask_ratio: float, seed: int) -> dict:
    rng = random.Random(seed)
    patches = (size // patch) ** 2
    keep = int(patches * (1 - mask_ratio))
    visible = random_keep(scenes, patches, keep, torch.Generator().manual_seed(seed))
    rows: dict[str, list[tuple[float, float, int, bool]]] = defaultdict(list)
    for i in range(scenes):
        scene = synth.random_scene(rng)
        main = scene.objects[0]
        mass = per_patch(coverage(main, size), patch)
        fraction = float(mass[visible[i]].sum() / mass.sum())
        touched = mass > 0
        # Every object (each copy and the reference) shows through at least one visible patch.
        all_seen = all((per_patch(coverage(o, size), patch) > 0)[visible[i]].any() for o in scene.objects)
        row = (float(not (touched & visible[i]).any()), fraction, int(touched.sum()), all_seen)
        rows[main.size].append(row)
        rows["all"].append(row)
    out = {}
    for name, values in sorted(rows.items(), key=lambda item: item[0] == "all"):
        hidden, fraction, touched, all_seen = (np.array(v, dtype=float) for v in zip(*values, strict=True))
        out[name] = {
            "n": len(values),
            "wholly_hidden": float(hidden.mean()),
            "visible_fraction_mean": float(fraction.mean()),
            "visible_fraction_p10": float(np.percentile(fraction, 10)),
            "patches_touched_mean": float(touched.mean()),
            "every_object_seen": float(all_seen.mean()),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=5000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the figures as JSON here")
    args = parser.parse_args()
    figures = measure(args.scenes, args.image_size, args.patch_size, args.mask_ratio, args.seed)
    print(f"{'size':>6} {'n':>6} {'hidden':>7} {'seen mean':>9} {'seen p10':>8} {'patches':>7} {'all objs seen':>13}")
    for name, f in figures.items():
        print(
            f"{name:>6} {f['n']:6d} {f['wholly_hidden']:7.3f} {f['visible_fraction_mean']:9.3f} "
            f"{f['visible_fraction_p10']:8.3f} {f['patches_touched_mean']:7.1f} {f['every_object_seen']:13.3f}"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
