"""Eidolon ("partially coherent disarray"): a clean-room re-implementation of DISTORTIONS.md §4.

The algorithm of the Eidolon toolbox by Koenderink et al., as wrapped by G18 with its PR #1 fix; it is validated
statistically, not pixel-wise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

# scipy is imported inside the functions that use it: ~0.35 s that every CLI command paid for the distortion names.
from PIL import Image

from texturebias.robustness.manipulations import clip01, rgb2gray, to_uint8

# ----------------------------------------------------------------------------------------------------------------
# Eidolon: partially coherent disarray (clean-room, DISTORTIONS.md §4)
# ----------------------------------------------------------------------------------------------------------------

EIDOLON_SIZE = 256
_MIN_SIGMA = 1.0 / math.sqrt(2.0)
_SIGMA_FACTOR = math.sqrt(2.0)


def _next_pow2(x: float) -> int:
    return 1 << max(0, math.ceil(math.log2(x)))


def eidolon_sigmas(size: int = EIDOLON_SIZE) -> np.ndarray:
    """Scale levels σ_k = (1/√2)·√2^k, k < ceil(2·log2(size/4)) (12 levels up to σ = 32 for 256 px)."""
    n = math.ceil(2.0 * math.log2(size / 4.0))
    return _MIN_SIGMA * _SIGMA_FACTOR ** np.arange(n)


def _gauss_1d_fft(n: int, sigma: float) -> np.ndarray:
    # Sampled, unnormalised-sum Gaussian on wrapped integer offsets (0..n/2, then negative), as the toolbox.
    import scipy.fft

    d = np.minimum(np.arange(n), n - np.arange(n)).astype(np.float64)
    kernel = np.exp(-(d**2) / (2.0 * sigma**2)) / (math.sqrt(2.0 * math.pi) * sigma)
    return scipy.fft.fft(kernel).real  # symmetric kernel: real transfer function


class _Blur:
    """Circular, separable Gaussian blur of (stacks of) planes of one size via the real 2-D FFT.

    Works in single precision: the noise planes only feed displacements that are floored to integers, and the
    image slices are summed and truncated to uint8, so float32 changes nothing measurable and halves the cost.
    """

    def __init__(self, shape: tuple[int, int], dtype: type = np.float32) -> None:
        self.shape = shape
        self.dtype = dtype
        self._cache: dict[float, np.ndarray] = {}

    def transfer(self, sigma: float) -> np.ndarray:
        if sigma not in self._cache:
            hh, ww = self.shape
            rows = _gauss_1d_fft(hh, sigma)
            cols = _gauss_1d_fft(ww, sigma)[: ww // 2 + 1]
            self._cache[sigma] = np.outer(rows, cols).astype(self.dtype)
        return self._cache[sigma]

    def __call__(self, planes: np.ndarray, sigmas: Sequence[float] | float) -> np.ndarray:
        import scipy.fft

        spectrum = scipy.fft.rfft2(np.asarray(planes, dtype=self.dtype), workers=-1)
        if planes.ndim == 2 and not np.isscalar(sigmas):
            # One image, many scales (the DoG pyramid): transform once, filter n times.
            spectrum = spectrum[None] * np.stack([self.transfer(float(s)) for s in sigmas])  # type: ignore[union-attr]
        elif np.isscalar(sigmas):
            spectrum = spectrum * self.transfer(float(sigmas))  # type: ignore[arg-type]
        else:
            spectrum = spectrum * np.stack([self.transfer(float(s)) for s in sigmas])  # type: ignore[union-attr]
        return scipy.fft.irfft2(spectrum, s=self.shape, workers=-1)


def _noise_planes(rng: np.random.Generator, count: int, shape: tuple[int, int]) -> np.ndarray:
    """Raw noise: N(0,1) scaled to max|z| = 127.5 per plane, clipped to ±127 (before blurring)."""
    z = rng.standard_normal((count, *shape), dtype=np.float32)
    peak = np.abs(z).reshape(count, -1).max(axis=1)[:, None, None]
    z *= np.float32(127.5) / peak
    return np.clip(z, -127.0, 127.0, out=z)


def _blurred_noise_spectra(
    blur: _Blur, raw: np.ndarray, sigmas: Sequence[float] | float
) -> tuple[np.ndarray, np.ndarray]:
    """rfft2 of blurred noise planes, and each plane's constant offset ``-mean(c)/std(c)``.

    Upstream returns ``c - mean(c)/std(c)`` (a scalar ratio, not a standardisation). Keeping it keeps the
    displacement amplitude: std ≈ 127.5/(max|z|·2√π·σ) ≈ 0.78 px per unit reach for σ = 10 on 512². The mean
    and std come from the spectrum (DC term and Parseval), so the planes never need their own inverse FFT:
    mixing and the coherent cumulative sums are linear and happen in the Fourier domain.
    """
    import scipy.fft

    hh, ww = blur.shape
    count = hh * ww
    spectrum = scipy.fft.rfft2(raw, workers=-1)
    if np.isscalar(sigmas):
        spectrum *= blur.transfer(float(sigmas))  # type: ignore[arg-type]
    else:
        spectrum *= np.stack([blur.transfer(float(s)) for s in sigmas])  # type: ignore[union-attr]
    # rfft2 stores half the columns: every column but the DC (and the Nyquist one for even widths) counts twice.
    weights = np.full(spectrum.shape[-1], 2.0)
    weights[0] = 1.0
    if ww % 2 == 0:
        weights[-1] = 1.0
    power = (spectrum.real**2 + spectrum.imag**2).sum(axis=1, dtype=np.float64)
    sum_sq = (power * weights).sum(axis=-1) / count
    mean = spectrum[:, 0, 0].real.astype(np.float64) / count
    std = np.sqrt(np.maximum(sum_sq / count - mean**2, 1e-300))
    return spectrum, -mean / std


def eidolon_displacements(
    shape: tuple[int, int],
    coherence: float,
    grain: float,
    rng: np.random.Generator,
    sigmas: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-level displacement fields (rows, columns) for unit reach, each of shape (levels, *shape), float32.

    P_k = (1 - c)·I_k + c·C_k: I_k is an incoherent plane blurred with σ = grain, fresh per level; C_k is the sum
    of the independent scaled planes S_j (blurred with σ_j, times σ_j/MAX_SIGMA) for j ≥ k, so coarse
    displacements drag finer levels along. Draw order as the reference: all S for rows, all S for columns, then
    (I_rows, I_cols) per level — except that planes with weight 0 (S at c = 0, I at c = 1) are not drawn.
    """
    import scipy.fft

    if not 0.0 <= coherence <= 1.0:
        raise ValueError(f"coherence must lie in [0, 1], got {coherence}")
    if sigmas is None:
        sigmas = eidolon_sigmas()
    n = len(sigmas)
    scale = np.asarray(sigmas, dtype=np.float64) / (EIDOLON_SIZE / 4.0)
    blur = _Blur(shape)
    raw_scaled = _noise_planes(rng, 2 * n, shape) if coherence > 0.0 else None
    raw_incoherent = _noise_planes(rng, 2 * n, shape) if coherence < 1.0 else None  # I_0(x), I_0(y), I_1(x)...
    fields = []
    for axis in range(2):
        total = np.zeros((n, shape[0], shape[1] // 2 + 1), dtype=np.complex64)
        offset = np.zeros(n)
        if raw_scaled is not None:
            spec, off = _blurred_noise_spectra(blur, raw_scaled[axis * n : (axis + 1) * n], sigmas)
            spec *= scale.astype(np.float32)[:, None, None]
            # C_k = sum_{j >= k} S_j: a reversed cumulative sum, done on spectra and offsets alike.
            total += np.float32(coherence) * np.cumsum(spec[::-1], axis=0)[::-1]
            offset += coherence * np.cumsum((off * scale)[::-1])[::-1]
        if raw_incoherent is not None:
            spec, off = _blurred_noise_spectra(blur, raw_incoherent[axis::2], float(grain))
            total += np.float32(1.0 - coherence) * spec
            offset += (1.0 - coherence) * off
        field = scipy.fft.irfft2(total, s=shape, workers=-1)
        field += offset.astype(np.float32)[:, None, None]
        fields.append(field)
    return fields[0], fields[1]


def _fat_plane(g: np.ndarray) -> tuple[np.ndarray, int, int]:
    h, w = g.shape
    hh, ww = _next_pow2(1.5 * h), _next_pow2(1.5 * w)
    dh, dw = (hh - h) // 2, (ww - w) // 2
    # numpy "symmetric" padding duplicates the edge pixel, as the toolbox's mirror embedding does.
    return np.pad(g, ((dh, hh - h - dh), (dw, ww - w - dw)), mode="symmetric"), dh, dw


def eidolon_prepare(img: np.ndarray, size: int = EIDOLON_SIZE) -> np.ndarray:
    """The toolbox input: the grey image as uint8 (truncation), resized so its longer side is ``size`` (LANCZOS)."""
    g8 = to_uint8(clip01(rgb2gray(img)))
    h, w = g8.shape
    scale = size / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    pil = Image.fromarray(g8, mode="L")
    if new != (w, h):
        pil = pil.resize(new, Image.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.float64)


def eidolon(
    img: np.ndarray,
    reach: float,
    coherence: float,
    rng: np.random.Generator,
    *,
    grain: float = 10.0,
    output_size: Literal["input", "working"] = "input",
) -> np.ndarray:
    """Eidolon partially coherent disarray (Koenderink et al.; G18's Eidolon I/II/III at c = 1 / 0.3 / 0).

    The grey image is brought to 256 px (longer side), mirror-embedded in a 512² plane, decomposed into 12
    DoG scale-space slices (σ = 0.707 … 32), each slice is warped by nearest-neighbour lookup with displacement
    ``reach · P_k``, and the slices are summed, cropped, clipped and truncated to uint8.

    Args:
        img: RGB or grey image in [0, 1].
        reach: Displacement scale (1 … 128 in the experiments; 0 gives the σ = 0.707 blurred image).
        coherence: 1.0 (Eidolon I), 0.3 (II) or 0.0 (III); any value in [0, 1].
        rng: Random generator.
        grain: σ of the incoherent noise (10 in the experiments).
        output_size: "input" resizes the 256 px result back to the input size (LANCZOS, uint8), "working"
            returns the toolbox's 256 px result.

    Returns:
        uint8 grey image (2-D).
    """
    if reach < 0:
        raise ValueError(f"reach must be >= 0, got {reach}")
    h_in, w_in = np.asarray(img).shape[:2]
    g = eidolon_prepare(img)
    h, w = g.shape
    fat, dh, dw = _fat_plane(g)
    hh, ww = fat.shape
    sigmas = eidolon_sigmas()
    n = len(sigmas)
    blur = _Blur((hh, ww))
    blurred = blur(fat, sigmas)
    slices = blurred.copy()
    slices[:-1] -= blurred[1:]  # D_k = B_k - B_{k+1}; D_{n-1} = B_{n-1}; sum_k D_k = B_0
    px, py = eidolon_displacements((hh, ww), coherence, grain, rng, sigmas)
    rows = np.arange(hh, dtype=np.float32)[:, None]
    cols = np.arange(ww, dtype=np.float32)[None, :]
    total = np.zeros((hh, ww))
    for k in range(n):
        # Clip before the integer cast, so the cast is a floor of a non-negative number.
        ri = np.clip(rows + reach * px[k], 0, hh - 1).astype(np.intp)
        ci = np.clip(cols + reach * py[k], 0, ww - 1).astype(np.intp)
        total += slices[k][ri, ci]
    out = np.clip(total[dh : dh + h, dw : dw + w], 0.0, 255.0).astype(np.uint8)
    if output_size == "input" and (h, w) != (h_in, w_in):
        out = np.asarray(Image.fromarray(out, mode="L").resize((w_in, h_in), Image.Resampling.LANCZOS))
    return out
