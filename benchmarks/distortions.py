"""Time every distortion on a 224² image; ratios against a 224² ``scipy.fft.fft2`` measured in the same process.

Eidolon is also compared with a float64, spatial-domain-accumulation variant (one inverse FFT per noise plane,
as the toolbox's structure) to show what the Fourier-domain mixing and float32 buy.

    .venv/bin/python benchmarks/distortions.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.fft
from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

from texturebias.data.images import image_to_array, load_image
from texturebias.data.samples import sample_photo_paths
from texturebias.robustness import eidolon as E
from texturebias.robustness import manipulations as M


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _eidolon_planes_float64(rng: np.random.Generator, coherence: float) -> None:
    """Baseline: blur and finish each noise plane in float64 with its own inverse FFT (48 of them)."""
    blur = E._Blur((512, 512), np.float64)
    sigmas = E.eidolon_sigmas()
    for _ in range(2):
        raw = rng.standard_normal((12, 512, 512))
        s = blur(raw, sigmas)
        s -= s.mean(axis=(1, 2), keepdims=True) / s.std(axis=(1, 2), keepdims=True)
        np.cumsum(s[::-1], axis=0)
        raw = rng.standard_normal((12, 512, 512))
        blur(raw, 10.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    img = image_to_array(load_image(sample_photo_paths()[0]).resize((224, 224)))
    g = M.rgb2gray(img)
    base = _best(lambda: scipy.fft.fft2(g), args.repeats * 5)
    print_machine()
    print(f"baseline fft2 224²: {base * 1e3:.3f} ms")
    rng = np.random.default_rng(0)
    spectrum = np.abs(scipy.fft.fftshift(scipy.fft.fft2(g)))
    cases = {
        "greyscale": lambda: M.greyscale(img),
        "contrast c05": lambda: M.contrast(img, 0.05),
        "uniform-noise 0.35": lambda: M.uniform_noise(img, 0.35, rng),
        "salt-and-pepper 0.5": lambda: M.salt_and_pepper(img, 0.5, rng),
        "low-pass 10": lambda: M.low_pass(img, 10),
        "high-pass 1.5": lambda: M.high_pass(img, 1.5),
        "phase 90 faithful": lambda: M.phase_noise(img, 90, rng),
        "phase 90 corrected": lambda: M.phase_noise(img, 90, rng, mode="corrected"),
        "power-equalisation": lambda: M.power_equalise(img, spectrum),
        "rotation 90": lambda: M.rotate(img, 90),
        "eidolon I (reach 8)": lambda: E.eidolon(img, 8, 1.0, rng),
        "eidolon II (reach 8)": lambda: E.eidolon(img, 8, 0.3, rng),
        "eidolon III (reach 8)": lambda: E.eidolon(img, 8, 0.0, rng),
    }
    for name, fn in cases.items():
        t = _best(fn, args.repeats)
        print(f"{name:<24} {t * 1e3:9.2f} ms  ({t / base:7.1f}x fft2)")
    fast = _best(lambda: E.eidolon_displacements((512, 512), 0.3, 10, rng), args.repeats)
    slow = _best(lambda: _eidolon_planes_float64(rng, 0.3), max(1, args.repeats // 2))
    print(f"eidolon displacements: {fast * 1e3:.0f} ms vs float64 per-plane baseline {slow * 1e3:.0f} ms "
          f"(speed-up {slow / fast:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
