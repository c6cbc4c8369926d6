"""The most informative patches of a BagNet (Brendel & Bethge 2019, Fig. 2): a resumable search over a folder."""

from __future__ import annotations

import heapq
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from texturebias.data.images import index_image_folder, load_image
from texturebias.data.labels import class_index, class_names
from texturebias.errors import TextureBiasError, first_line
from texturebias.models import resolve_model
from texturebias.models.bagnet import BagNet, is_bagnet
from texturebias.report.figures import save_figure
from texturebias.utils.device import resolve_device, strict_fp32
from texturebias.utils.io import require_same_settings, save_torch, write_csv
from texturebias.utils.progress import progress
from texturebias.utils.seed import stable_hash

# ----------------------------------------------------------------------------------------------------------------
# Most informative patches (Brendel & Bethge 2019, Fig. 2)


@dataclass(frozen=True)
class Patch:
    """One q x q window of a preprocessed image and its class logit."""

    logit: float
    image: Path
    image_label: int | None
    y: int
    x: int
    pixels: np.ndarray  # q x q x 3 uint8, as the model saw it (after preprocessing, denormalised)


@dataclass
class PatchSearchResult:
    """Output of :func:`informative_patches`: per class, the top-k patches from its own images and from all."""

    classes: list[int]
    own: dict[int, list[Patch]]
    all: dict[int, list[Patch]]
    n_images: int
    skipped: list[tuple[str, str]]
    files: list[Path]


