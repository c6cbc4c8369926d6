"""The parametric image distortions of Geirhos et al. (NeurIPS 2018) and model-vs-human (NeurIPS 2021).

Conventions follow the original code (github.com/rgeirhos/generalisation-humans-DNNs, commit 0b88343):

* inputs are float64 HWC RGB arrays in [0, 1] (``imread(path) / 255``); 2-D greyscale arrays are accepted too;
* "grey" is skimage's ``rgb2gray`` on the sRGB values (0.2125/0.7154/0.0721, no linearisation);
* contrast, uniform noise and salt-and-pepper return 2-D arrays, the other greyscale recipes stack the grey image
  into three channels, false colour returns colour;
* saving multiplies by 255 and casts to uint8 — **truncation**, not rounding (:func:`to_uint8`);
* randomness comes from an explicit :class:`numpy.random.Generator` (the original used the global NumPy state or a
  shared ``RandomState``; the published stimuli cannot be regenerated pixel-exactly anyway).

Eidolon ("partially coherent disarray") is a clean-room re-implementation of the algorithm described in
``DISTORTIONS.md`` §4 (the Eidolon toolbox by Koenderink et al., as wrapped by G18 with its PR #1 fix); it is
validated statistically, not pixel-wise.

The two data files needed by power equalisation and false colour are downloaded by URL + sha256 (or read from a
path / ``$TEXTUREBIAS_DATA``) by :func:`g18_data_file`; they are never shipped with the package.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.fft
import scipy.ndimage
from PIL import Image

from texturebias.errors import DataError

# ----------------------------------------------------------------------------------------------------------------
# Constants of the original recipes
# ----------------------------------------------------------------------------------------------------------------

#: skimage.color.rgb2gray weights (ITU-R 709 luma on the *encoded* values).
GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
#: "Mean pixel value over all images": padding value and target mean of the low-/high-pass filters (G18).
MEAN_GREY = 0.4423
#: Uniform noise and salt-and-pepper noise are applied to images at 30 % contrast.
NOISE_CONTRAST = 0.3

#: Cone fundamentals (RGB_linear -> LMS) of G18's monitor, and the white point subtracted before DKL.
_RGB_TO_LMS = np.array(
    [
        [0.1619982647, 0.208049264, 0.0389347448],
        [0.0330275785, 0.2496504557, 0.0618343518],
        [0.0015524055, 0.0198861001, 0.1890224274],
    ]
)
_WHITE_LMS = np.array([0.20449114, 0.17225619, 0.10523047])
#: LMS -> DKL (luminance, L-M, S-(L+M)), Brainard (1996).
_LMS_TO_DKL = np.array(
    [
        [9.27590805, 9.27590805, 0.0],
        [7.86421647, -9.33587662, 0.0],
        [-3.39709047, -3.39709047, 12.16230246],
    ]
)

# ----------------------------------------------------------------------------------------------------------------
# Data files (power spectrum, gamma table)
# ----------------------------------------------------------------------------------------------------------------

G18_COMMIT = "0b88343536ec21acc2d635c0e325f827111e149a"
_G18_RAW = f"https://raw.githubusercontent.com/rgeirhos/generalisation-humans-DNNs/{G18_COMMIT}/code/"


@dataclass(frozen=True)
class DataFile:
    """A small data file of the original code, fetched by URL and verified by sha256 (CC-BY 4.0, G18)."""

    filename: str
    url: str
    sha256: str
    description: str


G18_DATA_FILES: dict[str, DataFile] = {
    "mean_power_spectrum_grey.npy": DataFile(
        "mean_power_spectrum_grey.npy",
        _G18_RAW + "mean_power_spectrum_grey.npy",
        "e174b43499e15bb9be6dc798efd5a8565abd064feaf58f2f5e269e4795b4170c",
        "224x224 mean amplitude spectrum (fftshifted) for power equalisation",
    ),
    "x_gamma_function.npy": DataFile(
        "x_gamma_function.npy",
        _G18_RAW + "x_gamma_function.npy",
        "8a9680db77b2a24156a19d3fd8e82187aee1995ea8de6b048f354ba44b6196a2",
        "256-entry monitor gamma table for false colour",
    ),
}


def g18_data_file(filename: str, path: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """Locate (or download) one of G18's data files.

    Search order: ``path`` (a file, or a folder holding it); ``$TEXTUREBIAS_DATA/<filename>`` and
    ``$TEXTUREBIAS_DATA/generalisation-humans-DNNs/<filename>``; the cache
    ``$TEXTUREBIAS_HOME/data/generalisation-humans-DNNs/``; finally a download from the pinned raw GitHub URL.
    Every candidate is checked against the recorded sha256.

    Raises:
        DataError: unknown file, or a local file whose hash does not match.
        DownloadError: the download failed (offline) or the download's hash does not match.
    """
    from texturebias.models.weights import download_file, sha256_file, texturebias_home

    if filename not in G18_DATA_FILES:
        raise DataError(f"unknown data file {filename!r}; known: {', '.join(G18_DATA_FILES)}")
    record = G18_DATA_FILES[filename]
    candidates: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        candidates.append(p / filename if p.is_dir() else p)
        if not candidates[-1].is_file():
            raise DataError(f"{candidates[-1]}: file not found (expected {filename})")
    env = os.environ.get("TEXTUREBIAS_DATA")
    if env:
        root = Path(env).expanduser()
        candidates += [root / filename, root / "generalisation-humans-DNNs" / filename]
    cached = texturebias_home() / "data" / "generalisation-humans-DNNs" / filename
    candidates.append(cached)
    for candidate in candidates:
        if candidate.is_file():
            digest = sha256_file(candidate)
            if digest != record.sha256:
                raise DataError(f"{candidate}: sha256 {digest} does not match the recorded {record.sha256}")
            return candidate
    if not download:
        raise DataError(f"{filename} not found locally (pass a path or set $TEXTUREBIAS_DATA)")
    return download_file(record.url, cached, sha256=record.sha256)


@functools.lru_cache(maxsize=8)
def _load_npy(path: str) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    arr.setflags(write=False)
    return arr


def load_power_spectrum(path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """G18's 224×224 mean amplitude spectrum (fftshifted, DC 22803.9 at the centre)."""
    return _load_npy(str(g18_data_file("mean_power_spectrum_grey.npy", path)))


