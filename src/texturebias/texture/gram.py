"""Gram-matrix texture statistics and the Gatys et al. (2015) texture loss (DISTORTIONS.md T1, S2).

For a layer with N channels and M = H·W positions, F is N × M and G = F Fᵀ / M. The loss per layer is
E_l = w_l / (4 N_l²) · Σ_ij (G_l − Ĝ_l)², which equals the paper's 1/(4 N² M²) Σ (G_raw − Ĝ_raw)² because
G carries the 1/M. Dividing by M makes the statistics — and hence the loss — independent of image size,
so a texture can be synthesised at any size from a source of any size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from texturebias.texture.network import DEFAULT_LAYERS, LAYER_INDICES, check_layers

#: Layer weight of the reference implementation (every layer 1e9; only relative values matter to L-BFGS).
REFERENCE_LAYER_WEIGHT = 1e9


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """G = F Fᵀ / M for a (B, N, H, W) feature map, computed in float32; returns (B, N, N)."""
    b, n, h, w = features.shape
    f = features.float().reshape(b, n, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (h * w)


class TextureLoss(nn.Module):
    """Gram matrices of a texture network and the per-image Gatys loss against target Grams.

    The network's module 0 (the preprocessing 1×1 conv) is kept apart: optimisation runs in the
    *preprocessed* space, as in the reference (noise, bounds and L-BFGS all live there), and only the
    modules up to the deepest requested layer are run.

    Args:
        network: A texture network in the 53-module layout (:func:`~texturebias.texture.network.texture_network`).
        layers: Layer names (default conv1_1, pool1 … pool4).
        layer_weights: One weight per layer (default 1e9 each, the reference value) or a single float.
    """

    def __init__(
        self,
        network: nn.Sequential,
        layers: Sequence[str] = DEFAULT_LAYERS,
        layer_weights: Sequence[float] | float = REFERENCE_LAYER_WEIGHT,
    ) -> None:
        super().__init__()
        self.layers = check_layers(layers)
        weights = (
            [float(layer_weights)] * len(self.layers)
            if isinstance(layer_weights, (int, float))
            else list(layer_weights)
        )
        if len(weights) != len(self.layers):
            raise ValueError(f"{len(weights)} layer weights for {len(self.layers)} layers")
        self.layer_weights = weights
        self.indices = [LAYER_INDICES[n] for n in self.layers]
        self.preprocess = network[0]
        # Modules 1 … deepest; features[k - 1] is network module k.
        self.features = nn.Sequential(*list(network)[1 : max(self.indices) + 1])
        self.requires_grad_(False)

    def preprocess_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) → the network's preprocessed space."""
        return self.preprocess(rgb)

    def deprocess(self, z: torch.Tensor) -> torch.Tensor:
        """Invert the preprocessing 1×1 conv (an affine map on colours): preprocessed space → RGB."""
        w = self.preprocess.weight.detach().double().reshape(3, 3)
        b = self.preprocess.bias.detach().double()
        inv = torch.linalg.inv(w)
        flat = z.detach().double().movedim(1, -1) - b
        return (flat @ inv.T).movedim(-1, 1).to(z.dtype)

    def feature_maps(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at :attr:`layers` for preprocessed inputs ``z``."""
        out = []
        wanted = set(self.indices)
        x = z
        for k, module in enumerate(self.features, start=1):
            x = module(x)
            if k in wanted:
                out.append(x)
        return out

    def grams(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Gram matrices (float32) at every layer for preprocessed inputs ``z``."""
        maps = self.feature_maps(z)
        with torch.autocast(z.device.type, enabled=False):
            return [gram_matrix(f) for f in maps]

    def forward(self, z: torch.Tensor, targets: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-image loss Σ_l w_l/(4N_l²)·‖G_l(z) − Ĝ_l‖²_F, shape (B,).

        Args:
            z: Preprocessed images (B, 3, H, W).
            targets: Target Grams per layer, (B, N, N) or (1, N, N) (broadcast).
        """
        grams = self.grams(z)
        with torch.autocast(z.device.type, enabled=False):
            total = torch.zeros(z.shape[0], device=z.device, dtype=torch.float32)
            for g, t, w in zip(grams, targets, self.layer_weights, strict=True):
                n = g.shape[-1]
                total = total + (w / (4.0 * n * n)) * (g - t.float()).pow(2).sum(dim=(1, 2))
        return total


def gram_loss(
    network: nn.Sequential, image: torch.Tensor, source: torch.Tensor, layers: Sequence[str] = DEFAULT_LAYERS
) -> torch.Tensor:
    """Texture loss between RGB images ``image`` and ``source`` (each (B, 3, H, W) in [0, 1]; sizes may differ).

    Convenience wrapper around :class:`TextureLoss` with the reference weights; returns shape (B,).
    """
    loss = TextureLoss(network, layers)
    with torch.no_grad():
        targets = loss.grams(loss.preprocess_images(source))
        return loss(loss.preprocess_images(image), targets)