class _TopK:
    """Bounded min-heap keeping the k largest items; ties go to the earlier image/position (deterministic)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, int, Any]] = []

    def would_accept(self, value: float) -> bool:
        return len(self._heap) < self.k or value > self._heap[0][0]

    def push(self, value: float, order: int, payload: Any) -> None:
        # Negative order: among equal logits the later item is "smaller", so it is the one dropped.
        item = (value, -order, id(payload), payload)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def sorted(self) -> list[Any]:
        return [it[3] for it in sorted(self._heap, key=lambda it: (-it[0], -it[1]))]


def _folder_labels(classes: Sequence[str]) -> dict[str, int | None]:
    """ImageFolder folder names (WordNet ids or indices) to ImageNet indices; unknown names map to None."""

    out: dict[str, int | None] = {}
    for name in classes:
        try:
            out[name] = class_index(name) if (name.startswith("n") and name[1:].isdigit()) or name.isdigit() else None
        except TextureBiasError:
            out[name] = None
    return out


def informative_patches(
    data_dir: str | os.PathLike[str],
    classes: Sequence[int],
    out_dir: str | os.PathLike[str],
    *,
    model: str | nn.Module = "bagnet33",
    checkpoint: str | os.PathLike[str] | None = None,
    k: int = 7,
    batch_size: int = 16,
    device: str = "auto",
    save_every: int = 50,
) -> PatchSearchResult:
    """Stream an ImageFolder and keep, per class, the k patches with the highest class logit.

    Each image is preprocessed like for evaluation (Resize 256 + CenterCrop 224); its patches are the q x q
    windows of the BagNet's stride-8 grid (exactly the windows the model classifies). Memory is bounded by
    per-class top-k heaps, whatever the folder size. Two rows per class as in the paper's Fig. 2: patches from
    images *of* that class (folder = the class's WordNet id or index) and patches from all images.

    Writes ``patches.csv`` (class_index, class_name, row, rank, image, image_label, y, x, size, logit),
    ``patches.png/pdf`` (montage) and ``skipped.csv`` (unreadable images with the reason).

    Resumable: every ``save_every`` batches the heaps are saved to ``patches.partial.pt`` in ``out_dir``;
    rerunning the same call after an interruption continues after the last saved image and gives the same
    result as an uninterrupted run. A saved state of other settings (model, checkpoint, classes, k, folder
    contents) is refused; the state file is removed when the results are written.

    Args:
        data_dir: ImageFolder root (sub-folders named by WordNet id ``n01440764`` or class index ``0``).
        classes: ImageNet class indices to search for.
        out_dir: Output folder.
        model: A registered BagNet's name, or a BagNet module (ImageNet preprocessing).
        checkpoint: Local weights instead of the declared pretrained ones.
        k: Patches per row.
        batch_size: Images per forward pass.
        device: "auto", "cpu", "cuda", ...
        save_every: Batches between two saves of the search state.

    Raises:
        TextureBiasError: not a BagNet, bad classes, unusable folder, a saved state of other settings.
    """

    if k < 1:
        raise TextureBiasError("k must be >= 1")
    if not classes:
        raise TextureBiasError("give at least one class")
    index = index_image_folder(data_dir, allow_empty_classes=True)
    labels = _folder_labels(index.classes)
    dev = resolve_device(device)
    model, prep, model_name = resolve_model(model, checkpoint)
    model = model.to(dev)
    if not is_bagnet(model):
        raise TextureBiasError(f"{model_name} is not a BagNet; informative patches need bagnet9/17/33")
    net: BagNet = getattr(model, "module", model)
    if any(not 0 <= c < net.num_classes for c in classes):
        raise TextureBiasError(f"class out of range 0..{net.num_classes - 1}")
    classes = list(dict.fromkeys(int(c) for c in classes))
    q, stride = net.receptive_field, net.total_stride
    transform = prep.eval_transform("always")
    w_sel = net.fc.weight.detach()[classes]
    b_sel = net.fc.bias.detach()[classes]
    own = {c: _TopK(k) for c in classes}
    every = {c: _TopK(k) for c in classes}
    skipped: list[tuple[str, str]] = []
    samples = list(index.samples)
    n_done = 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / _PATCH_STATE
    identity = {
        "model": model_name,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "data": str(Path(data_dir).resolve()),
        "files": stable_hash(*(str(p) for p, _ in samples)),
        "classes": classes,
        "k": k,
    }
    start = 0
    if state_path.exists():
        state = _load_patch_state(state_path, identity)
        start, n_done, skipped = state["next"], state["n_done"], [tuple(x) for x in state["skipped"]]
        for c in classes:
            _restore_topk(own[c], state["own"][str(c)])
            _restore_topk(every[c], state["every"][str(c)])

    def flush(batch: list[tuple[int, Path, int | None, torch.Tensor]]) -> None:
        x = torch.stack([b[3] for b in batch]).to(dev)
        with strict_fp32(), torch.inference_mode():
            f = net.forward_features(x)
            logits = (torch.einsum("nchw,kc->nkhw", f, w_sel) + b_sel.view(1, -1, 1, 1)).float().cpu()
        gw = logits.shape[-1]
        for i, (order, path, label, xi) in enumerate(batch):
            image = None
            for j, c in enumerate(classes):
                vals, pos = logits[i, j].flatten().topk(min(k, logits[i, j].numel()))
                for v, p in zip(vals.tolist(), pos.tolist(), strict=True):
                    heaps = [every[c]] + ([own[c]] if label == c else [])
                    heaps = [h for h in heaps if h.would_accept(v)]
                    if not heaps:
                        break  # values are sorted: nothing further from this image fits
                    if image is None:
                        image = (prep.denormalize(xi).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
                    y, xx = (p // gw) * stride, (p % gw) * stride
                    patch = Patch(v, path, label, y, xx, image[y : y + q, xx : xx + q].copy())
                    for h in heaps:
                        h.push(v, order * 1_000_000 + p, patch)

    def save(next_order: int) -> None:
        save_torch(state_path, {
            "identity": identity, "next": next_order, "n_done": n_done, "skipped": [list(x) for x in skipped],
            "own": {str(c): _topk_state(own[c]) for c in classes},
            "every": {str(c): _topk_state(every[c]) for c in classes},
        })  # fmt: skip

    batch: list[tuple[int, Path, int | None, torch.Tensor]] = []
    n_flushed = 0
    with progress(total=len(samples), desc="patches", unit="img") as bar:
        bar.update(start)
        for order in range(start, len(samples)):
            path, folder_idx = samples[order]
            bar.update(1)
            try:
                xi = transform(load_image(path))
            except (TextureBiasError, OSError, ValueError) as exc:
                skipped.append((str(path), first_line(exc)))
                continue
            batch.append((order, path, labels[index.classes[folder_idx]], xi))
            if len(batch) == batch_size:
                flush(batch)
                n_done += len(batch)
                batch = []
                n_flushed += 1
                if n_flushed % save_every == 0:
                    save(order + 1)
        if batch:
            flush(batch)
            n_done += len(batch)

    names = class_names(net.num_classes)
    result = PatchSearchResult(
        classes=classes,
        own={c: own[c].sorted() for c in classes},
        all={c: every[c].sorted() for c in classes},
        n_images=n_done,
        skipped=skipped,
        files=[],
    )
    rows = []
    for c in classes:
        for row_name, items in (("own", result.own[c]), ("all", result.all[c])):
            for rank, pt in enumerate(items, 1):
                rows.append(
                    {
                        "class_index": c,
                        "class_name": names[c],
                        "row": row_name,
                        "rank": rank,
                        "image": str(pt.image),
                        "image_label": "" if pt.image_label is None else pt.image_label,
                        "y": pt.y,
                        "x": pt.x,
                        "size": q,
                        "logit": f"{pt.logit:.6g}",
                    }
                )
    fields = ["class_index", "class_name", "row", "rank", "image", "image_label", "y", "x", "size", "logit"]
    result.files.append(write_csv(out / "patches.csv", rows, fields))
    result.files.append(
        write_csv(out / "skipped.csv", ({"image": p, "reason": r} for p, r in skipped), ["image", "reason"])
    )
    result.files.extend(patch_montage(out / "patches", result, names, k))
    state_path.unlink(missing_ok=True)
    return result


_PATCH_STATE = "patches.partial.pt"


def _topk_state(heap: _TopK) -> list[dict[str, Any]]:
    """A heap's items as plain data (``torch.load(weights_only=True)`` reads it back)."""
    return [
        {"order": -neg_order, "logit": p.logit, "image": str(p.image),
         "label": -1 if p.image_label is None else p.image_label, "y": p.y, "x": p.x,
         "pixels": torch.from_numpy(p.pixels)}
        for _, neg_order, _, p in heap._heap
    ]  # fmt: skip


def _restore_topk(heap: _TopK, items: list[dict[str, Any]]) -> None:
    for it in items:
        label = None if it["label"] < 0 else int(it["label"])
        patch = Patch(float(it["logit"]), Path(it["image"]), label, int(it["y"]), int(it["x"]), it["pixels"].numpy())
        heap.push(patch.logit, int(it["order"]), patch)


def _load_patch_state(path: Path, identity: dict[str, Any]) -> dict[str, Any]:

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise TextureBiasError(f"{path}: unreadable saved search state ({exc}); delete it to start over") from None
    saved = state.get("identity") if isinstance(state, dict) else None
    require_same_settings(saved, identity, what="patch search", state_file=path)
    return state


def patch_montage(stem: str | os.PathLike[str], result: PatchSearchResult, names: Sequence[str], k: int) -> list[Path]:
    """Montage of :func:`informative_patches` results: two rows per class (own images, all images), PNG + PDF."""
    grid = []
    for c in result.classes:
        grid.append((f"{names[c]}\n(images of the class)", result.own[c]))
        grid.append((f"{names[c]}\n(all images)", result.all[c]))
    fig = Figure(figsize=(1.3 * k + 1.2, 1.45 * len(grid)))
    axes = fig.subplots(len(grid), k, squeeze=False)
    for r, (label, items) in enumerate(grid):
        for col in range(k):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(items):
                ax.imshow(items[col].pixels, interpolation="nearest")
                ax.set_title(f"{items[col].logit:.2f}", fontsize=7)
            elif col == 0:  # keep the row label visible and say why the row is empty
                ax.set_frame_on(False)
                ax.text(0.0, 0.5, "no images", fontsize=7, transform=ax.transAxes, va="center")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return save_figure(fig, stem, dpi=150)
