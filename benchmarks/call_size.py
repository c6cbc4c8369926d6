"""Per-image cost of one network call on a CPU by call size: why inference and stylization run micro-batches.

For each model, interleaved rounds of calls on 2, 4, 8 and 32 images (224², fp32, inference mode, random
inputs), medians in ms per image, the ratio to calls of 32, and whether every call size gives the same outputs
bit for bit as one call on all images. The models: EfficientNet-Lite0 and ResNet-50 (torchvision, untrained:
speed does not depend on weight values), BagNet-33, and the AdaIN encoder (to relu4_1) + decoder with the fixtures'
deterministic weights. ``cpu_micro_batch(224, 224)`` is printed for comparison.

Usage: ``TEXTUREBIAS_FIXTURES=../shared/fixtures .venv/bin/python benchmarks/call_size.py [--images 32] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

from texturebias.models import load_model
from texturebias.utils.device import cpu_micro_batch

REPO = Path(__file__).resolve().parents[1]
SIZES = (2, 4, 8, 32)


def adain_networks() -> Callable[[torch.Tensor], torch.Tensor]:
    sys.path.insert(0, str(REPO / "tests"))
    from detinit import detinit_state_dict
    from texturebias.models.adain_nets import adain_decoder, vgg_normalised

    fixtures = Path(os.environ.get("TEXTUREBIAS_FIXTURES", REPO.parent / "shared" / "fixtures")) / "adain"
    vgg, dec = vgg_normalised(), adain_decoder()
    vgg.load_state_dict(detinit_state_dict(fixtures / "keys_vgg_normalised.json", 2.0))
    dec.load_state_dict(detinit_state_dict(fixtures / "keys_decoder.json", 2.0))
    enc = torch.nn.Sequential(*list(vgg)[:31]).eval()
    dec.eval()
    return lambda x: dec(enc(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images per round (a multiple of 32)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "efficientnet_lite0": load_model("efficientnet_lite0", None)[0].eval(),
        "resnet50": torchvision.models.resnet50().eval(),
        "bagnet33": load_model("bagnet33", None, pretrained=False)[0].eval(),
        "adain encoder+decoder": adain_networks(),
    }
    x = torch.rand(args.images, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rows = []
    with torch.inference_mode():
        for name, fn in models.items():
            whole = torch.cat([fn(x[i : i + 32]) for i in range(0, len(x), 32)])
            ms: dict[int, list[float]] = {s: [] for s in SIZES}
            same = {}
            for _ in range(args.rounds):
                for size in SIZES:
                    fn(x[:size])  # oneDNN primitive creation for this shape
                    t0 = time.perf_counter()
                    out = torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])
                    ms[size].append((time.perf_counter() - t0) / len(x) * 1000)
                    same[size] = torch.equal(out, whole)
            med = {s: statistics.median(v) for s, v in ms.items()}
            rows.append((name, med, same))
            print(f"{name}: " + ", ".join(f"{s}: {med[s]:.1f} ms" for s in SIZES), flush=True)
    print_machine()
    print(f"224², fp32, {args.images} images, median of {args.rounds} interleaved rounds; "
          f"cpu_micro_batch(224, 224) = {cpu_micro_batch(224, 224)}")  # fmt: skip
    print("| model | " + " | ".join(f"calls of {s} (ms/img)" for s in SIZES) + " | 32 / 2 | same bits |")
    print("|---|" + "---|" * (len(SIZES) + 2))
    for name, med, same in rows:
        cells = " | ".join(f"{med[s]:.1f}" for s in SIZES)
        print(f"| {name} | {cells} | {med[32] / med[2]:.2f}x | {'yes' if all(same.values()) else 'no'} |")


if __name__ == "__main__":
    main()
