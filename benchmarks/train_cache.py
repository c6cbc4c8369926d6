"""`texturebias train --cache-images` vs decoding every image in every epoch, in one process.

Writes a folder of small PNGs with the demo's generator (or uses ``--data DIR``), then trains the same model
for one epoch with and without the cache, alternating, and prints the per-epoch images/s of each (the
``images_per_s`` column of ``metrics.csv``: the epoch itself, without the one-time preload) and their ratio.
Usage::

    python benchmarks/train_cache.py [--data DIR] [--images 8000] [--model demo_cnn] [--rounds 2]

On the 2-core development CPU (8,000 images of 32 px, 2 rounds) it printed a median of 722 img/s from files and
1,624 img/s cached: 2.25x (docs/training.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")

from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

from texturebias.demo import world  # noqa: E402
from texturebias.train import TrainConfig, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="ImageFolder to train on (default: generate the demo's world)")
    parser.add_argument("--images", type=int, default=8000, help="images to generate when --data is not given")
    parser.add_argument("--model", default="demo_cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "natural"
            world.write_set(data, "natural", args.images, seed=0, workers=2)
        speed: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.rounds):
            for cache in (False, True):
                t0 = time.perf_counter()
                result = train(TrainConfig(model=args.model, data=[data], out=Path(tmp) / f"run-{r}-{cache}", epochs=1,
                                           batch_size=args.batch_size, lr=0.1, workers=0, augment="flip",
                                           cache_images=cache, log_every=0, device="cpu", seed=0))  # fmt: skip
                speed[cache].append(float(result.metrics[-1]["images_per_s"]))
                print(f"round {r + 1} cache={cache!s:<5} epoch {speed[cache][-1]:7.0f} img/s  "
                      f"(wall incl. setup/preload {time.perf_counter() - t0:.1f} s)")  # fmt: skip
    print_machine()
    plain, cached = statistics.median(speed[False]), statistics.median(speed[True])
    print(f"median epoch images/s: files {plain:.0f}, cached {cached:.0f}; cached / files = {cached / plain:.2f}x")


if __name__ == "__main__":
    main()
