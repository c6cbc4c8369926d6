"""AdaIN style transfer (Huang & Belongie, ICCV 2017) as used to build Stylized-ImageNet (REFERENCE §2).

The module here is a faithful, batched reimplementation of naoto0804/pytorch-AdaIN (the code that built
SIN): same networks (``texturebias.models.adain_nets``), same AdaIN op (unbiased variance + 1e-5), same style
interpolation and colour preservation, so the official ``vgg_normalised.pth``/``decoder.pth`` give the
official results. What it adds: per-style statistics that are computed once and reused
(:class:`StyleStats`), batches of different styles, bf16/fp16 autocast and channels_last, and custom
encoders/decoders (any VGG-style ``nn.Sequential``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from texturebias.models.adain_nets import ADAIN_DECODER, RELU_INDICES, VGG_NORMALISED, adain_decoder, vgg_normalised
from texturebias.models.weights import fetch_weights, load_checkpoint, load_into
from texturebias.utils.device import Precision, autocast

EPS = 1e-5

# Layers whose statistics define "style" in the AdaIN loss: relu1_1, relu2_1, relu3_1, relu4_1.
ADAIN_STYLE_LAYERS: tuple[int, ...] = tuple(RELU_INDICES[k] for k in ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))


@dataclass
class StyleStats:
    """Per-channel mean and std (unbiased variance + eps, square-rooted) of style features, shape ``B×C×1×1``.

    They depend only on the style image, so a dataset builder computes them once per style and reuses
    them for every content image paired with that style.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __len__(self) -> int:
        return self.mean.shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor | Sequence[int]) -> StyleStats:
        if isinstance(index, int):
            index = slice(index, index + 1)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.mean.device)
        return StyleStats(self.mean[index], self.std[index])

    def to(self, device: torch.device | str) -> StyleStats:
        return StyleStats(self.mean.to(device), self.std.to(device))

    @staticmethod
    def cat(stats: Sequence[StyleStats]) -> StyleStats:
        return StyleStats(torch.cat([s.mean for s in stats]), torch.cat([s.std for s in stats]))


