"""The image manipulations of Geirhos et al. (NeurIPS 2018), one function per recipe (DISTORTIONS.md §3).

Conventions follow the original code (github.com/rgeirhos/generalisation-humans-DNNs, commit 0b88343):

* inputs are float64 HWC RGB arrays in [0, 1] (``imread(path) / 255``); 2-D greyscale arrays are accepted too;
* "grey" is skimage's ``rgb2gray`` on the sRGB values (0.2125/0.7154/0.0721, no linearisation);
* contrast, uniform noise and salt-and-pepper return 2-D arrays, the other greyscale recipes stack the grey image
  into three channels, false colour returns colour;
* saving multiplies by 255 and casts to uint8 — **truncation**, not rounding (:func:`to_uint8`);
* randomness comes from an explicit :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
import os
from typing import Literal

import numpy as np

# scipy is imported inside the functions that use it: ~0.35 s that every CLI command paid for the distortion names.
from PIL import Image

from texturebias.utils.io import atomic_path

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

    arr = to_uint8(img)
    pil = Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB")
    with atomic_path(path) as tmp:
        if tmp.suffix.lower() in (".jpg", ".jpeg"):
            pil.save(tmp, quality=95)
        else:
            pil.save(tmp)


def clip01(x: np.ndarray) -> np.ndarray:
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
    return clip01(g + rng.uniform(-width, width, size=g.shape))


def salt_and_pepper(
    img: np.ndarray, p: float, rng: np.random.Generator, *, contrast_level: float = NOISE_CONTRAST
) -> np.ndarray:
    """Grey image at 30 % contrast; each pixel turns white with probability p/2 and black with p/2 (2-D)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"salt-and-pepper probability must lie in [0, 1], got {p}")
    g = contrast(img, contrast_level)
    u = rng.random(g.shape)
    g = g + (u >= 1.0 - p / 2.0) - (u < p / 2.0)
    return clip01(g)


def _gauss_constant(g: np.ndarray, sigma: float) -> np.ndarray:
    # Zero padding would darken the border; G18 pads with the dataset's mean grey.
    import scipy.ndimage

    return scipy.ndimage.gaussian_filter(g, sigma=sigma, mode="constant", cval=MEAN_GREY)


def low_pass(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of the grey image (σ in pixels, constant padding 0.4423), 3 channels.

    σ = 0 is an exact identity, as scipy skips the filter.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    g = rgb2gray(img)
    return grey3(clip01(_gauss_constant(g, sigma)))


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
    return grey3(clip01(h))


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
    import scipy.fft

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
    return grey3(clip01(rebuilt.real))


def power_equalise(img: np.ndarray, spectrum: np.ndarray, *, return_unclipped: bool = False) -> np.ndarray:
    """Replace the grey image's amplitude spectrum by ``spectrum`` (fftshifted, same size), keep the phase.

    With G18's mean spectrum the pre-clip mean is 22803.9/224² = 0.45448. Returns 3 channels.
    """
    import scipy.fft

    g = rgb2gray(img)
    spectrum = np.asarray(spectrum, dtype=np.float64)
    if spectrum.shape != g.shape:
        raise ValueError(f"power equalisation needs a {spectrum.shape[0]}x{spectrum.shape[1]} image, got {g.shape}")
    phase = np.angle(scipy.fft.fftshift(scipy.fft.fft2(g)))
    out = scipy.fft.ifft2(scipy.fft.ifftshift(spectrum * np.exp(1j * phase))).real
    if return_unclipped:
        return out
    return grey3(clip01(out))


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
    back = clip01(back.reshape(img.shape))
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
