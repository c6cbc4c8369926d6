"""The texture network of Gatys, Ecker & Bethge (2015): a normalised VGG-19 with average pooling.

Two ways to get one (DISTORTIONS.md T1, T3):

* :func:`texture_network` — the official ``vgg_normalised.pth`` (weight record
  :data:`~texturebias.models.adain_nets.VGG_NORMALISED`, shared with the AdaIN stylizer) loaded into
  :func:`~texturebias.models.adain_nets.vgg_normalised` with ``pool="avg"``. That file *is* the DeepTextures
  network: the Caffe ``vgg_normalised.caffemodel`` converted to Torch, with a 1×1 convolution in front
  (module 0) that does the Caffe preprocessing (RGB in [0, 1] → BGR × 255 − mean).
* :func:`normalise_torchvision_vgg19` — a torchvision VGG-19 rescaled channel by channel so that each
  filter's mean post-ReLU activation over natural images is 1 (the DeepTextures README procedure),
  max-pooling swapped for average pooling, and its own ImageNet mean/std normalisation as module 0.

Both come as the same 53-module ``nn.Sequential`` layout (module 0 = preprocessing 1×1 conv, then
``pad, conv, relu`` triples and pools), so one table of layer indices (:data:`LAYER_INDICES`) serves both.

Padding: the Torch conversion used by AdaIN pads with reflection; the Caffe network Gatys used pads with
zeros (``pad: 1``). ``padding="zero"`` (the default here) is the faithful T1 choice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from texturebias.data.images import load_image
from texturebias.errors import TextureBiasError
from texturebias.models.adain_nets import _VGG_CFG, VGG_NORMALISED, vgg_normalised
from texturebias.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from texturebias.models.weights import fetch_weights, load_checkpoint, load_into
from texturebias.texture.layers import DEFAULT_LAYERS

#: Mean colour of the Caffe preprocessing, in RGB order (T1: BGR mean 0.40760392, 0.45795686, 0.48501961).
CAFFE_MEAN_RGB: tuple[float, float, float] = (0.48501961, 0.45795686, 0.40760392)


def _layer_table() -> tuple[dict[str, int], dict[str, int]]:
    """Map layer names to (index of the module whose output is that layer, channel count)."""
    index: dict[str, int] = {}
    channels: dict[str, int] = {}
    i = 1  # module 0 is the preprocessing 1x1 conv
    block, conv, ch = 1, 1, 3
    for item in _VGG_CFG:
        if item == "M":
            index[f"pool{block}"] = i
            channels[f"pool{block}"] = ch
            i += 1
            block, conv = block + 1, 1
            continue
        ch = int(item)
        relu = i + 2  # pad, conv, relu
        for name in (f"conv{block}_{conv}", f"relu{block}_{conv}"):
            index[name] = relu
            channels[name] = ch
        i += 3
        conv += 1
    return index, channels


LAYER_INDICES, LAYER_CHANNELS = _layer_table()


def check_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Validate layer names and return them ordered shallow → deep, without duplicates.

    Raises:
        TextureBiasError: an unknown layer name (the message lists the valid ones).
    """
    out = []
    for name in layers:
        if name not in LAYER_INDICES:
            valid = ", ".join(n for n in LAYER_INDICES if not n.startswith("relu"))
            raise TextureBiasError(f"unknown texture layer {name!r}; choose from: {valid}")
        if name not in out:
            out.append(name)
    if not out:
        raise TextureBiasError("no texture layers given")
    return tuple(sorted(out, key=lambda n: LAYER_INDICES[n]))