def mean_std(feat: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and ``sqrt(unbiased var + eps)`` over H·W (the reference ``calc_mean_std``).

    Computed in float32 whatever the input dtype: under bf16 autocast the statistics are where precision
    matters (a variance of ~1e4-scale activations).
    """
    n, c = feat.shape[:2]
    flat = feat.float().reshape(n, c, -1)
    var = flat.var(dim=2, unbiased=True) + eps
    return flat.mean(dim=2).view(n, c, 1, 1), var.sqrt().view(n, c, 1, 1)


def adain(content_feat: torch.Tensor, style: torch.Tensor | StyleStats, eps: float = EPS) -> torch.Tensor:
    """AdaIN(c, s) = (c − μ(c)) / σ(c) · σ(s) + μ(s), per sample and channel (float32 result).

    Args:
        content_feat: ``N×C×H×W`` content features.
        style: ``N×C×H'×W'`` style features (any size) or their precomputed :class:`StyleStats` (``N`` or 1).
        eps: Added to the unbiased variances (1e-5 as the reference).
    """
    stats = style if isinstance(style, StyleStats) else StyleStats(*mean_std(style, eps))
    c_mean, c_std = mean_std(content_feat, eps)
    return (content_feat.float() - c_mean) / c_std * stats.std + stats.mean


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    flat = x.reshape(x.shape[0], 3, -1).double()
    mean = flat.mean(dim=2, keepdim=True)
    std = flat.std(dim=2, keepdim=True)  # unbiased, as the reference
    return flat, mean, std


def _mat_sqrt(x: torch.Tensor) -> torch.Tensor:
    u, d, vh = torch.linalg.svd(x)
    return u @ torch.diag_embed(d.sqrt()) @ vh


def preserve_color(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Transfer the content's colour statistics onto the *style image* (reference ``coral``), batched.

    Each image's pixels are standardised per channel (unbiased std); with ``Cov = x̂ x̂ᵀ + I`` (the reference
    does not divide by the pixel count), ``x̂_s' = sqrt(Cov_c) · inv(sqrt(Cov_s)) · x̂_s``, then rescaled with
    the content's per-channel std and mean. Matrix square roots via SVD.

    Args:
        style: ``N×3×H×W`` (or ``3×H×W``) style images in [0, 1].
        content: ``N×3×H'×W'`` (or ``1×3×…``, broadcast) content images in [0, 1].

    Returns:
        The recoloured style images, same shape and dtype as ``style`` (not clamped, as the reference).
    """
    squeeze = style.ndim == 3
    s = style.unsqueeze(0) if squeeze else style
    c = content.unsqueeze(0) if content.ndim == 3 else content
    if c.shape[0] == 1 and s.shape[0] > 1:
        c = c.expand(s.shape[0], *c.shape[1:])
    s_flat, s_mean, s_std = _channel_stats(s)
    c_flat, c_mean, c_std = _channel_stats(c)
    s_norm = (s_flat - s_mean) / s_std
    c_norm = (c_flat - c_mean) / c_std
    eye = torch.eye(3, dtype=torch.float64, device=s.device)
    s_cov = s_norm @ s_norm.transpose(1, 2) + eye
    c_cov = c_norm @ c_norm.transpose(1, 2) + eye
    transfer = _mat_sqrt(c_cov) @ torch.linalg.inv(_mat_sqrt(s_cov)) @ s_norm
    out = (transfer * c_std + c_mean).reshape(s.shape).to(style.dtype)
    return out[0] if squeeze else out


def _last_index(layers: Sequence[int]) -> int:
    return max(layers)


class AdaIN(nn.Module):
    """Encoder → AdaIN → decoder, the Stylized-ImageNet stylizer.

    Call it as ``model(content, style, alpha=1.0, style_weights=None, preserve_color=False)`` with images in
    [0, 1]; it returns the raw (unclamped) decoder output. Build it with :meth:`from_checkpoints` (official
    weights) or directly from any VGG-style encoder/decoder pair (custom, e.g. tiny models for 32×32 images).

    Args:
        encoder: An ``nn.Sequential`` mapping [0, 1] RGB to features; it is truncated after the AdaIN layer.
        decoder: Maps AdaIN-layer features back to RGB (raw output).
        style_layers: Indices (in ``encoder``) of the ReLU outputs used by the style loss when training a
            decoder; the last (largest) one is the AdaIN layer. Default: relu1_1–relu4_1 of the VGG.
        precision: "fp32", "bf16" (CPU AMX or GPU) or "fp16" (GPU) autocast for the convolutions; AdaIN
            statistics are always computed in float32.
        channels_last: Use the channels_last memory format (faster convolutions with oneDNN and cuDNN).
    """

    def __init__(
        self,
        encoder: nn.Sequential,
        decoder: nn.Module,
        *,
        style_layers: Sequence[int] = ADAIN_STYLE_LAYERS,
        precision: Precision = "fp32",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.style_layers = tuple(sorted(style_layers))
        self.encoder = nn.Sequential(*list(encoder)[: _last_index(self.style_layers) + 1])
        self.decoder = decoder
        for p in self.encoder.parameters():
            p.requires_grad_(False)  # the encoder is fixed (AdaIN trains only the decoder)
        self.precision: Precision = precision
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_checkpoints(
        cls,
        vgg: str | os.PathLike[str] | None = None,
        decoder: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        precision: Precision = "fp32",
        channels_last: bool = False,
    ) -> AdaIN:
        """The official networks with weights from local files, or the declared downloads when ``None``.

        Args:
            vgg: ``vgg_normalised.pth`` (full 53-module state dict) or ``None`` to fetch the declared weights.
            decoder: ``decoder.pth``, a checkpoint written by :func:`~texturebias.stylize.train.train_decoder`,
                or ``None`` to fetch the declared weights.
            device: Where to put the model.
            precision: See the class docstring.
            channels_last: See the class docstring.

        Raises:
            CheckpointError: a file that does not fit the networks (missing/unexpected keys, shapes).
        """
        vgg_path = Path(vgg) if vgg is not None else fetch_weights(VGG_NORMALISED)
        dec_path = Path(decoder) if decoder is not None else fetch_weights(ADAIN_DECODER)
        full_vgg = vgg_normalised("max")
        load_into(full_vgg, load_checkpoint(vgg_path), what=f"VGG weights {vgg_path}")
        dec = adain_decoder()
        # Training checkpoints hold the decoder under "model"; load_checkpoint unwraps it.
        load_into(dec, load_checkpoint(dec_path), what=f"decoder weights {dec_path}")
        model = cls(full_vgg, dec, precision=precision, channels_last=channels_last)
        return model.to(device).eval()

    # -- pieces ---------------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        for tensor in (*self.decoder.parameters(), *self.encoder.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")  # parameter-free networks (tests, identity maps)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features at the AdaIN layer (relu4_1 for the official encoder) of images in [0, 1] (or uint8)."""
        with autocast(self.device, self.precision):
            return self.encoder(self._prep(images))

    def encode_with_intermediate(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Features at every ``style_layers`` index (relu1_1 … relu4_1), for the training losses."""
        feats = []
        x = self._prep(images)
        with autocast(self.device, self.precision):
            for i, layer in enumerate(self.encoder):
                x = layer(x)
                if i in self.style_layers:
                    feats.append(x)
        return feats

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Decoder output (float32, unclamped) for AdaIN-layer features."""
        if self.channels_last:
            feat = feat.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            out = self.decoder(feat)
        return out.float().contiguous()

    def style_stats(self, styles: torch.Tensor) -> StyleStats:
        """:class:`StyleStats` of a batch of style images (compute once per style, reuse everywhere)."""
        return StyleStats(*mean_std(self.encode(styles)))

    def stylize_features(
        self,
        content_feat: torch.Tensor,
        stats: StyleStats,
        alpha: float | torch.Tensor = 1.0,
        style_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The decoder input ``t``: AdaIN (optionally a weighted mix of styles) blended with the content by α.

        Args:
            content_feat: ``N×C×H×W`` content features.
            stats: Style statistics: ``N`` (one per content) or 1 (broadcast); with ``style_weights`` of
                shape ``K``, ``K`` styles mixed for every content image; with shape ``N×K``, ``N·K`` stats
                laid out content-major.
            alpha: Scalar or per-sample tensor of shape ``N`` in [0, 1].
            style_weights: Interpolation weights (should sum to 1 per content).
        """
        cf = content_feat.float()
        if style_weights is None:
            t = adain(cf, stats)
        else:
            w = torch.as_tensor(style_weights, dtype=torch.float32, device=cf.device)
            n = cf.shape[0]
            if w.ndim == 1:
                w = w.unsqueeze(0).expand(n, -1)
            k = w.shape[1]
            c_mean, c_std = mean_std(cf)
            normed = (cf - c_mean) / c_std
            s_mean = stats.mean.reshape(-1, k, *stats.mean.shape[1:]) if len(stats) != k else stats.mean.unsqueeze(0)
            s_std = stats.std.reshape(-1, k, *stats.std.shape[1:]) if len(stats) != k else stats.std.unsqueeze(0)
            # Σ_k w_k AdaIN(c, s_k) = normed · Σ w_k σ_k + Σ w_k μ_k (AdaIN is affine in the style stats).
            wk = w.view(n, k, 1, 1, 1)
            t = normed * (wk * s_std).sum(1) + (wk * s_mean).sum(1)
        a = torch.as_tensor(alpha, dtype=torch.float32, device=cf.device)
        if a.ndim == 1:
            a = a.view(-1, 1, 1, 1)
        return a * t + (1 - a) * cf

    # -- the reference call ------------------------------------------------------------------------------

    def forward(
        self,
        content: torch.Tensor,
        style: torch.Tensor | StyleStats,
        alpha: float | torch.Tensor = 1.0,
        style_weights: Sequence[float] | torch.Tensor | None = None,
        preserve_color: bool = False,
    ) -> torch.Tensor:
        """Stylize ``content`` (``N×3×H×W`` in [0, 1]) with ``style``; returns the raw decoder output.

        Args:
            content: Content images in [0, 1].
            style: Style images in [0, 1] (``N`` or 1, any size; ``K`` when ``style_weights`` has ``K``
                entries) or precomputed :class:`StyleStats`.
            alpha: Content–style trade-off in [0, 1] (1 = full style, as Stylized-ImageNet); scalar or ``N``.
            style_weights: Mix ``K`` styles with these weights (reference "interpolation"; should sum to 1).
            preserve_color: Recolour each style image to its content's colour statistics first.
        """
        if preserve_color:
            if isinstance(style, StyleStats):
                raise ValueError("preserve_color needs style images, not precomputed statistics")
            if style_weights is not None:
                raise ValueError("preserve_color with style interpolation is not supported (as the reference)")
            style = preserve_color_fn(style, content)
        content_feat = self.encode(content)
        stats = style if isinstance(style, StyleStats) else self.style_stats(style)
        weights = None if style_weights is None else torch.as_tensor(style_weights, dtype=torch.float32)
        if weights is not None and weights.ndim == 1 and len(stats) != weights.shape[0]:
            raise ValueError(f"{weights.shape[0]} style weights for {len(stats)} styles")
        t = self.stylize_features(content_feat, stats, alpha, weights)
        return self.decode(t)


preserve_color_fn = preserve_color  # forward() has a parameter of the same name
