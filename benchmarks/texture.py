"""Texture synthesis speed: seconds per synthesis for the faithful scipy mode, the batched torch mode and a naive
per-image loop of the torch mode, plus bf16 autocast — all in one process, printed as ratios.

    python benchmarks/texture.py                      # 256², 100 iterations, batch 4 (the issue's setting)
    python benchmarks/texture.py --size 64 --iterations 20 --threads 1   # quick run on a small CPU

Uses random test weights (detinit-v1 convolutions behind the real Caffe preprocessing conv): speed does not
depend on the weight values. Prints the loss reached too, so a fast mode that does not optimise shows up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

ROOT = Path(__file__).resolve().parents[1]


def _network() -> torch.nn.Sequential:
    sys.path.insert(0, str(ROOT / "tests"))
    from detinit import detinit_state_dict
    from texturebias.texture.network import caffe_preprocessing, texture_network

    keys = ROOT.parent / "shared" / "fixtures" / "adain" / "keys_vgg_normalised.json"
    net = texture_network(detinit_state_dict(keys, 2.0)) if keys.exists() else texture_network(pretrained=False)
    net[0] = caffe_preprocessing()
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4, help="images per run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--skip-bf16", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import skimage.data

    from texturebias.texture.synthesis import TextureSynthesizer

    net = _network()
    textures = [skimage.data.brick(), skimage.data.gravel(), skimage.data.grass(), skimage.data.camera()]
    images = [textures[i % len(textures)] for i in range(args.batch)]

    def run(label: str, **kw: object) -> tuple[float, float]:
        syn = TextureSynthesizer(
            net, iterations=args.iterations, size=args.size, device=args.device, show_progress=False, **kw
        )  # type: ignore[arg-type]
        syn.synthesize(images[:1], seeds=0)  # warm-up (allocations, oneDNN primitive caches)
        start = time.perf_counter()
        if kw.get("batch_size") == 1 and kw.get("method") == "torch":
            results = [syn.synthesize([im], seeds=[i])[0] for i, im in enumerate(images)]
        else:
            results = syn.synthesize(images, seeds=0)
        per_image = (time.perf_counter() - start) / len(images)
        drop = float(np.median([r.loss / r.losses[0] for r in results]))
        print(f"{label:<34} {per_image:8.2f} s/image   final/initial loss {drop:.2e}", flush=True)
        return per_image, drop

    print_machine()
    print(
        f"texture synthesis, {args.size}² px, {args.iterations} iterations, {args.batch} images, "
        f"device={args.device}, threads={torch.get_num_threads()}"
    )
    scipy_s, _ = run("scipy L-BFGS-B fp32 (faithful)", method="scipy")
    naive_s, _ = run("torch L-BFGS fp32, per-image loop", method="torch", batch_size=1)
    fast_s, _ = run(f"torch L-BFGS fp32, batch {args.batch}", method="torch", batch_size=args.batch)
    print(
        f"speed-up batched vs faithful scipy: {scipy_s / fast_s:.2f}x;  batched vs per-image loop: "
        f"{naive_s / fast_s:.2f}x"
    )
    if not args.skip_bf16:
        bf16_s, _ = run(
            f"torch L-BFGS bf16, batch {args.batch}", method="torch", batch_size=args.batch, precision="bf16"
        )
        print(f"bf16 vs fp32 (batched): {fast_s / bf16_s:.2f}x faster")


if __name__ == "__main__":
    main()
