"""Zero-shot CLIP classifiers from open_clip as ``open_clip/<arch>[:<tag>]`` (optional: ``texturebias[clip]``).

A CLIP model becomes a 1000-way ImageNet classifier the way OpenAI's CLIP ImageNet notebook (Radford et al.,
*Learning Transferable Visual Models From Natural Language Supervision*, ICML 2021) and open_clip's
zero-shot evaluation build it: every ImageNet class name is put into the 80 prompt templates of OpenAI's
ensemble ("a bad photo of a {}.", ...), the text embeddings are L2-normalised, averaged per class and
normalised again; these 1000 rows are a linear head, and ``logits = logit_scale · normalise(image
features) @ headᵀ``. The class names and templates are open_clip's own (``IMAGENET_CLASSNAMES``,
``OPENAI_IMAGENET_TEMPLATES``), so the result is what open_clip's ImageNet zero-shot numbers use. The model
is an ordinary ``nn.Module`` with 1000 logits, so shape bias, the model-vs-human benchmark and robustness
curves treat it like any ImageNet classifier (the 16-category decision uses the same aggregation).

Computing the head means 80,000 prompts through the text tower (minutes on a CPU, seconds on a GPU, which
is used when there is one), so the head is cached in ``$TEXTUREBIAS_HOME/clip/`` under a key made of the
architecture, the tag, a sha256 of the model's weights and a sha256 of the class names and templates: other
weights (random init, another checkpoint) or other prompts never reuse a stale head.

Weights come from open_clip's own loader (``open_clip.create_model_and_transforms(arch, pretrained=tag)``:
Hugging Face cache or open_clip's URL cache); offline, a missing file is one :class:`DownloadError` naming
what to download. ``checkpoint=FILE`` (``--checkpoint``) is handed to the same loader as a local file.
Preprocessing is read from open_clip's configuration (the architecture's image size, the tag's mean, std,
interpolation and resize mode) without building the model. open_clip is imported only when such a name is
asked for or listed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from texturebias.errors import CheckpointError, DownloadError, UnknownModelError
from texturebias.models.preprocessing import Preprocessing
from texturebias.models.registry import ModelEntry
from texturebias.utils.download import texturebias_home
from texturebias.utils.io import save_torch
from texturebias.utils.progress import get_logger, progress

PREFIX = "open_clip/"

CACHE_FORMAT = "texturebias-clip-text-head-v1"
"""``format`` field of the cached text-head files."""

CLASSES_PER_BATCH = 10
"""Classes whose prompts go through the text tower together (open_clip's default batching)."""

_log = get_logger(__name__)


def open_clip_available() -> bool:
    """Whether the optional dependency open_clip (``pip install 'texturebias[clip]'``) is installed."""
    return importlib.util.find_spec("open_clip") is not None


def parse_clip_name(name: str) -> tuple[str, str | None]:
    """``open_clip/ViT-B-32:openai`` → ``("ViT-B-32", "openai")``; ``open_clip/ViT-B-32`` → ``("ViT-B-32", None)``.

    A ``/`` in the architecture is read as ``-`` (open_clip's own rule: ``ViT-B/32`` is ``ViT-B-32``).
    """
    body = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    arch, sep, tag = body.partition(":")
    return arch.replace("/", "-"), (tag or None) if sep else None


# --------------------------------------------------------------------------------------------- prompts


def imagenet_prompts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The 1000 ImageNet class names and the 80 prompt templates of OpenAI's ensemble, from open_clip.

    Returns:
        ``(class_names, templates)``; each template is a string with one ``{}`` where the class name goes
        (open_clip stores them as lambdas; applying each to ``"{}"`` recovers the string).
    """
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    templates = tuple(_template_string(t) for t in OPENAI_IMAGENET_TEMPLATES)
    return tuple(IMAGENET_CLASSNAMES), templates


def _template_string(template: str | Callable[[str], str]) -> str:
    text = template if isinstance(template, str) else template("{}")
    if text.count("{}") != 1:
        raise ValueError(f"a prompt template needs exactly one '{{}}' for the class name: {text!r}")
    return text


def fill_template(template: str, class_name: str) -> str:
    """``"a photo of a {}."`` + ``"tench"`` → ``"a photo of a tench."`` (no ``str.format``: names may hold braces)."""
    return template.replace("{}", class_name, 1)


def prompts_digest(class_names: Sequence[str], templates: Sequence[str]) -> str:
    """sha256 of the class names and templates, in order (part of the text-head cache key)."""
    payload = json.dumps({"classes": list(class_names), "templates": list(templates)}, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def weights_digest(model: nn.Module) -> str:
    """sha256 over a module's state dict: names, dtypes, shapes and bytes, in order (part of the cache key)."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        t = value.detach().to("cpu").contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- text head


@torch.inference_mode()
def text_head(
    clip_model: nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    class_names: Sequence[str],
    templates: Sequence[str],
    *,
    classes_per_batch: int = CLASSES_PER_BATCH,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Zero-shot classifier weights: per class, the normalised mean of the normalised prompt embeddings.

    Radford et al. 2021 (OpenAI's ImageNet notebook; open_clip's ``build_zero_shot_classifier``): for class
    ``c``, ``w_c = normalise(mean_t normalise(encode_text(template_t(c))))``.

    Args:
        clip_model: An open_clip model (anything with ``encode_text``); put in eval mode here.
        tokenizer: open_clip's tokenizer for that model (list of strings → token tensor).
        class_names: One name per output class.
        templates: Prompt strings with one ``{}`` each.
        classes_per_batch: Classes whose prompts share one forward pass.
        device: Where to run the text tower (default: where the model is); the result is on the CPU.

    Returns:
        ``C × D`` float32 tensor with unit rows.
    """
    if not class_names or not templates:
        raise ValueError("text_head needs at least one class name and one template")
    clip_model.eval()
    if device is None:
        device = next(clip_model.parameters()).device
    rows = []
    starts = range(0, len(class_names), classes_per_batch)
    for start in progress(starts, desc="CLIP text head", unit="batch"):
        names = class_names[start : start + classes_per_batch]
        texts = [fill_template(t, c) for c in names for t in templates]
        embeddings = clip_model.encode_text(tokenizer(texts).to(device)).float()
        embeddings = F.normalize(embeddings, dim=-1).reshape(len(names), len(templates), -1).mean(dim=1)
        rows.append(F.normalize(embeddings, dim=-1).cpu())
    return torch.cat(rows)


def text_head_cache_path(arch: str, tag: str | None, weights_sha256: str, prompts_sha256: str) -> Path:
    """Where the text head of these weights and prompts is cached (under ``$TEXTUREBIAS_HOME/clip``)."""
    safe_arch = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in arch)
    safe_tag = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tag or "none")
    name = f"{safe_arch}__{safe_tag}__w{weights_sha256[:16]}__p{prompts_sha256[:16]}.pt"
    return texturebias_home() / "clip" / name


def cached_text_head(
    clip_model: nn.Module,
    tokenizer: Callable[[], Callable[[list[str]], torch.Tensor]],
    *,
    arch: str,
    tag: str | None,
    class_names: Sequence[str],
    templates: Sequence[str],
) -> torch.Tensor:
    """:func:`text_head`, read from or written to the cache (atomically; read back with ``weights_only``).

    Args:
        clip_model: The open_clip model whose text tower embeds the prompts.
        tokenizer: Returns the tokenizer; called only when the head is not cached (open_clip's tokenizers
            for Hugging Face text towers need a download).
        arch: open_clip architecture (cache key).
        tag: Pretrained tag, or ``None`` (cache key).
        class_names: One name per class.
        templates: Prompt strings with one ``{}`` each.

    Returns:
        ``C × D`` float32 tensor with unit rows, on the CPU.
    """
    w_sha = weights_digest(clip_model)
    p_sha = prompts_digest(class_names, templates)
    path = text_head_cache_path(arch, tag, w_sha, p_sha)
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True, map_location="cpu")
            head = saved["class_embeddings"]
            if (
                saved.get("format") == CACHE_FORMAT
                and saved.get("weights_sha256") == w_sha
                and saved.get("prompts_sha256") == p_sha
                and isinstance(head, torch.Tensor)
                and head.ndim == 2
                and head.shape[0] == len(class_names)
            ):
                return head.float()
            _log.warning("cached CLIP text head %s does not match; recomputing it", path)
        except Exception as exc:  # a truncated or foreign file: recompute rather than fail
            _log.warning("cached CLIP text head %s is unreadable (%s); recomputing it", path, type(exc).__name__)
    # The text tower is the expensive part (80,000 prompts for ImageNet): use a GPU when there is one.
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    _log.info(
        "computing the CLIP text head of %s (%d classes x %d prompts, on %s); cached in %s",
        arch,
        len(class_names),
        len(templates),
        device.type,
        path,
    )
    original = next(clip_model.parameters()).device
    try:
        head = text_head(clip_model.to(device), tokenizer(), class_names, templates, device=device)
    finally:
        clip_model.to(original)
    record = {
        "format": CACHE_FORMAT,
        "arch": arch,
        "tag": tag,
        "weights_sha256": w_sha,
        "prompts_sha256": p_sha,
        "class_names": list(class_names),
        "templates": list(templates),
        "class_embeddings": head,
    }
    save_torch(path, record)
    return head


# ---------------------------------------------------------------------------------------- classifier


class ZeroShotClassifier(nn.Module):
    """CLIP image tower + a linear head of class text embeddings: ``logit_scale · normalise(f(x)) @ Wᵀ``.

    Attributes:
        visual: The open_clip image encoder.
        head: ``Linear(D, C, bias=False)`` whose rows are the unit-norm class embeddings.
        logit_scale: The model's learned temperature, already exponentiated (100 for OpenAI's CLIP).
        logit_bias: The model's learned bias (SigLIP), or 0.
    """

    def __init__(
        self, visual: nn.Module, class_embeddings: torch.Tensor, logit_scale: float, logit_bias: float = 0.0
    ) -> None:
        super().__init__()
        self.visual = visual
        num_classes, dim = class_embeddings.shape
        self.head = nn.Linear(dim, num_classes, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(class_embeddings)
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))
        self.register_buffer("logit_bias", torch.tensor(float(logit_bias)))

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.head.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings (N × D)."""
        features = self.visual(x)
        if isinstance(features, tuple):  # towers that also return tokens (CoCa) put the pooled output first
            features = features[0]
        return F.normalize(features, dim=-1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from normalised image embeddings (N × C)."""
        return self.logit_scale * self.head(features) + self.logit_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for images ``x`` (N × 3 × H × W, normalised with the model's preprocessing)."""
        return self.forward_head(self.forward_features(x))


# ------------------------------------------------------------------------------------- preprocessing


def preprocessing_from_open_clip(config: Mapping[str, Any]) -> Preprocessing:
    """A :class:`Preprocessing` from an open_clip preprocess configuration (``model.visual.preprocess_cfg``).

    open_clip's eval transform for ``resize_mode="shortest"`` is Resize(size) + CenterCrop(size), i.e.
    ``resize_size = input_size``. ``"squash"`` (SigLIP) resizes both sides to ``size``; for square images —
    the cue-conflict and model-vs-human stimuli — that is the same, and other images are centre-cropped
    instead (a warning says so when the model is built). ``interpolation="random"`` is bicubic at eval time.

    Raises:
        UnknownModelError: a non-square size or ``resize_mode="longest"`` (padding), which the toolkit's
            Resize + CenterCrop transform cannot reproduce.
    """
    size = config.get("size", 224)
    if isinstance(size, Sequence):
        height, width = (int(v) for v in size[-2:])
        if height != width:
            raise UnknownModelError(f"open_clip image size {height}x{width} is not square; not supported")
        size = height
    resize_mode = config.get("resize_mode") or "shortest"
    if resize_mode not in ("shortest", "squash"):
        raise UnknownModelError(f"open_clip resize_mode {resize_mode!r} is not supported (only 'shortest', 'squash')")
    interpolation = config.get("interpolation") or "bicubic"
    if interpolation == "random":
        interpolation = "bicubic"
    return Preprocessing(
        mean=_three(config.get("mean")),
        std=_three(config.get("std")),
        input_size=int(size),
        resize_size=int(size),
        interpolation=interpolation,
    )


def _three(value: Any) -> tuple[float, float, float]:
    values = [float(v) for v in value] if isinstance(value, Sequence) else [float(value)] * 3
    if len(values) != 3:
        raise UnknownModelError(f"open_clip mean/std {value!r} does not have three channels")
    return values[0], values[1], values[2]


def clip_preprocessing_config(arch: str, tag: str | None) -> dict[str, Any]:
    """open_clip's final preprocess configuration of ``arch`` with ``tag``'s weights, without building it.

    Mirrors ``open_clip.create_model``: the defaults of ``PreprocessCfg``, the tag's pretrained record on
    top, and the image size of the architecture's vision tower.
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = asdict(PreprocessCfg())
    if tag:
        cfg = merge_preprocess_dict(cfg, open_clip.get_pretrained_cfg(arch, tag))
    model_cfg = open_clip.get_model_config(arch) or {}
    cfg["size"] = model_cfg.get("vision_cfg", {}).get("image_size", cfg["size"])
    return cfg


# -------------------------------------------------------------------------------------------- build


def _build(
    arch: str,
    tag: str | None,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str | Callable[[str], str]] | None = None,
) -> nn.Module:
    import open_clip

    if class_names is None:
        class_names, default_templates = imagenet_prompts()
        templates = templates or default_templates
    elif templates is None:
        templates = imagenet_prompts()[1]
    template_strings = tuple(_template_string(t) for t in templates)
    name = f"{PREFIX}{arch}" + (f":{tag}" if tag else "")
    if num_classes is not None and num_classes != len(class_names):
        raise CheckpointError(
            f"{name}: the zero-shot head has one row per class name ({len(class_names)}), not {num_classes}; "
            "pass class_names= for another label space"
        )
    if pretrained and checkpoint is None and tag is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise CheckpointError(
            f"{name} names no pretrained tag; use {PREFIX}{arch}:<tag> (tags: {', '.join(tags) or 'none'}) or "
            "--checkpoint FILE"
        )
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    source: str | None = str(checkpoint) if checkpoint is not None else (tag if pretrained else None)
    options: dict[str, Any] = {}
    if "pretrained_text" in inspect.signature(open_clip.create_model).parameters:  # open_clip >= 3
        options["pretrained_text"] = False  # random init stays random (no Hugging Face text-tower weights)
    if tag_cfg.get("quick_gelu") and not (open_clip.get_model_config(arch) or {}).get("quick_gelu"):
        # open_clip records that these weights were trained with QuickGELU; its plain configs use GELU and
        # only warn about the mismatch. Build what the weights expect.
        options["force_quick_gelu"] = True
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    try:
        clip_model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=source, **options)
    except Exception as exc:  # open_clip raises RuntimeError/FileNotFoundError/whatever the hub client raises
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        if checkpoint is not None:
            raise CheckpointError(
                f"open_clip could not load {checkpoint} into {arch}: {type(exc).__name__}: {first}"
            ) from None
        raise DownloadError(
            f"{name}: open_clip weights could not be loaded ({first}); {_download_hint(tag_cfg)}"
        ) from None
    if clip_model.visual.preprocess_cfg.get("resize_mode") == "squash":
        warnings.warn(
            f"{name}: open_clip squashes non-square images to a square; texturebias resizes the shorter side and "
            "centre-crops (identical for square inputs such as the cue-conflict stimuli)",
            stacklevel=2,
        )

    def tokenizer() -> Callable[[list[str]], torch.Tensor]:
        try:
            return open_clip.get_tokenizer(arch)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DownloadError(
                f"{name}: open_clip tokenizer could not be loaded ({type(exc).__name__}: {first})"
            ) from None

    head = cached_text_head(
        clip_model, tokenizer, arch=arch, tag=tag, class_names=class_names, templates=template_strings
    )
    scale = float(clip_model.logit_scale.detach().exp())
    bias = getattr(clip_model, "logit_bias", None)
    return ZeroShotClassifier(clip_model.visual, head, scale, 0.0 if bias is None else float(bias.detach()))


def _download_hint(tag_cfg: Mapping[str, Any]) -> str:
    hub = str(tag_cfg.get("hf_hub") or "").strip("/")
    if hub:
        repo, _, filename = hub.rpartition("/") if hub.count("/") >= 2 else (hub, "", "")
        what = f"`hf download {repo}{' ' + filename if filename else ''}` into the Hugging Face cache"
    elif tag_cfg.get("url"):
        what = f"{tag_cfg['url']} into ~/.cache/clip/"
    else:
        what = "the weights"
    return f"download {what} on a machine with network, or pass --checkpoint FILE"


# --------------------------------------------------------------------------------------------- names


def clip_entry(name: str) -> ModelEntry | None:
    """The entry for ``open_clip/<arch>[:<tag>]``, or ``None`` when open_clip is missing or has no such arch.

    Raises:
        UnknownModelError: the architecture exists but has no pretrained tag ``<tag>`` (lists the tags).
    """
    if not name.startswith(PREFIX) or not open_clip_available():
        return None
    import open_clip

    arch, tag = parse_clip_name(name)
    if open_clip.get_model_config(arch) is None:
        return None
    if tag is not None and not open_clip.get_pretrained_cfg(arch, tag):
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise UnknownModelError(f"open_clip has no weights {arch}:{tag}; tags of {arch}: {', '.join(tags) or 'none'}")
    weights = f"open_clip weights {arch}:{tag}" if tag else "random init or --checkpoint FILE"
    return ModelEntry(
        name=name,
        builder=functools.partial(_build, arch, tag),
        family="open_clip",
        description=f"zero-shot, 80-prompt ImageNet head; {weights}",
        preprocessing=preprocessing_from_open_clip(clip_preprocessing_config(arch, tag)),
        loads_own_weights=True,
        loads_own_checkpoint=True,
    )


def clip_names() -> list[str]:
    """``open_clip/<arch>:<tag>`` for every pretrained weight open_clip lists (empty without open_clip)."""
    if not open_clip_available():
        return []
    import open_clip

    return [f"{PREFIX}{arch}:{tag}" for arch, tag in open_clip.list_pretrained()]