def gram_parameter_count(layers: Sequence[str] = DEFAULT_LAYERS) -> int:
    """Number of free parameters of the texture model: Σ N_l(N_l+1)/2 (Gram matrices are symmetric).

    For the full pool4 model this is 176,640 — the "177k parameters" of DeepTextures' Figure 3A.
    """
    return sum(LAYER_CHANNELS[n] * (LAYER_CHANNELS[n] + 1) // 2 for n in check_layers(layers))


def _set_padding(net: nn.Sequential, padding: str) -> nn.Sequential:
    """Switch every 3×3 conv of the layout to zero or reflection padding (state-dict keys are unchanged).

    Zero padding is done by the conv itself (``padding=1``, the pad module becomes ``Identity``): the
    same result as ``ZeroPad2d`` without a padded copy of every activation.
    """
    if padding not in ("zero", "reflect"):
        raise ValueError(f"padding must be 'zero' or 'reflect', not {padding!r}")
    for i, module in enumerate(net):
        if isinstance(module, (nn.ReflectionPad2d, nn.ZeroPad2d, nn.Identity)) and i + 1 < len(net):
            conv = net[i + 1]
            assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
            if padding == "zero":
                net[i] = nn.Identity()
                conv.padding = (1, 1)
            else:
                net[i] = nn.ReflectionPad2d(1)
                conv.padding = (0, 0)
    return net


def texture_network(
    checkpoint: str | os.PathLike[str] | dict[str, torch.Tensor] | None = None,
    *,
    pretrained: bool = True,
    padding: str = "zero",
) -> nn.Sequential:
    """The DeepTextures network: normalised VGG-19, average pooling, Caffe preprocessing as module 0.

    Args:
        checkpoint: A ``vgg_normalised.pth``-layout file or state dict (keys ``0`` … ``51``). Default: the
            declared weights :data:`~texturebias.models.adain_nets.VGG_NORMALISED` (downloaded and hash-checked once).
        pretrained: With no ``checkpoint``, ``False`` leaves PyTorch's random initialisation (tests only).
        padding: "zero" (Caffe, faithful to Gatys et al.) or "reflect" (the AdaIN Torch port).

    Returns:
        The 53-module ``nn.Sequential`` in eval mode with gradients disabled on its parameters.
    """
    net = vgg_normalised(pool="avg")
    if checkpoint is not None:
        sd = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
        load_into(net, sd, what=str(checkpoint) if not isinstance(checkpoint, dict) else "state dict")
    elif pretrained:
        path = fetch_weights(VGG_NORMALISED)
        load_into(net, load_checkpoint(path), what=str(path))
    _set_padding(net, padding)
    net.eval().requires_grad_(False)
    return net


def _preprocessing_conv(mean: Sequence[float], std: Sequence[float]) -> nn.Conv2d:
    """A 1×1 conv computing (x − mean)/std per channel, so every network takes RGB in [0, 1]."""
    conv = nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c, c, 0, 0] = 1.0 / std[c]
        conv.bias.copy_(torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]))
    return conv


def caffe_preprocessing() -> nn.Conv2d:
    """Module 0 of the official ``vgg_normalised.pth``, rebuilt: RGB in [0, 1] → BGR × 255 − Caffe mean (T1).

    Useful to pair random test weights with the real preprocessing, so that the optimisation box and the
    de-processed images have their real meaning.
    """
    conv = nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[2 - c, c, 0, 0] = 255.0  # RGB -> BGR
        conv.bias.copy_(-255.0 * torch.tensor(CAFFE_MEAN_RGB).flip(0))
    return conv


