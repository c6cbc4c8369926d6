"""Texture synthesis by Gram-matrix matching (Gatys, Ecker & Bethge, NeurIPS 2015; DISTORTIONS.md S2).

Recipe, as in the reference (DeepTextures):

1. The source is rescaled, aspect kept, so that H·W = ``size``² (``im_size = 256``).
2. Target Grams G/M at conv1_1 (post-ReLU), pool1, pool2, pool3 and pool4 of the normalised, average-pooled
   VGG-19; loss Σ_l w_l/(4N_l²)·‖G_l − Ĝ_l‖², w_l = 1e9.
3. Start from white noise, optimise with L-BFGS (2000 iterations, history 20, zero tolerances) inside the box
   [min, max] of the preprocessed source (one scalar bound over all channels and pixels).
4. Optionally match each colour channel's histogram to the source (100 bins; the notebook does it, the paper's
   figures do not).

How the preprocessing is adapted to ``vgg_normalised.pth``: that network takes RGB in [0, 1] and its module 0
(a 1×1 conv) performs the Caffe preprocessing (BGR × 255 − mean). We optimise in the output space of module 0
— exactly the space the reference optimises in — and compute the bounds there. The reference's N(0, 1) noise
in that space is 1/255 noise in RGB around the Caffe mean colour; we draw it in RGB (mean colour + N(0, 1)/255)
and map it through module 0, which reproduces the reference distribution with the official weights and stays
a faint, nearly grey noise for any other module 0 (torchvision normalisation, test weights). The result is
mapped back to RGB by inverting module 0.

Two optimisers:

* ``method="scipy"`` — faithful: ``scipy.optimize.minimize(method="L-BFGS-B")`` with per-pixel bounds,
  ``maxcor=history``, ``ftol=gtol=0``, one image at a time, float64 on the optimiser side.
* ``method="torch"`` — fast: :func:`~texturebias.texture.lbfgs.batched_lbfgs`, a projected L-BFGS that
  optimises a whole batch on the device (GPU, or CPU with bf16 autocast) with one forward/backward per
  iteration for all images.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import nn

from texturebias.texture.gram import TextureLoss
from texturebias.texture.lbfgs import batched_lbfgs
from texturebias.texture.network import CAFFE_MEAN_RGB, DEFAULT_LAYERS, texture_network
from texturebias.utils.device import Precision, autocast, resolve_device
from texturebias.utils.progress import progress

Method = Literal["scipy", "torch"]
ImageLike = Image.Image | np.ndarray | torch.Tensor


@dataclass
class TextureResult:
    """One synthesised texture.

    Attributes:
        image: RGB float32 array (H, W, 3) in [0, 1] (after histogram matching when requested).
        loss: Final texture loss (reference scale, layer weights 1e9).
        losses: Loss after every iteration (index 0 = the white-noise start).
        iterations: Iterations run (scipy may stop early when its line search fails).
        seed: The seed of the white-noise start.
    """

    image: np.ndarray
    loss: float
    losses: list[float] = field(default_factory=list)
    iterations: int = 0
    seed: int = 0

    def to_pil(self) -> Image.Image:
        """The image as 8-bit RGB."""
        return Image.fromarray(np.round(np.clip(self.image, 0.0, 1.0) * 255.0).astype(np.uint8), mode="RGB")


def area_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(H', W') with the aspect ratio of (height, width) and H'·W' ≈ size² (the reference's ``im_size``)."""
    scale = size / math.sqrt(height * width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """PIL image, (H, W[, C]) array (uint8 or float in [0, 1]) or (3, H, W) tensor → float32 (H, W, 3) in [0, 1]."""
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu().float()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
        arr = t.expand(3, -1, -1).permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(image)
        arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W) or (H, W, 3) array, got shape {arr.shape}")
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr, dtype=np.float32)


