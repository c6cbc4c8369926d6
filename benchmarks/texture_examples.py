"""Make the example images of docs/texture.md: scikit-image brick, gravel and cat synthesised as textures.

    python benchmarks/texture_examples.py --out docs/img/texture                   # what docs/texture.md shows
    python benchmarks/texture_examples.py --out /tmp/tex --weights vgg_normalised.pth --size 256 --iterations 2000

Without ``--weights`` (no official weights are reachable offline) the network is the fixtures' detinit-v1 random
convolutions behind the real Caffe preprocessing conv, normalised by the T3 procedure (mean activation 1 per
channel on the scikit-image photos). Writes ``<name>_source.png``, ``<name>_texture.png``,
``<name>_texture_hm.png`` (histogram-matched) and ``losses.png`` (loss curves).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="vgg_normalised.pth (default: normalised random weights)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--layers", nargs="+", default=["conv1_1", "pool1", "pool2"])
    parser.add_argument("--optimizer", choices=("scipy", "torch"), default="torch")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import skimage.data

    from texturebias.data.samples import sample_photo_paths
    from texturebias.texture.network import (
        caffe_preprocessing,
        default_normalisation_images,
        normalise_vgg_,
        texture_network,
    )
    from texturebias.texture.synthesis import TextureSynthesizer, histogram_match

    if args.weights is not None:
        net = texture_network(args.weights)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from detinit import detinit_state_dict

        keys = ROOT.parent / "shared" / "fixtures" / "adain" / "keys_vgg_normalised.json"
        net = texture_network(detinit_state_dict(keys, 2.0))
        net[0] = caffe_preprocessing()
        normalise_vgg_(net, default_normalisation_images(96))
    sources = {
        "brick": Image.fromarray(skimage.data.brick()).convert("RGB"),
        "gravel": Image.fromarray(skimage.data.gravel()).convert("RGB"),
        "chelsea": Image.open(sample_photo_paths()[0]).convert("RGB"),
    }
    syn = TextureSynthesizer(
        net, iterations=args.iterations, size=args.size, method=args.optimizer, layers=args.layers, show_progress=True
    )
    start = time.perf_counter()
    results = syn.synthesize(list(sources.values()), seeds=0)
    print_machine()
    print(f"{time.perf_counter() - start:.1f} s for {len(results)} images")
    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3))
    for (name, src), res in zip(sources.items(), results, strict=True):
        prepared = syn.prepare(src)
        Image.fromarray(np.round(prepared * 255).astype(np.uint8)).save(args.out / f"{name}_source.png")
        res.to_pil().save(args.out / f"{name}_texture.png")
        matched = np.clip(histogram_match(res.image, prepared), 0, 1)
        Image.fromarray(np.round(matched * 255).astype(np.uint8)).save(args.out / f"{name}_texture_hm.png")
        ax.plot(np.asarray(res.losses) / res.losses[0], label=name)
        print(f"{name}: loss {res.losses[0]:.3g} -> {res.loss:.3g} ({res.loss / res.losses[0]:.1e} of the start)")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss / initial loss")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(args.out / "losses.png", dpi=120)


if __name__ == "__main__":
    main()