def load_gamma_table(path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """G18's monitor gamma table: 256 linear luminances, one per 8-bit value (monotonic)."""
    return _load_npy(str(g18_data_file("x_gamma_function.npy", path))).reshape(-1)


# ----------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------


def rgb2gray(img: np.ndarray) -> np.ndarray:
    """skimage ``rgb2gray`` on sRGB-encoded values (no linearisation); 2-D input is returned unchanged."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        return img
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {img.shape}")
    return img[..., :3] @ GREY_WEIGHTS


def grey3(g: np.ndarray) -> np.ndarray:
    """Stack a 2-D grey image into three equal channels (``np.dstack``)."""
    return np.repeat(g[:, :, None], 3, axis=2)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float [0, 1] → uint8 as the original saves images: ``(x * 255).astype(uint8)``, i.e. truncation.

    uint8 input is returned unchanged. Values outside [0, 1] are an error (every recipe clips first).
    """
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if img.size and (np.nanmin(img) < 0.0 or np.nanmax(img) > 1.0 or np.isnan(img).any()):
        raise ValueError("image values must lie in [0, 1] before conversion to uint8")
    return (img * 255.0).astype(np.uint8)


def save_image(img: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a distorted image (float [0, 1] or uint8; 2-D → greyscale file) with uint8 truncation.

    The format follows the suffix (PNG, or JPEG at quality 95 when asked). Writing is atomic.
    """
    from texturebias.utils.io import atomic_path

    arr = to_uint8(img)
    pil = Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB")
    with atomic_path(path) as tmp:
        if tmp.suffix.lower() in (".jpg", ".jpeg"):
            pil.save(tmp, quality=95)
        else:
            pil.save(tmp)


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# The manipulations (G18 section "Image manipulations"; recipes in DISTORTIONS.md §3)
# ----------------------------------------------------------------------------------------------------------------


def greyscale(img: np.ndarray) -> np.ndarray:
    """Condition ``bw`` of the colour experiment: the grey image, stacked into three channels."""
    return grey3(rgb2gray(img))


def contrast(img: np.ndarray, level: float) -> np.ndarray:
    """Grey image at contrast ``level`` around 0.5: ``0.5 + c (g - 0.5)`` (2-D; never needs clipping)."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"contrast level must lie in [0, 1], got {level}")
    g = rgb2gray(img)
    return (1.0 - level) / 2.0 + level * g


def uniform_noise(
    img: np.ndarray, width: float, rng: np.random.Generator, *, contrast_level: float = NOISE_CONTRAST
) -> np.ndarray:
    """Grey image at 30 % contrast plus i.i.d. uniform noise in ``[-width, width]``, clipped (2-D).

    ``width = 0`` is still at 30 % contrast, as in the experiments.
    """
    if width < 0:
        raise ValueError(f"noise width must be >= 0, got {width}")
    g = contrast(img, contrast_level)
    return _clip01(g + rng.uniform(-width, width, size=g.shape))


def salt_and_pepper(
    img: np.ndarray, p: float, rng: np.random.Generator, *, contrast_level: float = NOISE_CONTRAST
) -> np.ndarray:
    """Grey image at 30 % contrast; each pixel turns white with probability p/2 and black with p/2 (2-D)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"salt-and-pepper probability must lie in [0, 1], got {p}")
    g = contrast(img, contrast_level)
    u = rng.random(g.shape)
    g = g + (u >= 1.0 - p / 2.0) - (u < p / 2.0)
    return _clip01(g)


def _gauss_constant(g: np.ndarray, sigma: float) -> np.ndarray:
    # Zero padding would darken the border; G18 pads with the dataset's mean grey.
    return scipy.ndimage.gaussian_filter(g, sigma=sigma, mode="constant", cval=MEAN_GREY)


def low_pass(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of the grey image (σ in pixels, constant padding 0.4423), 3 channels.

    σ = 0 is an exact identity, as scipy skips the filter.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    g = rgb2gray(img)
    return grey3(_clip01(_gauss_constant(g, sigma)))


def high_pass(img: np.ndarray, sigma: float, *, return_unclipped: bool = False) -> np.ndarray:
    """Grey image minus its Gaussian low-pass, shifted to mean 0.4423, clipped, 3 channels.

    ``sigma = inf`` returns the unfiltered grey image (the control condition).
    """
    g = rgb2gray(img)
    if math.isinf(sigma):
        return grey3(g)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 (or inf), got {sigma}")
    h = g - _gauss_constant(g, sigma)
    h = h + (MEAN_GREY - h.mean())
    if return_unclipped:
        return h
    return grey3(_clip01(h))


PhaseMode = Literal["faithful", "corrected"]


def phase_noise(
    img: np.ndarray,
    width: float,
    rng: np.random.Generator,
    *,
    mode: PhaseMode = "faithful",
    return_complex: bool = False,
) -> np.ndarray:
    """Phase scrambling: add uniform phase noise in ``[-width°, +width°)`` to the grey image's spectrum.

    ``mode="faithful"`` reproduces the original code. It shifts the first half of the flattened ``[1:, 1:]``
    block of the fftshifted phase by ``+s[i]`` and the entries after the centre by ``-s[i]`` *in the same
    order*, whereas the conjugate partner of flat index ``i`` is ``L-1-i``. The spectrum is then not Hermitian
    and taking ``.real`` of the inverse FFT removes energy: RMS contrast falls to ≈0.84 at 90° and ≈0.71 at 180°.

    ``mode="corrected"`` pairs each frequency with its true conjugate (``L-1-i`` in the point-symmetric block),
    so the inverse FFT is real up to rounding and the RMS contrast is preserved (before clipping). For the same
    ``rng`` state both modes use the same draws.

    Args:
        img: RGB or grey image in [0, 1].
        width: Maximum phase shift in degrees (0 is an identity).
        rng: Random generator.
        mode: "faithful" (published stimuli) or "corrected".
        return_complex: Return the complex inverse FFT instead of the clipped 3-channel image (for tests).
    """
    if mode not in ("faithful", "corrected"):
        raise ValueError(f"mode must be 'faithful' or 'corrected', got {mode!r}")
    g = rgb2gray(img)
    h, w = g.shape
    spectrum = scipy.fft.fftshift(scipy.fft.fft2(g))
    amplitude, phase = np.abs(spectrum), np.angle(spectrum)
    n_shifts = ((h - 1) * (w - 1)) // 2
    shifts = (rng.random(n_shifts) - 0.5) * 2.0 * width * math.pi / 180.0
    if mode == "faithful":
        block = phase[1:, 1:].reshape(-1).copy()
        length = block.size
        half = length // 2
        block[:half] += shifts[:half]
        tail = length - (half + 1)
        block[half + 1 :] -= shifts[:tail]
        phase[1:, 1:] = block.reshape(h - 1, w - 1)
    else:
        # The fftshifted spectrum is point-symmetric about the DC term on the block that drops the unpaired
        # Nyquist row/column of even axes; there flat index i and L-1-i are conjugate partners.
        r0, c0 = (1 if h % 2 == 0 else 0), (1 if w % 2 == 0 else 0)
        block = phase[r0:, c0:].reshape(-1).copy()
        length = block.size
        half = length // 2
        s = shifts[:half] if half <= shifts.size else np.concatenate([shifts, rng.random(half - shifts.size)])
        block[:half] += s
        block[length - half :] -= s[::-1]
        phase[r0:, c0:] = block.reshape(h - r0, w - c0)
    rebuilt = scipy.fft.ifft2(scipy.fft.ifftshift(amplitude * np.exp(1j * phase)))
    if return_complex:
        return rebuilt
    return grey3(_clip01(rebuilt.real))


def power_equalise(img: np.ndarray, spectrum: np.ndarray, *, return_unclipped: bool = False) -> np.ndarray:
    """Replace the grey image's amplitude spectrum by ``spectrum`` (fftshifted, same size), keep the phase.

    With G18's mean spectrum the pre-clip mean is 22803.9/224² = 0.45448. Returns 3 channels.
    """
    g = rgb2gray(img)
    spectrum = np.asarray(spectrum, dtype=np.float64)
    if spectrum.shape != g.shape:
        raise ValueError(f"power equalisation needs a {spectrum.shape[0]}x{spectrum.shape[1]} image, got {g.shape}")
    phase = np.angle(scipy.fft.fftshift(scipy.fft.fft2(g)))
    out = scipy.fft.ifft2(scipy.fft.ifftshift(spectrum * np.exp(1j * phase))).real
    if return_unclipped:
        return out
    return grey3(_clip01(out))


def false_colour(img: np.ndarray, gamma_table: np.ndarray) -> np.ndarray:
    """Opponent colour: invert the L-M and S-(L+M) axes of DKL space, keep luminance (G18).

    The image must be 8-bit-exact (values k/255), as the original asserts, because the monitor gamma is a lookup
    table. The inverse gamma is a nearest-value lookup (ties to the lower index, like ``argmin``).
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"false colour needs an RGB image, got shape {img.shape}")
    table = np.asarray(gamma_table, dtype=np.float64).reshape(-1)
    if table.size != 256:
        raise ValueError(f"gamma table must have 256 entries, got {table.size}")
    scaled = img * 255.0
    index = np.rint(scaled)
    if np.abs(scaled - index).max() > 1e-6:
        raise ValueError("false colour needs 8-bit images (values k/255)")
    linear = table[index.astype(np.intp)]
    lms_to_dkl = _LMS_TO_DKL @ _RGB_TO_LMS
    dkl = (linear @ _RGB_TO_LMS.T - _WHITE_LMS) @ _LMS_TO_DKL.T
    dkl[..., 1:] *= -1.0
    back = np.linalg.solve(lms_to_dkl, (dkl + _WHITE_LMS @ _LMS_TO_DKL.T).reshape(-1, 3).T).T
    back = _clip01(back.reshape(img.shape))
    # Nearest value in the monotonic table: compare the neighbours left and right of the insertion point.
    order = np.argsort(table, kind="stable")
    sorted_table = table[order]
    j = np.clip(np.searchsorted(sorted_table, back), 1, 255)
    left, right = sorted_table[j - 1], sorted_table[j]
    nearest = np.where(back - left <= right - back, j - 1, j)
    return order[nearest] / 255.0


def rotate(img: np.ndarray, angle: int) -> np.ndarray:
    """Rotate the grey image by 0/90/180/270 degrees counter-clockwise (``np.rot90``), 3 channels."""
    if angle not in (0, 90, 180, 270):
        raise ValueError(f"rotation angle must be 0, 90, 180 or 270, got {angle}")
    return grey3(np.rot90(rgb2gray(img), angle // 90).copy())


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
    g8 = to_uint8(_clip01(rgb2gray(img)))
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


# ----------------------------------------------------------------------------------------------------------------
# Registry: datasets, condition strings, excluded conditions
# ----------------------------------------------------------------------------------------------------------------

DistortFn = Callable[[np.ndarray, str, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Distortion:
    """One parametric distortion as a model-vs-human dataset.

    Attributes:
        name: model-vs-human dataset name ("uniform-noise", "eidolonI", ...).
        code: The experiment code in model-vs-human image names ("nse", "eid", ...).
        conditions: Condition strings, in plotting order (model-vs-human spelling).
        excluded: Conditions excluded from OOD accuracy and consistency (MVH ``EXCLUDE_CONDITIONS``: the
            control and the conditions where humans were below 20 %).
        xlabel: Axis label for the curves.
        apply: ``apply(img, condition, rng)`` → float [0, 1] array (2-D or HWC) or uint8 array.
        in_mvh: Whether model-vs-human has the dataset (salt-and-pepper is G18-only).
    """

    name: str
    code: str
    conditions: tuple[str, ...]
    excluded: tuple[str, ...]
    xlabel: str
    apply: DistortFn
    in_mvh: bool = True

    def x_values(self, conditions: Sequence[str] | None = None) -> list[float]:
        """x positions of conditions in the curves (the condition index; log2 reach for Eidolon)."""
        return [condition_x(self.name, c) for c in (conditions if conditions is not None else self.conditions)]

    def normalise_condition(self, text: str) -> str:
        """Map a user level ("0.5", "c50", "3", "3.0", "1") to this distortion's condition string."""
        return normalise_condition(self, text)


def _numeric(text: str) -> float:
    return float("inf") if text.strip().lower() in ("inf", "infinity") else float(text)


def _phase_mode_apply(mode: PhaseMode) -> DistortFn:
    return lambda img, cond, rng: phase_noise(img, float(cond), rng, mode=mode)


def _eidolon_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    reach, coh, grain = cond.split("-")
    return eidolon(img, float(reach), int(coh) / 10.0, rng, grain=float(grain))


def _colour_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    if cond == "cr":
        return np.asarray(img, dtype=np.float64)
    return greyscale(img)


def _contrast_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    return contrast(img, int(cond.lstrip("c")) / 100.0)


def _power_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    if cond == "0":
        return greyscale(img)
    return power_equalise(img, load_power_spectrum())


def _false_colour_apply(img: np.ndarray, cond: str, rng: np.random.Generator) -> np.ndarray:
    if cond.lower() == "true":
        return np.asarray(img, dtype=np.float64)
    return false_colour(img, load_gamma_table())


_EIDOLON_REACHES = (1, 2, 4, 8, 16, 32, 64, 128)


def _eidolon_conditions(coh10: int) -> tuple[str, ...]:
    return tuple(f"{r}-{coh10}-10" for r in _EIDOLON_REACHES)


DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        Distortion("colour", "cl", ("cr", "bw"), ("cr",), "colour", _colour_apply),
        Distortion(
            "contrast",
            "cop",
            ("c100", "c50", "c30", "c15", "c10", "c05", "c03", "c01"),
            ("c100", "c03", "c01"),
            "contrast in percent",
            _contrast_apply,
        ),
        Distortion(
            "high-pass",
            "hp",
            ("inf", "3.0", "1.5", "1.0", "0.7", "0.55", "0.45", "0.4"),
            ("inf", "0.55", "0.45", "0.4"),
            "filter standard deviation",
            lambda img, cond, rng: high_pass(img, _numeric(cond)),
        ),
        Distortion(
            "low-pass",
            "lp",
            ("0", "1", "3", "5", "7", "10", "15", "40"),
            ("0", "15", "40"),
            "filter standard deviation",
            lambda img, cond, rng: low_pass(img, float(cond)),
        ),
        Distortion(
            "phase-scrambling",
            "ps",
            ("0", "30", "60", "90", "120", "150", "180"),
            ("0", "150", "180"),
            "phase noise width [°]",
            _phase_mode_apply("faithful"),
        ),
        Distortion("power-equalisation", "pow", ("0", "pow"), ("0",), "power spectrum", _power_apply),
        Distortion("false-colour", "fc", ("True", "False"), ("True",), "colour", _false_colour_apply),
        Distortion(
            "rotation",
            "rot",
            ("0", "90", "180", "270"),
            ("0",),
            "rotation angle [°]",
            lambda img, cond, rng: rotate(img, int(cond)),
        ),
        Distortion(
            "eidolonI",
            "eid",
            _eidolon_conditions(10),
            ("1-10-10", "64-10-10", "128-10-10"),
            "log$_2$ of 'reach' parameter",
            _eidolon_apply,
        ),
        Distortion(
            "eidolonII",
            "eid",
            _eidolon_conditions(3),
            ("1-3-10", "32-3-10", "64-3-10", "128-3-10"),
            "log$_2$ of 'reach' parameter",
            _eidolon_apply,
        ),
        Distortion(
            "eidolonIII",
            "eid",
            _eidolon_conditions(0),
            ("1-0-10", "16-0-10", "32-0-10", "64-0-10", "128-0-10"),
            "log$_2$ of 'reach' parameter",
            _eidolon_apply,
        ),
        Distortion(
            "uniform-noise",
            "nse",
            ("0.0", "0.03", "0.05", "0.1", "0.2", "0.35", "0.6", "0.9"),
            ("0.0", "0.6", "0.9"),
            "uniform noise width",
            lambda img, cond, rng: uniform_noise(img, float(cond), rng),
        ),
        Distortion(
            "salt-and-pepper",
            "snp",
            ("0.0", "0.1", "0.2", "0.35", "0.5", "0.65", "0.8", "0.95"),
            ("0.0",),
            "salt-and-pepper probability",
            lambda img, cond, rng: salt_and_pepper(img, float(cond), rng),
            in_mvh=False,
        ),
    )
}

#: Friendlier names accepted everywhere a distortion name is.
ALIASES: dict[str, str] = {
    "greyscale": "colour",
    "grayscale": "colour",
    "phase-noise": "phase-scrambling",
    "phase": "phase-scrambling",
    "power": "power-equalisation",
    "opponent-colour": "false-colour",
    "noise": "uniform-noise",
    "eidolon-i": "eidolonI",
    "eidolon-ii": "eidolonII",
    "eidolon-iii": "eidolonIII",
}


def get_distortion(name: str, *, phase_mode: PhaseMode = "faithful") -> Distortion:
    """Look up a distortion by model-vs-human name or alias (case-insensitive).

    Args:
        name: e.g. "uniform-noise", "eidolonII", "greyscale".
        phase_mode: For phase scrambling: "faithful" (original quirk) or "corrected".

    Raises:
        DataError: unknown name (the message lists the known ones).
    """
    key = ALIASES.get(name.lower(), name)
    lookup = {k.lower(): v for k, v in DISTORTIONS.items()}
    if key.lower() not in lookup:
        raise DataError(f"unknown distortion {name!r}; known: {', '.join(DISTORTIONS)}")
    dist = lookup[key.lower()]
    if dist.name == "phase-scrambling" and phase_mode != "faithful":
        return Distortion(**{**dist.__dict__, "apply": _phase_mode_apply(phase_mode)})
    return dist


def list_distortions() -> list[str]:
    """Names of all distortions (model-vs-human names, plus G18's salt-and-pepper)."""
    return list(DISTORTIONS)


def normalise_condition(dist: Distortion, text: str) -> str:
    """The canonical condition string of ``dist`` that ``text`` denotes.

    Accepts the condition strings themselves (case-insensitive for colour/false colour), numeric spellings
    ("3" for "3.0", "0" for "0.0"), contrast as a fraction ("0.5" → "c50") and an Eidolon reach ("8").

    Raises:
        DataError: ``text`` is not a level of this distortion.
    """
    raw = text.strip()
    for cond in dist.conditions:
        if raw.lower() == cond.lower():
            return cond
    if dist.name.startswith("eidolon"):
        # A bare reach ("8") names the condition of this Eidolon variant ("8-10-10" for Eidolon I).
        for cond in dist.conditions:
            if raw == cond.split("-")[0]:
                return cond
    try:
        value = _numeric(raw.lstrip("cC") if dist.name == "contrast" else raw)
    except ValueError:
        value = None
    if value is not None:
        for cond in dist.conditions:
            try:
                cv = _numeric(cond.lstrip("c")) if dist.name == "contrast" else _numeric(cond)
            except ValueError:
                continue
            if dist.name == "contrast" and (math.isclose(cv, value) or math.isclose(cv, value * 100)):
                return cond
            if dist.name != "contrast" and (cv == value or math.isclose(cv, value)):
                return cond
    raise DataError(f"{text!r} is not a level of {dist.name}; levels: {' '.join(dist.conditions)}")


def condition_x(name: str, condition: str) -> float:
    """x-axis position of a condition in the accuracy curves: its index in the registry's condition order.

    Equal spacing keeps the small levels readable (0, 0.03, 0.05 ...); for Eidolon the index is log2(reach), as in
    the published figures. Conditions run from the control (left) to the strongest distortion (right).
    """
    dist = DISTORTIONS[ALIASES.get(name.lower(), name)]
    return float(dist.conditions.index(condition))


def distort_image(
    img: np.ndarray, name: str, condition: str, rng: np.random.Generator, *, phase_mode: PhaseMode = "faithful"
) -> np.ndarray:
    """Apply distortion ``name`` at ``condition`` (any spelling :func:`normalise_condition` accepts)."""
    dist = get_distortion(name, phase_mode=phase_mode)
    return dist.apply(img, dist.normalise_condition(condition), rng)


# ----------------------------------------------------------------------------------------------------------------
# Distorting a whole dataset folder
# ----------------------------------------------------------------------------------------------------------------


def _mvh_layout(name: str, stem: str, ext: str) -> str:
    # Output names are complete model-vs-human image names; every file goes into dnn/session-1/.
    return f"dnn/session-1/{name}.{ext}"


def _center_224(img: Image.Image, size: int) -> Image.Image:
    if size <= 0 or img.size == (size, size):
        return img
    import torchvision.transforms as T

    resize = T.Resize(round(size * 256 / 224), interpolation=T.InterpolationMode.BILINEAR)
    return T.CenterCrop(size)(resize(img))


def distort_folder(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    distortion: str,
    *,
    levels: Sequence[str] | None = None,
    seed: int = 0,
    size: int = 224,
    phase_mode: PhaseMode = "faithful",
    image_format: str = "png",
    batch_size: int = 16,
    workers: int = 0,
    limit: int | None = None,
):  # -> FolderJobSummary (imported lazily: folder_job imports torch)
    """Write a distorted copy of an ImageFolder at every level, laid out like a model-vs-human release.

    Every input ``<category>/<file>`` becomes, per level,
    ``OUT/dnn/session-1/<nnnn>_<code>_dnn_<condition>_<category>_00_<file stem>.png`` (underscores in the
    category are replaced by ``-`` so the name parses), so the output can be evaluated with
    ``texturebias benchmark`` exactly like the release tarballs. Inputs are first brought to ``size``×``size``
    (Resize(256) + CenterCrop(224) for 224; ``size=0`` keeps them as they are). Randomness is seeded per
    (seed, input path, distortion, level); the folder job (:mod:`texturebias.data.folder_job`) provides
    ``manifest.csv``, ``failed.csv``, atomic writes and resume.

    Args:
        data_dir: Input ImageFolder.
        out_dir: Output folder.
        distortion: Distortion name.
        levels: Conditions (any accepted spelling); default all of the distortion's.
        seed: Job seed.
        size: Working size (224, as the experiments; 0 keeps the input size).
        phase_mode: Phase scrambling: "faithful" or "corrected".
        image_format: "png" (default) or "jpg".
        batch_size, workers, limit: Passed to :func:`~texturebias.data.folder_job.run_folder_job`.

    Returns:
        The folder job's summary.
    """
    from texturebias.data.folder_job import ItemResult, run_folder_job

    dist = get_distortion(distortion, phase_mode=phase_mode)
    conditions = [dist.normalise_condition(c) for c in levels] if levels else list(dist.conditions)
    n_levels = len(conditions)

    def process(items: list, images: list) -> list:
        results = []
        for item, pil in zip(items, images, strict=True):
            arr = np.asarray(_center_224(pil, size), dtype=np.float64) / 255.0
            parts = item.relpath.split("/")
            category = (parts[0] if len(parts) > 1 else "none").replace("_", "-")
            stem = Path(parts[-1]).stem
            outputs, seeds = {}, {}
            for j, cond in enumerate(conditions):
                trial = item.index * n_levels + j + 1
                name = f"{trial:04d}_{dist.code}_dnn_{cond}_{category}_00_{stem}"
                outputs[name] = to_uint8(dist.apply(arr, cond, item.rng(dist.name, cond)))
                seeds[name] = item.seed(dist.name, cond)
            results.append(ItemResult(outputs=outputs, info={"seed": seeds}))
        return results

    return run_folder_job(
        data_dir,
        out_dir,
        process,
        seed=seed,
        batch_size=batch_size,
        workers=workers,
        image_format=image_format,
        layout=_mvh_layout,
        manifest_fields=["seed"],
        desc=f"distort {dist.name}",
        limit=limit,
    )
