"""Logit correlation between two models over an image folder (Brendel & Bethge 2019, BagNets vs deep CNNs).

The BagNet paper compares how similarly a BagNet and a standard CNN (VGG-16, ResNet-50, DenseNet-169)
decide by correlating their logit vectors image by image. :func:`logit_correlation` computes, per image, the
Pearson correlation of the two 1000-d logit vectors and whether the top-1 classes agree, and summarises
them (mean, sd, median, histogram, top-1 agreement). Each model gets its own preprocessing.

Outputs: ``correlation.csv`` (image, pearson_r, top1_a, top1_b, agree), ``correlation.json`` (summary),
``correlation.png/pdf`` (histogram), ``skipped.csv`` (unreadable images and why).

Resumable: while it runs, every finished batch is appended to ``correlation.partial.csv`` (full-precision
values) next to ``correlation.partial.json`` (the models, checkpoints and folder). Rerunning the same call
after an interruption computes only the images that are not in the journal; a journal of other settings is
refused. The journal is removed when the final files are written.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from texturebias.data.images import find_images, load_image
from texturebias.errors import DataError, TextureBiasError, first_line
from texturebias.models import resolve_model
from texturebias.report.figures import save_figure
from texturebias.utils.device import resolve_device, strict_fp32
from texturebias.utils.io import json_safe, require_same_settings, write_csv, write_json
from texturebias.utils.progress import progress

__all__ = ["CorrelationSummary", "logit_correlation", "pearson_rows"]


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of matching rows of two N x C tensors (float64; NaN for a constant row)."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    r = (a * b).sum(dim=1) / den
    return torch.where(den > 0, r, torch.full_like(r, float("nan")))


@dataclass(frozen=True)
class CorrelationSummary:
    """Summary of :func:`logit_correlation` (also written as ``correlation.json``)."""

    model_a: str
    model_b: str
    n_images: int
    n_skipped: int
    mean_r: float
    sd_r: float
    median_r: float
    top1_agreement: float
    histogram_edges: list[float]
    histogram_counts: list[int]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def logit_correlation(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    model_a: str | torch.nn.Module = "bagnet33",
    model_b: str | torch.nn.Module = "vgg16",
    checkpoint_a: str | os.PathLike[str] | None = None,
    checkpoint_b: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    device: str = "auto",
    bins: int = 20,
) -> CorrelationSummary:
    """Correlate two models' logit vectors image by image over every image under ``data_dir``.

    Args:
        data_dir: Folder searched recursively for images (any layout).
        out_dir: Output folder.
        model_a, model_b: Registered model names or modules (same number of classes; modules get ImageNet
            preprocessing).
        checkpoint_a, checkpoint_b: Local weights instead of the declared pretrained ones.
        batch_size: Images per forward pass.
        limit: Use only the first ``limit`` images (sorted order).
        device: "auto", "cpu", "cuda", ...
        bins: Histogram bins over [-1, 1].

    Returns:
        The summary; per-image rows are in ``correlation.csv``.

    Raises:
        DataError: no images; TextureBiasError: models with different class counts.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    paths = find_images(root)
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise DataError(f"{root}: no images found")
    dev = resolve_device(device)
    resolved = [resolve_model(m, ck) for m, ck in ((model_a, checkpoint_a), (model_b, checkpoint_b))]
    nets = [r[0].to(dev) for r in resolved]
    transforms = [r[1].eval_transform("always") for r in resolved]
    model_a, model_b = resolved[0][2], resolved[1][2]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identity = {
        "data_dir": str(root.resolve()),
        "model_a": model_a,
        "model_b": model_b,
        "checkpoint_a": str(checkpoint_a) if checkpoint_a is not None else None,
        "checkpoint_b": str(checkpoint_b) if checkpoint_b is not None else None,
    }
    done = _read_journal(out, identity)
    journal = open(out / _JOURNAL, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed in finally
    writer = csv.writer(journal)
    if journal.tell() == 0:
        writer.writerow(_JOURNAL_FIELDS)
    results: dict[str, tuple[float, int, int]] = dict(done)
    skipped: list[tuple[str, str]] = []

    def flush(batch: list[tuple[Path, torch.Tensor, torch.Tensor]]) -> None:
        with strict_fp32(), torch.inference_mode():
            la = nets[0](torch.stack([b[1] for b in batch]).to(dev)).float().cpu()
            lb = nets[1](torch.stack([b[2] for b in batch]).to(dev)).float().cpu()
        if la.shape[1] != lb.shape[1]:
            raise TextureBiasError(f"{model_a} has {la.shape[1]} outputs but {model_b} has {lb.shape[1]}")
        r = pearson_rows(la, lb)
        ta, tb = la.argmax(dim=1), lb.argmax(dim=1)
        for (path, _, _), ri, a, b in zip(batch, r.tolist(), ta.tolist(), tb.tolist(), strict=True):
            results[str(path)] = (ri, a, b)
            writer.writerow([str(path), repr(ri), a, b])
        journal.flush()

    todo = [p for p in paths if str(p) not in done]
    try:
        batch: list[tuple[Path, torch.Tensor, torch.Tensor]] = []
        bar = progress(total=len(paths), desc="correlate", unit="img")
        bar.update(len(paths) - len(todo))
        with bar:
            for path in todo:
                bar.update(1)
                try:
                    img = load_image(path)
                    batch.append((path, transforms[0](img), transforms[1](img)))
                except (TextureBiasError, OSError, ValueError) as exc:
                    skipped.append((str(path), first_line(exc)))
                    continue
                if len(batch) == batch_size:
                    flush(batch)
                    batch = []
            if batch:
                flush(batch)
    finally:
        journal.close()
    ordered = [(str(p), results[str(p)]) for p in paths if str(p) in results]
    if not ordered:
        raise DataError(f"{root}: none of the {len(paths)} images could be read (see the messages above)")
    rows = [{"image": name, "pearson_r": f"{ri:.6f}", "top1_a": a, "top1_b": b, "agree": int(a == b)}
            for name, (ri, a, b) in ordered]  # fmt: skip
    rs = [ri for _, (ri, _, _) in ordered]
    agree = [a == b for _, (_, a, b) in ordered]

    arr = np.asarray(rs, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    counts, edges = np.histogram(finite, bins=bins, range=(-1.0, 1.0))
    summary = CorrelationSummary(
        model_a=model_a,
        model_b=model_b,
        n_images=len(rs),
        n_skipped=len(skipped),
        mean_r=float(finite.mean()) if finite.size else float("nan"),
        sd_r=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        median_r=float(np.median(finite)) if finite.size else float("nan"),
        top1_agreement=float(np.mean(agree)),
        histogram_edges=[float(e) for e in edges],
        histogram_counts=[int(c) for c in counts],
    )
    write_csv(out / "correlation.csv", rows, ["image", "pearson_r", "top1_a", "top1_b", "agree"])
    write_csv(out / "skipped.csv", ({"image": p, "reason": r} for p, r in skipped), ["image", "reason"])
    write_json(out / "correlation.json", json_safe(summary.as_dict()))
    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.add_subplot()
    ax.hist(finite, bins=edges, color="#4477aa")
    ax.axvline(summary.mean_r, color="k", lw=1, ls="--", label=f"mean r = {summary.mean_r:.3f}")
    ax.set_xlabel(f"Pearson r of logits ({model_a} vs {model_b})")
    ax.set_ylabel("images")
    ax.set_title(f"n = {summary.n_images}, top-1 agreement {summary.top1_agreement:.1%}", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, out / "correlation", dpi=150)
    (out / _JOURNAL).unlink(missing_ok=True)
    (out / _JOURNAL_ID).unlink(missing_ok=True)
    return summary


_JOURNAL = "correlation.partial.csv"
_JOURNAL_ID = "correlation.partial.json"
_JOURNAL_FIELDS = ("image", "pearson_r", "top1_a", "top1_b")


def _read_journal(out: Path, identity: dict[str, Any]) -> dict[str, tuple[float, int, int]]:
    """Rows of an interrupted run with the same settings (image → r, top1_a, top1_b); starts a journal if none."""

    id_path, path = out / _JOURNAL_ID, out / _JOURNAL
    if id_path.exists() and path.exists():
        try:
            saved = json.loads(id_path.read_text(encoding="utf-8"))
        except ValueError:  # not ours or damaged: refused below like other settings, with the file to delete
            saved = None
        require_same_settings(saved, identity, what="correlation run", state_file=path)
        done: dict[str, tuple[float, int, int]] = {}
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                try:  # the last line of a killed run may be cut short
                    done[row["image"]] = (float(row["pearson_r"]), int(row["top1_a"]), int(row["top1_b"]))
                except (TypeError, ValueError, KeyError):
                    continue
        return done
    path.unlink(missing_ok=True)
    write_json(id_path, identity)
    return {}
