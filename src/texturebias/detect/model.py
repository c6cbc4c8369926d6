"""Faster R-CNN detectors whose body is any texturebias classifier (REFERENCE §6, the SIN paper's Table 2).

:func:`detection_model` builds torchvision's :class:`~torchvision.models.detection.FasterRCNN`:

- **ResNet family** (torchvision ``resnet18/34/50/101/152``, ResNeXt/wide variants, the SIN models
  ``resnet50_sin``, ``resnet50_sin_in``, ``resnet50_sin_in_in``): the classifier becomes a ResNet-FPN body the
  way torchvision builds ``fasterrcnn_resnet50_fpn`` (``backbone_utils._resnet_fpn_extractor``): BatchNorm
  frozen (:class:`~torchvision.ops.misc.FrozenBatchNorm2d`), the first stages frozen (``trainable_layers``,
  default 3 = ``layer2``-``layer4`` train), FPN over ``layer1``-``layer4`` plus a max-pooled level.
- **Feature-map models** (any registry model with ``forward_features`` returning an N×C×H×W map, e.g. the
  demo's ``demo_cnn``): the map feeds one RPN/RoI level directly.

Weights come from the model's declared pretrained weights (``pretrained=True``) or a ``checkpoint`` (a
torchvision/plain state dict, a DataParallel SIN checkpoint, a ``texturebias train`` checkpoint). Transfer is
strict: every body key must load; only the classifier head (``fc.*`` for ResNets, the last linear layer
otherwise) is dropped, and the dropped keys are reported (:class:`BackboneTransfer`, logged and kept on the
detector as ``detector.backbone_transfer``). BatchNorm's ``num_batches_tracked`` counters have no meaning
in a frozen BatchNorm and are skipped. The detector normalises its inputs with the mean/std of the backbone's
own preprocessing record, not a hard-coded ImageNet mean. Inputs to the detector are RGB tensors in [0, 1].

Training samples anchors and proposals with :class:`SeededSampler`, seeded per image, so a batch split
over DDP ranks samples exactly what one process samples, and resume is bit-exact.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from texturebias.errors import CheckpointError, TextureBiasError, first_line
from texturebias.models import Preprocessing, create_model, get_model_entry, load_checkpoint, load_into, load_model
from texturebias.models import resolve_preprocessing as model_preprocessing
from texturebias.utils.progress import get_logger

log = get_logger("detect.model")

#: Detector settings that rebuild a trained detector (stored in its checkpoints).
SPEC_KEYS = (
    "backbone", "num_classes", "trainable_layers", "min_size", "max_size", "anchor_sizes", "aspect_ratios",
    "image_mean", "image_std", "box_batch_size_per_image", "rpn_batch_size_per_image",
)  # fmt: skip


@dataclass(frozen=True)
class BackboneTransfer:
    """What :func:`detection_model` loaded into the detector's body.

    Attributes:
        source: Where the weights came from ("checkpoint PATH", "weights NAME", or "none (random)").
        kind: "resnet-fpn" or "feature-map".
        loaded: Number of state-dict entries loaded into the body.
        dropped: The classifier-head keys left out (``fc.weight``, ``fc.bias``).
        skipped_counters: BatchNorm ``num_batches_tracked`` entries (unused by frozen BatchNorm).
    """

    source: str
    kind: str
    loaded: int
    dropped: tuple[str, ...] = ()
    skipped_counters: int = 0

    def summary(self) -> str:
        """One line for logs."""
        dropped = ", ".join(self.dropped) if self.dropped else "nothing"
        return f"body from {self.source}: {self.loaded} tensors loaded, dropped {dropped}"


@dataclass(frozen=True)
class DetectorSpec:
    """Everything needed to rebuild a detector's architecture (saved in its checkpoints).

    Attributes:
        backbone: Registry name of the backbone classifier.
        num_classes: Detector classes including background (VOC: 21).
        trainable_layers: Body stages that train (ResNet: 0-5, torchvision's meaning).
        min_size: Shorter image side after the detector's resize.
        max_size: Cap of the longer side.
        anchor_sizes: One size per FPN level (5 levels) or the sizes of the single feature map; ``None``:
            torchvision's (32, 64, 128, 256, 512) for FPN, (32, 64, 128, 256) for a feature map.
        aspect_ratios: Anchor aspect ratios (height / width).
        image_mean: Input normalisation mean (from the backbone's preprocessing).
        image_std: Input normalisation std.
        box_batch_size_per_image: RoIs sampled per image for the box head (torchvision: 512).
        rpn_batch_size_per_image: Anchors sampled per image for the RPN (torchvision: 256).
        classes: Class names of labels 1..num_classes-1 (not part of the architecture; for outputs).
    """

    backbone: str
    num_classes: int = 21
    trainable_layers: int = 3
    min_size: int = 600
    max_size: int = 1000
    anchor_sizes: tuple[int, ...] | None = None
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    image_mean: tuple[float, float, float] | None = None
    image_std: tuple[float, float, float] | None = None
    box_batch_size_per_image: int = 512
    rpn_batch_size_per_image: int = 256
    classes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in {**{k: getattr(self, k) for k in SPEC_KEYS}, "classes": self.classes}.items()
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DetectorSpec:
        """Inverse of :meth:`to_json` (unknown keys are ignored)."""
        kw = {k: obj[k] for k in (*SPEC_KEYS, "classes") if k in obj}
        for key in ("anchor_sizes", "aspect_ratios", "image_mean", "image_std", "classes"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


class SeededSampler(BalancedPositiveNegativeSampler):
    """torchvision's balanced positive/negative sampler, drawing from one generator per image when seeded.

    With :attr:`seeds` set (one integer per image of the batch, from the image's identity and the epoch),
    which anchors/RoIs an image contributes no longer depends on the order in which images are processed
    or on the process: one process and N DDP ranks sample the same, and a resumed run samples like an
    uninterrupted one. Without seeds it behaves exactly like torchvision's (global RNG).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        super().__init__(batch_size_per_image, positive_fraction)
        self.seeds: list[int] | None = None

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if self.seeds is None:
            return super().__call__(matched_idxs)
        if len(self.seeds) != len(matched_idxs):
            raise RuntimeError(f"SeededSampler: {len(self.seeds)} seeds for {len(matched_idxs)} images")
        pos_idx, neg_idx = [], []
        for seed, matched in zip(self.seeds, matched_idxs, strict=True):
            gen = torch.Generator().manual_seed(seed)
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm1 = torch.randperm(positive.numel(), generator=gen)[:num_pos].to(positive.device)
            perm2 = torch.randperm(negative.numel(), generator=gen)[:num_neg].to(negative.device)
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[perm1]] = 1
            neg_mask[negative[perm2]] = 1
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx


def set_sampling_seeds(detector: nn.Module, seeds: Sequence[int] | None) -> None:
    """Seed the RPN and RoI samplers of ``detector`` per image (``None``: back to the global RNG)."""
    rpn = detector.rpn.fg_bg_sampler  # type: ignore[union-attr]
    roi = detector.roi_heads.fg_bg_sampler  # type: ignore[union-attr]
    if isinstance(rpn, SeededSampler):
        rpn.seeds = None if seeds is None else [int(s) % 2**63 for s in seeds]
    if isinstance(roi, SeededSampler):
        # A different stream than the RPN's, still a pure function of the image's seed.
        roi.seeds = None if seeds is None else [(int(s) * 6364136223846793005 + 1442695040888963407) % 2**63
                                                for s in seeds]  # fmt: skip


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a :class:`FrozenBatchNorm2d` with the same statistics.

    Returns ``module`` (changed in place; a bare BatchNorm module is returned converted).
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.track_running_stats and module.running_mean is not None:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)  # type: ignore[arg-type]
        return frozen
    for name, child in module.named_children():
        new = freeze_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def _last_linear_name(model: nn.Module) -> str | None:
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


def _source_state_dict(
    backbone: str, checkpoint: str | os.PathLike[str] | None, pretrained: bool
) -> tuple[dict[str, torch.Tensor] | None, str]:
    if checkpoint is not None:
        entry = get_model_entry(backbone)
        return load_checkpoint(checkpoint, key_filter=entry.key_filter), f"checkpoint {checkpoint}"
    if pretrained:
        classifier, _ = load_model(backbone, pretrained=True)
        entry = get_model_entry(backbone)
        name = entry.weights.name if entry.weights is not None else backbone
        return classifier.state_dict(), f"weights {name}"
    return None, "none (random initialisation)"


def _load_body(
    body: nn.Module, sd: dict[str, torch.Tensor], head: str, *, backbone: str, source: str, kind: str
) -> BackboneTransfer:
    prefix = head + "."
    dropped = tuple(k for k in sd if k.startswith(prefix))
    counters = sum(1 for k in sd if k.endswith("num_batches_tracked"))
    body_sd = {k: v for k, v in sd.items() if not k.startswith(prefix) and not k.endswith("num_batches_tracked")}
    try:
        load_into(body, body_sd, what=source)
    except CheckpointError as exc:
        raise CheckpointError(f"{source} is not a {backbone} classifier: {exc}") from None
    return BackboneTransfer(source, kind, len(body_sd), dropped, counters)


def _is_resnet(model: nn.Module) -> bool:
    return isinstance(model, torchvision.models.ResNet)


def backbone_preprocessing(backbone: str) -> Preprocessing:
    """The preprocessing record of the backbone classifier (its mean/std normalise the detector's inputs)."""
    return model_preprocessing(backbone)


def detection_model(
    backbone: str,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    pretrained: bool = False,
    num_classes: int = 21,
    trainable_layers: int = 3,
    min_size: int = 600,
    max_size: int = 1000,
    anchor_sizes: Sequence[int] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    box_batch_size_per_image: int = 512,
    rpn_batch_size_per_image: int = 256,
    classes: Sequence[str] = (),
    **detector_kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with the body of a registered classifier (see the module docstring).

    Args:
        backbone: Registry name: a ResNet-family classifier (``resnet50``, ``resnet50_sin_in``, ...) or a model
            with ``forward_features`` (``demo_cnn``).
        checkpoint: Classifier weights to transfer (wins over ``pretrained``).
        pretrained: Transfer the backbone's declared pretrained weights (ImageNet for ``resnet50``).
        num_classes: Detector classes including background (VOC: 21).
        trainable_layers: Stages of the body that are trained; ResNets: 0-5 as in torchvision (3 =
            ``layer2``-``layer4``); feature-map models: the last N top-level stages.
        min_size: Shorter side the detector resizes images to (VOC recipe: 600).
        max_size: Longer side cap (VOC recipe: 1000).
        anchor_sizes: See :class:`DetectorSpec`.
        aspect_ratios: Anchor aspect ratios.
        box_batch_size_per_image: RoIs sampled per image for the box head.
        rpn_batch_size_per_image: Anchors sampled per image for the RPN.
        classes: Class names (kept in :attr:`detector.spec` for outputs).
        **detector_kwargs: Passed to :class:`~torchvision.models.detection.FasterRCNN` (``box_score_thresh``,
            ``box_detections_per_img`` ...).

    Returns:
        The detector (train mode, on the CPU), with ``detector.spec`` (:class:`DetectorSpec`) and
        ``detector.backbone_transfer`` (:class:`BackboneTransfer`).

    Raises:
        UnknownModelError: unknown backbone name.
        CheckpointError: a checkpoint of another architecture (one line naming the mismatched keys).
        TextureBiasError: a backbone that is neither a ResNet nor exposes a feature map, or bad settings.
    """
    pre = backbone_preprocessing(backbone)
    classifier = create_model(backbone)
    sd, source = _source_state_dict(backbone, checkpoint, pretrained)
    if _is_resnet(classifier):
        if not 0 <= trainable_layers <= 5:
            raise TextureBiasError(f"trainable_layers must be in [0, 5] for a ResNet body, got {trainable_layers}")
        classifier.fc = nn.Identity()  # type: ignore[assignment]  # the head is dropped from the body
        freeze_batchnorm(classifier)
        transfer = BackboneTransfer(source, "resnet-fpn", 0)
        if sd is not None:
            transfer = _load_body(classifier, sd, "fc", backbone=backbone, source=source, kind="resnet-fpn")
        body: nn.Module = _resnet_fpn_extractor(classifier, trainable_layers)  # type: ignore[arg-type]
        sizes = tuple(anchor_sizes) if anchor_sizes is not None else (32, 64, 128, 256, 512)
        if len(sizes) != 5:
            raise TextureBiasError(f"a ResNet-FPN detector needs 5 anchor sizes (one per level), got {len(sizes)}")
        anchors = AnchorGenerator(tuple((s,) for s in sizes), (tuple(aspect_ratios),) * len(sizes))
        roi_pool = None  # FasterRCNN's default: MultiScaleRoIAlign over the four FPN maps
    elif hasattr(classifier, "forward_features"):
        body, transfer = _feature_map_body(classifier, sd, source, backbone, trainable_layers, pre)
        sizes = tuple(anchor_sizes) if anchor_sizes is not None else (32, 64, 128, 256)
        anchors = AnchorGenerator((sizes,), (tuple(aspect_ratios),))
        roi_pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    else:
        raise TextureBiasError(
            f"backbone {backbone!r} ({type(classifier).__name__}) is neither a ResNet nor a model with "
            "forward_features; use resnet18/34/50/101, a SIN ResNet-50 or a feature-map model such as demo_cnn"
        )
    detector = FasterRCNN(
        body,
        num_classes=num_classes,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(pre.mean),
        image_std=list(pre.std),
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_batch_size_per_image=box_batch_size_per_image,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        **detector_kwargs,
    )
    detector.rpn.fg_bg_sampler = SeededSampler(rpn_batch_size_per_image, detector.rpn.fg_bg_sampler.positive_fraction)
    detector.roi_heads.fg_bg_sampler = SeededSampler(
        box_batch_size_per_image, detector.roi_heads.fg_bg_sampler.positive_fraction
    )
    detector.spec = DetectorSpec(  # type: ignore[assignment]
        backbone=backbone, num_classes=num_classes, trainable_layers=trainable_layers, min_size=min_size,
        max_size=max_size, anchor_sizes=tuple(anchor_sizes) if anchor_sizes is not None else None,
        aspect_ratios=tuple(float(a) for a in aspect_ratios), image_mean=tuple(pre.mean), image_std=tuple(pre.std),
        box_batch_size_per_image=box_batch_size_per_image, rpn_batch_size_per_image=rpn_batch_size_per_image,
        classes=tuple(classes),
    )  # fmt: skip
    detector.backbone_transfer = transfer  # type: ignore[assignment]
    if sd is not None:
        log.info("%s", transfer.summary())
    return detector


class FeatureMapBody(nn.Module):
    """A classifier's ``forward_features`` as a one-level detection backbone (``{"0": map}``, ``out_channels``)."""

    def __init__(self, model: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body = model
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return OrderedDict([("0", self.body.forward_features(x))])  # type: ignore[operator]


def _feature_map_body(
    classifier: nn.Module,
    sd: dict[str, torch.Tensor] | None,
    source: str,
    backbone: str,
    trainable_layers: int,
    pre: Preprocessing,
) -> tuple[nn.Module, BackboneTransfer]:
    head = _last_linear_name(classifier)
    if head is not None:
        parent_name, _, child = head.rpartition(".")
        parent = classifier.get_submodule(parent_name) if parent_name else classifier
        setattr(parent, child, nn.Identity())
    freeze_batchnorm(classifier)
    transfer = BackboneTransfer(source, "feature-map", 0)
    if sd is not None:
        transfer = _load_body(classifier, sd, head or "fc", backbone=backbone, source=source, kind="feature-map")
    stages = [name for name, child in classifier.named_children() if any(True for _ in child.parameters())]
    if not 0 <= trainable_layers <= len(stages):
        raise TextureBiasError(f"trainable_layers must be in [0, {len(stages)}] for {backbone}, got {trainable_layers}")
    frozen = stages[: len(stages) - trainable_layers]
    for name, param in classifier.named_parameters():
        if name.split(".")[0] in frozen:
            param.requires_grad_(False)
    with torch.no_grad():
        was_training = classifier.training
        classifier.eval()
        probe = classifier.forward_features(torch.zeros(1, 3, pre.input_size, pre.input_size))  # type: ignore[operator]
        classifier.train(was_training)
    if probe.ndim != 4:
        raise TextureBiasError(f"{backbone}.forward_features returns shape {tuple(probe.shape)}, not a feature map")
    return FeatureMapBody(classifier, int(probe.shape[1])), transfer


def build_detector(spec: DetectorSpec, **detector_kwargs: Any) -> FasterRCNN:
    """The (untrained, randomly initialised body) detector of ``spec``; load a trained state dict into it."""
    return detection_model(
        spec.backbone, pretrained=False, num_classes=spec.num_classes, trainable_layers=spec.trainable_layers,
        min_size=spec.min_size, max_size=spec.max_size, anchor_sizes=spec.anchor_sizes,
        aspect_ratios=spec.aspect_ratios, box_batch_size_per_image=spec.box_batch_size_per_image,
        rpn_batch_size_per_image=spec.rpn_batch_size_per_image, classes=spec.classes, **detector_kwargs,
    )  # fmt: skip


DETECTOR_FORMATS = ("texturebias-detect-v1", "texturebias-detector-v1")


def load_detector(path: str | os.PathLike[str], **detector_kwargs: Any) -> tuple[FasterRCNN, DetectorSpec]:
    """Rebuild a trained detector from a ``detect-train`` checkpoint (``checkpoint_last.pt`` or ``detector.pt``).

    Returns:
        ``(detector in eval mode on the CPU, its spec)``.

    Raises:
        CheckpointError: not a detector checkpoint of texturebias, or weights that do not fit.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        ck = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"{p}: not a readable checkpoint ({first_line(exc)})") from None
    if not isinstance(ck, dict) or ck.get("format") not in DETECTOR_FORMATS or "spec" not in ck:
        raise CheckpointError(f"{p}: not a texturebias detector checkpoint (checkpoint_last.pt or detector.pt of "
                              "`texturebias detect-train`)")  # fmt: skip
    spec = DetectorSpec.from_json(ck["spec"])
    detector = build_detector(spec, **detector_kwargs)
    load_into(detector, ck["model"], what=f"detector checkpoint {p}")
    return detector.eval(), spec


def export_backbone_state_dict(detector: nn.Module) -> dict[str, torch.Tensor]:
    """The trained ResNet body of ``detector`` as a torchvision-style ResNet state dict (no ``fc``).

    Frozen BatchNorm keeps ``weight``, ``bias``, ``running_mean`` and ``running_var`` under torchvision's names;
    ``num_batches_tracked`` is added (as 0) so that the dict has every key of a torchvision ResNet except
    ``fc.*``. detectron2's ``convert-torchvision-to-d2.py`` and mmdetection's ``Pretrained`` init read it.

    Raises:
        TextureBiasError: the detector's body is not a ResNet-FPN.
    """
    body = getattr(getattr(detector, "backbone", None), "body", None)
    if body is None or not hasattr(body, "layer4") or not hasattr(body, "conv1"):
        raise TextureBiasError("export-backbone needs a ResNet-FPN detector (this one's body is not a ResNet)")
    frozen = {name for name, module in body.named_modules() if isinstance(module, FrozenBatchNorm2d)}
    out: dict[str, torch.Tensor] = {}
    for key, value in body.state_dict().items():
        out[key] = value.detach().clone()
        module, _, leaf = key.rpartition(".")
        if leaf == "running_var" and module in frozen:  # torchvision's key order: the counter follows running_var
            out[f"{module}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out