def torchvision_vgg19_as_texture_network(vgg19: nn.Module | None = None) -> nn.Sequential:
    """Re-pack a torchvision ``vgg19`` (or its ``features``) into the 53-module texture layout.

    Max-pooling becomes average pooling (T1), convolutions get explicit zero padding, and module 0
    normalises with torchvision's ImageNet mean/std. No rescaling happens here; see
    :func:`normalise_torchvision_vgg19`.

    Args:
        vgg19: A ``torchvision.models.vgg19`` model or its ``features``; default: a randomly initialised one.
    """
    from torchvision.models.vgg import cfgs, make_layers

    if vgg19 is None:
        vgg19 = make_layers(cfgs["E"])  # VGG-19 features only: the 120M-parameter classifier is not needed
    features = getattr(vgg19, "features", vgg19)
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    if len(convs) != 16:
        raise TextureBiasError(f"expected the 16 convolutions of VGG-19, found {len(convs)}")
    net = vgg_normalised(pool="avg")
    targets = [m for m in list(net)[1:] if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for src, dst in zip(convs, targets, strict=True):
            if src.weight.shape != dst.weight.shape:
                raise TextureBiasError(f"conv shape {tuple(src.weight.shape)} != {tuple(dst.weight.shape)}")
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    net[0] = _preprocessing_conv(IMAGENET_MEAN, IMAGENET_STD)
    _set_padding(net, "zero")
    return net.eval().requires_grad_(False)


@torch.no_grad()
def normalise_vgg_(net: nn.Sequential, images: torch.Tensor, *, batch_size: int = 4) -> list[torch.Tensor]:
    """Rescale every conv filter in place so its mean post-ReLU activation over ``images`` is 1 (T3).

    Layers are visited in order, each measured with all earlier layers already rescaled. ReLU is
    positively homogeneous, so this only rescales features per channel — but it changes the relative
    weight of channels in the Gram loss, which is why Gatys et al. do it. Dead channels (mean 0) are
    left as they are.

    Args:
        net: A network in the 53-module texture layout (module 0 = preprocessing).
        images: RGB in [0, 1], shape (B, 3, H, W) — a handful of natural images.
        batch_size: Images per forward pass.

    Returns:
        The per-layer divisors that were applied (one tensor per conv, in order).
    """
    modules = list(net)
    scales: list[torch.Tensor] = []
    for i, module in enumerate(modules):
        if i == 0 or not isinstance(module, nn.Conv2d):
            continue
        head = nn.Sequential(*modules[: i + 2])  # through this conv's ReLU
        total = torch.zeros(module.out_channels, dtype=torch.float64)
        count = 0
        for start in range(0, images.shape[0], batch_size):
            act = head(images[start : start + batch_size])
            total += act.double().sum(dim=(0, 2, 3))
            count += act.shape[0] * act.shape[2] * act.shape[3]
        mean = total / count
        scale = torch.where(mean > 0, mean, torch.ones_like(mean)).float()
        module.weight.div_(scale.view(-1, 1, 1, 1))
        module.bias.div_(scale)
        scales.append(scale)
    return scales


def default_normalisation_images(size: int = 224) -> torch.Tensor:
    """Natural photos bundled with scikit-image (chelsea, coffee, astronaut, rocket, ...) as a (B, 3, s, s) batch."""
    import numpy as np
    import skimage.data
    from PIL import Image

    base = Path(skimage.data.__file__).parent
    names = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg")
    batch = []
    for name in names:
        p = base / name
        if not p.exists():
            continue
        img = load_image(p)
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
        batch.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1))
    if not batch:
        raise TextureBiasError("no scikit-image sample photos found for the VGG normalisation")
    return torch.stack(batch)


def normalise_torchvision_vgg19(
    vgg19: nn.Module | None = None, images: torch.Tensor | None = None, *, size: int = 224
) -> nn.Sequential:
    """A torchvision VGG-19 turned into a Gatys texture network by the T3 procedure.

    Args:
        vgg19: ``torchvision.models.vgg19(weights=...)`` (pass your own pretrained one); default: random init.
        images: Natural images (B, 3, H, W) in [0, 1] to measure mean activations on; default:
            :func:`default_normalisation_images` at ``size``.
        size: Side of the default normalisation images.

    Returns:
        The normalised network in the 53-module texture layout (average pooling, zero padding).
    """
    net = torchvision_vgg19_as_texture_network(vgg19)
    if images is None:
        images = default_normalisation_images(size)
    normalise_vgg_(net, images)
    return net