def resize_rgb(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float RGB array with PIL bilinear (antialiased when shrinking), per channel in float."""
    if arr.shape[:2] == (height, width):
        return arr
    chans = [
        np.asarray(Image.fromarray(arr[:, :, c], mode="F").resize((width, height), Image.Resampling.BILINEAR))
        for c in range(3)
    ]
    return np.stack(chans, axis=2).astype(np.float32)


def histogram_match(image: np.ndarray, source: np.ndarray, bins: int = 100) -> np.ndarray:
    """Match each colour channel's histogram of ``image`` to ``source`` (DeepTextures' post-processing).

    The source's CDF is estimated from a ``bins``-bin histogram; pixels of ``image`` are ranked (ties get the
    mean rank), mapped to a uniform variable rank/n and through the source's inverse CDF (linear between bin
    edges).

    Args:
        image: (H, W, 3) float array.
        source: (H', W', 3) float array (any size).
        bins: Histogram bins (reference: 100).
    """
    from scipy.stats import rankdata

    out = np.empty_like(image, dtype=np.float32)
    for c in range(image.shape[2]):
        hist, edges = np.histogram(source[:, :, c].ravel(), bins=bins, density=True)
        cdf = np.zeros(edges.shape, dtype=np.float64)
        cdf[1:] = np.cumsum(hist * np.diff(edges))
        u = rankdata(image[:, :, c].ravel(), method="average") / image[:, :, c].size
        u = np.minimum(u, cdf[-1])
        out[:, :, c] = np.interp(u, cdf, edges).reshape(image.shape[:2])
    return out


def _noise_start(
    loss_fn: TextureLoss, shape: tuple[int, int], seeds: Sequence[int], device: torch.device
) -> torch.Tensor:
    """White noise in preprocessed space: Caffe mean colour + N(0, 1)/255 in RGB, through module 0 (see module doc)."""
    noise = []
    for s in seeds:
        gen = torch.Generator().manual_seed(int(s))
        noise.append(torch.randn(3, *shape, generator=gen))
    mean = torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1)
    rgb = (mean + torch.stack(noise) / 255.0).to(device)
    with torch.no_grad():
        return loss_fn.preprocess_images(rgb).float()


class TextureSynthesizer:
    """Gatys texture synthesis with a fixed network and settings; call :meth:`synthesize` on images.

    Args:
        network: Texture network in the 53-module layout (default: :func:`~texturebias.texture.network.texture_network`
            with the declared ``vgg_normalised.pth`` weights).
        layers: Matched layers (default conv1_1, pool1, pool2, pool3, pool4).
        iterations: L-BFGS iterations (reference: 2000).
        history: L-BFGS history size (reference: 20).
        method: "scipy" (faithful L-BFGS-B, one image at a time) or "torch" (batched, device-side).
        size: The source is rescaled so that H·W = size² (reference: 256).
        output_size: (H, W) of the synthesis; default: the rescaled source's size.
        histogram_matching: Per-channel histogram matching to the source afterwards.
        precision: "fp32" or "bf16"/"fp16" autocast for the network (Grams and loss stay float32).
        device: "auto", "cpu", "cuda", ...
        batch_size: Images optimised together in ``method="torch"``.
        show_progress: Progress bar with the current loss.
    """

    def __init__(
        self,
        network: nn.Sequential | None = None,
        *,
        layers: Sequence[str] = DEFAULT_LAYERS,
        iterations: int = 2000,
        history: int = 20,
        method: Method = "scipy",
        size: int | None = 256,
        output_size: tuple[int, int] | None = None,
        histogram_matching: bool = False,
        precision: Precision = "fp32",
        device: str | torch.device = "auto",
        batch_size: int = 8,
        show_progress: bool | None = None,
    ) -> None:
        if method not in ("scipy", "torch"):
            raise ValueError(f"method must be 'scipy' or 'torch', not {method!r}")
        if iterations < 0 or history < 1 or batch_size < 1:
            raise ValueError("iterations must be >= 0, history and batch_size >= 1")
        if network is None:
            network = texture_network()
        self.device = resolve_device(device)
        self.loss_fn = TextureLoss(network, layers).to(self.device)
        if self.device.type == "cpu" and precision != "fp32":
            # oneDNN's bf16 convolutions are much faster in channels_last on AMX CPUs.
            self.loss_fn = self.loss_fn.to(memory_format=torch.channels_last)
        self.layers = tuple(layers)
        self.iterations = iterations
        self.history = history
        self.method: Method = method
        self.size = size
        self.output_size = output_size
        self.histogram_matching = histogram_matching
        self.precision: Precision = precision
        self.batch_size = batch_size
        self.show_progress = show_progress

    def settings(self) -> dict[str, Any]:
        """Everything that determines a synthesised texture, for the records of a resumable job.

        The network enters by a digest of its weights, so another checkpoint under the same name is noticed.
        """
        h = hashlib.sha256()
        for key, value in self.loss_fn.state_dict().items():
            h.update(key.encode())
            h.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return {
            "layers": list(self.layers),
            "iterations": self.iterations,
            "history": self.history,
            "optimizer": self.method,
            "size": self.size,
            "output_size": list(self.output_size) if self.output_size else None,
            "histogram_matching": self.histogram_matching,
            "precision": self.precision,
            "network_sha256": h.hexdigest(),
        }

    # -- objective ---------------------------------------------------------------------------------------------
    def _objective(self, targets: list[torch.Tensor]):  # noqa: ANN202 - closure factory
        def fg(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = z.detach().float().requires_grad_(True)
            inp = z.contiguous(memory_format=torch.channels_last) if self.precision != "fp32" else z
            with torch.enable_grad(), autocast(self.device, self.precision):
                loss = self.loss_fn(inp, targets)
            (grad,) = torch.autograd.grad(loss.sum(), z)
            return loss.detach(), grad

        return fg

    def prepare(self, image: ImageLike) -> np.ndarray:
        """The source as the optimiser sees it: float RGB, rescaled to H·W = size² when ``size`` is set."""
        arr = to_rgb_array(image)
        if self.size is not None:
            arr = resize_rgb(arr, *area_size(arr.shape[0], arr.shape[1], self.size))
        return arr

    def synthesize(self, images: Sequence[ImageLike], seeds: Sequence[int] | int = 0) -> list[TextureResult]:
        """Synthesise one texture per source image.

        Args:
            images: Sources (PIL images, arrays or tensors, any sizes).
            seeds: One seed per image, or a base seed ``s`` (image i gets ``s + i``). The result of an image
                depends only on its seed and settings, not on which other images share its batch (up to the
                float rounding of batched convolutions, which L-BFGS amplifies over many iterations).

        Returns:
            One :class:`TextureResult` per image, in order.
        """
        sources = [self.prepare(im) for im in images]
        seed_list = [seeds + i for i in range(len(sources))] if isinstance(seeds, int) else [int(s) for s in seeds]
        if len(seed_list) != len(sources):
            raise ValueError(f"{len(seed_list)} seeds for {len(sources)} images")
        results: list[TextureResult | None] = [None] * len(sources)
        if self.method == "scipy":
            for i, src in enumerate(sources):
                results[i] = self._run_scipy(src, seed_list[i])
        else:
            # Batch images whose output sizes agree (a batch must be one tensor).
            groups: dict[tuple[int, int], list[int]] = {}
            for i, src in enumerate(sources):
                groups.setdefault(self._out_shape(src), []).append(i)
            for idx in groups.values():
                for start in range(0, len(idx), self.batch_size):
                    chunk = idx[start : start + self.batch_size]
                    for i, res in zip(
                        chunk, self._run_torch([sources[i] for i in chunk], [seed_list[i] for i in chunk]), strict=True
                    ):
                        results[i] = res
        return [r for r in results if r is not None]

    # -- internals ---------------------------------------------------------------------------------------------
    def _out_shape(self, src: np.ndarray) -> tuple[int, int]:
        return self.output_size if self.output_size is not None else (src.shape[0], src.shape[1])

    def _targets_and_bounds(self, srcs: list[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        grams: list[list[torch.Tensor]] = []
        lows, highs = [], []
        with torch.no_grad():
            for src in srcs:
                rgb = torch.from_numpy(src).permute(2, 0, 1)[None].to(self.device)
                z = self.loss_fn.preprocess_images(rgb)
                # Targets in float32 whatever the synthesis precision: they are the fixed reference.
                grams.append(self.loss_fn.grams(z))
                lows.append(z.min())
                highs.append(z.max())
        targets = [torch.cat([g[k] for g in grams]) for k in range(len(self.loss_fn.layers))]
        return targets, torch.stack(lows), torch.stack(highs)

    def _finish(
        self, z: torch.Tensor, src: np.ndarray, loss: float, losses: list[float], iters: int, seed: int
    ) -> TextureResult:
        rgb = self.loss_fn.deprocess(z[None].float())[0].clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
        if self.histogram_matching:
            rgb = np.clip(histogram_match(rgb, src), 0.0, 1.0)
        return TextureResult(image=rgb.astype(np.float32), loss=loss, losses=losses, iterations=iters, seed=seed)

    def _run_scipy(self, src: np.ndarray, seed: int) -> TextureResult:
        from scipy.optimize import minimize

        targets, low, high = self._targets_and_bounds([src])
        shape = self._out_shape(src)
        z0 = _noise_start(self.loss_fn, shape, [seed], self.device)
        lo, hi = float(low[0]), float(high[0])
        fg = self._objective(targets)
        losses: list[float] = []
        last = {"loss": math.nan}

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            z = torch.from_numpy(x).to(self.device, torch.float32).reshape(z0.shape)
            loss, grad = fg(z)
            last["loss"] = float(loss[0])
            return last["loss"], grad.reshape(-1).double().cpu().numpy()

        x0 = np.clip(z0.reshape(-1).double().cpu().numpy(), lo, hi)
        losses.append(fun(x0)[0])
        bar = progress(total=self.iterations, desc="texture (L-BFGS-B)", unit="it", disable=self._disable())

        def callback(xk: np.ndarray) -> None:
            losses.append(last["loss"])
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4g}", refresh=False)

        # maxfun is raised so that only maxiter (and a failing line search) stop the run, as in the reference.
        res = minimize(
            fun,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=list(zip(np.full(x0.size, lo), np.full(x0.size, hi), strict=True)),
            callback=callback,
            options={
                "maxiter": self.iterations,
                "maxcor": self.history,
                "ftol": 0.0,
                "gtol": 0.0,
                "maxfun": max(15000, 20 * self.iterations),
            },
        )
        bar.close()
        z = torch.from_numpy(res.x).float().reshape(z0.shape[1:])
        return self._finish(z, src, float(res.fun), losses, int(res.nit), seed)

    def _run_torch(self, srcs: list[np.ndarray], seeds: list[int]) -> list[TextureResult]:
        targets, low, high = self._targets_and_bounds(srcs)
        shape = self._out_shape(srcs[0])
        z0 = _noise_start(self.loss_fn, shape, seeds, self.device)
        bar = progress(
            total=self.iterations, desc=f"texture (batched L-BFGS, {len(srcs)} img)", unit="it", disable=self._disable()
        )

        def callback(it: int, f: torch.Tensor) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(f.max()):.4g}", refresh=False)

        res = batched_lbfgs(
            self._objective(targets),
            z0,
            low.view(-1, 1, 1, 1).float(),
            high.view(-1, 1, 1, 1).float(),
            max_iter=self.iterations,
            history_size=self.history,
            callback=callback,
        )
        bar.close()
        out = []
        for b, (src, seed) in enumerate(zip(srcs, seeds, strict=True)):
            losses = [float(h[b]) for h in res.history]
            out.append(self._finish(res.x[b], src, float(res.loss[b]), losses, self.iterations, seed))
        return out

    def _disable(self) -> bool | None:
        return None if self.show_progress is None else not self.show_progress


def synthesize_texture(
    image: ImageLike,
    network: nn.Sequential | None = None,
    *,
    seed: int = 0,
    **kwargs: object,
) -> TextureResult:
    """Synthesise one texture from ``image``; keyword arguments as for :class:`TextureSynthesizer`."""
    return TextureSynthesizer(network, **kwargs).synthesize([image], seeds=[seed])[0]  # type: ignore[arg-type]
