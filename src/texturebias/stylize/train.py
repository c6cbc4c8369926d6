"""Training an AdaIN decoder (Huang & Belongie 2017, REFERENCE §2), resumable, for official or custom networks.

Losses: content = MSE(f(g(t)), t) at the AdaIN layer; style = Σ over the style layers (relu1_1 … relu4_1)
of MSE(μ(f_l(g(t))), μ(f_l(s))) + MSE(σ(f_l(g(t))), σ(f_l(s))); total = content_weight · content +
style_weight · style (1 and 10). Adam, lr 1e-4 decayed as lr / (1 + 5e-5 · iteration), batch 8, random
256² crops of images resized to 512² (as the reference ``train.py``; it uses a non-aspect-preserving
``Resize((512, 512))``). The encoder stays frozen.

Sampling is a pure function of (seed, sample number): content and style streams each walk seeded random
permutations of their folders (the reference's infinite sampler) with seeded crops, so a resumed run
continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import csv
import os
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from texturebias.data.images import find_images, load_image
from texturebias.data.job_records import check_job_settings
from texturebias.data.loader import worker_init
from texturebias.errors import CheckpointError, DataError, ImageReadError, first_line
from texturebias.models.adain_nets import VGG_NORMALISED, adain_decoder, vgg_normalised
from texturebias.models.weights import fetch_weights, load_checkpoint, load_into
from texturebias.report.figures import save_figure
from texturebias.stylize.adain import AdaIN, adain, mean_std
from texturebias.utils.device import Precision, resolve_device
from texturebias.utils.io import atomic_open, file_identity, folder_identity, module_digest, save_torch
from texturebias.utils.progress import get_logger, progress
from texturebias.utils.seed import stable_hash

SETTINGS_NAME = "train-decoder.json"
CHECKPOINT_NAME = "checkpoint.pth"
LOG_NAME = "loss_log.csv"
LOG_FIELDS = ("iteration", "lr", "loss_content", "loss_style", "loss")
MAX_REDRAWS = 10


def adain_losses(
    model: AdaIN, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The AdaIN training losses ``(content_loss, style_loss)`` for a batch (reference ``net.Net.forward``)."""
    style_feats = [f.float() for f in model.encode_with_intermediate(style)]
    content_feat = model.encode(content).float()
    t = adain(content_feat, style_feats[-1])
    t = alpha * t + (1 - alpha) * content_feat
    g_t = model.decode(t)
    g_feats = [f.float() for f in model.encode_with_intermediate(g_t)]
    mse = nn.functional.mse_loss
    loss_c = mse(g_feats[-1], t)
    loss_s = torch.zeros((), device=t.device)
    for gf, sf in zip(g_feats, style_feats, strict=True):
        gm, gs = mean_std(gf)
        sm, ss = mean_std(sf)
        loss_s = loss_s + mse(gm, sm) + mse(gs, ss)
    return loss_c, loss_s


@lru_cache(maxsize=4)
def _permutation(seed: int, stream: str, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng(stable_hash(seed, stream, "epoch", epoch)).permutation(n)


class _CropStream(torch.utils.data.Dataset):
    """Sample ``i`` of an infinite stream of seeded random crops over a folder (resized to ``image_size``²)."""

    def __init__(self, paths: list[Path], seed: int, stream: str, image_size: int, crop_size: int) -> None:
        self.paths = paths
        self.seed = seed
        self.stream = stream
        self.image_size = image_size
        self.crop_size = crop_size

    def __len__(self) -> int:  # indices are sample numbers; the DataLoader's sampler bounds them
        return 2**62

    def __getitem__(self, i: int) -> torch.Tensor:
        n = len(self.paths)
        problems = []
        for redraw in range(MAX_REDRAWS):
            j = i + redraw * 7919  # a later position of the stream, deterministic
            path = self.paths[int(_permutation(self.seed, self.stream, j // n, n)[j % n])]
            try:
                img = load_image(path)
            except ImageReadError as exc:
                problems.append(str(exc))
                continue
            img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
            rng = np.random.default_rng(stable_hash(self.seed, self.stream, "crop", i))
            top = int(rng.integers(self.image_size - self.crop_size + 1))
            left = int(rng.integers(self.image_size - self.crop_size + 1))
            arr = np.asarray(img)[top : top + self.crop_size, left : left + self.crop_size]
            return torch.from_numpy(arr.copy()).permute(2, 0, 1)
        raise ImageReadError(f"{MAX_REDRAWS} unreadable images in a row: {'; '.join(problems)}")


def _stream_loader(dataset: _CropStream, start: int, stop: int, batch_size: int, workers: int) -> Any:
    sampler = range(start * batch_size, stop * batch_size)
    return torch.utils.data.DataLoader(
        dataset, worker_init_fn=worker_init, batch_size=batch_size, sampler=sampler, num_workers=workers
    )


@dataclass
class TrainResult:
    """Where the decoder ended up and its last losses."""

    checkpoint: Path
    decoder: Path
    iteration: int
    loss_content: float
    loss_style: float


def _read_log(path: Path, upto: int) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r.get("iteration", "").isdigit() and int(r["iteration"]) <= upto]


def train_decoder(
    content_dir: str | os.PathLike[str],
    style_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    vgg: str | os.PathLike[str] | None = None,
    model: AdaIN | None = None,
    iterations: int = 160_000,
    batch_size: int = 8,
    lr: float = 1e-4,
    lr_decay: float = 5e-5,
    content_weight: float = 1.0,
    style_weight: float = 10.0,
    image_size: int = 512,
    crop_size: int = 256,
    save_every: int = 10_000,
    log_every: int = 10,
    seed: int = 0,
    workers: int = 2,
    device: str | torch.device = "auto",
    precision: Precision = "fp32",
    resume: bool = True,
    plot: bool = True,
) -> TrainResult:
    """Train an AdaIN decoder; rerunning the same call resumes from ``out_dir/checkpoint.pth``.

    Args:
        content_dir: Content images (reference: MS-COCO), searched recursively.
        style_dir: Style images (reference: WikiArt).
        out_dir: Receives ``checkpoint.pth`` (latest: decoder under ``"model"``, optimizer, iteration),
            ``decoder_iter_<N>.pth`` (plain decoder state dicts, loadable by ``AdaIN.from_checkpoints``),
            ``loss_log.csv`` and ``loss_curve.png``/``.pdf``.
        vgg: ``vgg_normalised.pth`` for the official encoder (default: the declared download). Ignored
            when ``model`` is given.
        model: A custom :class:`AdaIN` (its decoder is trained, its encoder stays frozen), e.g. built with
            :mod:`texturebias.stylize.networks`. Default: official encoder + freshly initialised decoder.
        iterations: Total iterations (reference: 160,000).
        batch_size: Content and style images per iteration (reference: 8).
        lr: Adam learning rate, decayed as ``lr / (1 + lr_decay · iteration)``.
        lr_decay: See ``lr``.
        content_weight: Weight of the content loss (1.0).
        style_weight: Weight of the style loss (10.0).
        image_size: Images are resized to ``image_size²`` (512) …
        crop_size: … and randomly cropped to ``crop_size²`` (256).
        save_every: Checkpoint interval in iterations (also saved at the end).
        log_every: Loss-log interval in iterations.
        seed: Seeds the decoder initialisation, the sampling and the crops.
        workers: DataLoader workers per stream.
        device: "auto", "cpu", "cuda", ...
        precision: "fp32" or "bf16"/"fp16" autocast for the networks (losses in float32).
        resume: Continue from ``checkpoint.pth`` when present (False: refuse to overwrite it).
        plot: Write ``loss_curve.png``/``.pdf`` at the end.

    Returns:
        A :class:`TrainResult`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    contents = find_images(content_dir)
    styles = find_images(style_dir)
    if not contents:
        raise DataError(f"{content_dir}: no content images")
    if not styles:
        raise DataError(f"{style_dir}: no style images")
    if crop_size > image_size:
        raise DataError(f"crop size {crop_size} is larger than the image size {image_size}")
    # A custom model's frozen encoder decides the losses as much as VGG weights do: record its weights' digest.
    custom_encoder = module_digest(model.encoder) if model is not None else None
    if model is None:
        torch.manual_seed(seed)
        full = vgg_normalised("max")
        vgg_path = Path(vgg) if vgg is not None else fetch_weights(VGG_NORMALISED)
        load_into(full, load_checkpoint(vgg_path), what=f"VGG weights {vgg_path}")
        model = AdaIN(full, adain_decoder(), precision=precision)
    model = model.to(dev)
    model.precision = precision
    model.encoder.eval()
    model.decoder.train()
    optimizer = torch.optim.Adam(model.decoder.parameters(), lr=lr)
    ckpt_path = out / CHECKPOINT_NAME
    settings = {
        "lr": lr, "lr_decay": lr_decay, "content_weight": content_weight, "style_weight": style_weight,
        "batch_size": batch_size, "image_size": image_size, "crop_size": crop_size, "seed": seed,
        "precision": precision, "vgg": file_identity(vgg) if vgg is not None else None,
        "encoder_sha256": custom_encoder,
        "content": folder_identity(content_dir, contents), "style": folder_identity(style_dir, styles),
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    # --iterations may grow on resume (train longer); everything else must match the interrupted run.
    check_job_settings(out, settings, what="decoder training", filename=SETTINGS_NAME)
    start = 0
    if ckpt_path.exists():
        if not resume:
            raise DataError(f"{ckpt_path} exists; pass resume=True (CLI: drop --no-resume) or use a new folder")
        try:
            state = torch.load(ckpt_path, map_location=dev, weights_only=True)
            load_into(model.decoder, state["model"], what=f"checkpoint {ckpt_path}")
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["iteration"])
        except (KeyError, RuntimeError, ValueError, TypeError, EOFError, IndexError, pickle.UnpicklingError) as exc:
            detail = first_line(exc)
            raise CheckpointError(f"{ckpt_path}: not a train-decoder checkpoint ({detail})") from None
    log = get_logger("train_decoder")
    rows = _read_log(out / LOG_NAME, start)
    c_stream = _CropStream(contents, seed, "content", image_size, crop_size)
    s_stream = _CropStream(styles, seed, "style", image_size, crop_size)
    c_loader = _stream_loader(c_stream, start, iterations, batch_size, workers)
    s_loader = _stream_loader(s_stream, start, iterations, batch_size, workers)
    loss_c = loss_s = torch.zeros(())

    def save(iteration: int) -> None:
        save_torch(
            ckpt_path,
            {"model": model.decoder.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration},
        )
        save_torch(out / f"decoder_iter_{iteration}.pth", model.decoder.state_dict())

    # The loss log is appended as training goes; on resume, rows past the checkpoint are dropped first.
    with atomic_open(out / LOG_NAME, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(LOG_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    log_fh = open(out / LOG_NAME, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    log_writer = csv.DictWriter(log_fh, fieldnames=list(LOG_FIELDS))

    it = start
    bar = progress(total=iterations - start, desc="train-decoder", unit="it")
    for content, style in zip(c_loader, s_loader, strict=True):
        cur_lr = lr / (1.0 + lr_decay * it)
        for group in optimizer.param_groups:
            group["lr"] = cur_lr
        content = content.to(dev).float().div_(255)
        style = style.to(dev).float().div_(255)
        loss_c, loss_s = adain_losses(model, content, style)
        loss = content_weight * loss_c + style_weight * loss_s
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        it += 1
        bar.update(1)
        if it % log_every == 0 or it == iterations:
            rows.append(
                {"iteration": it, "lr": f"{cur_lr:.6g}", "loss_content": f"{loss_c.item():.6g}",
                 "loss_style": f"{loss_s.item():.6g}", "loss": f"{loss.item():.6g}"}
            )  # fmt: skip
            log_writer.writerow(rows[-1])
            log_fh.flush()
            bar.set_postfix_str(f"content {loss_c.item():.3g} style {loss_s.item():.3g}", refresh=False)
        if it % save_every == 0 or it == iterations:
            save(it)
    bar.close()
    log_fh.close()
    if start >= iterations and not (out / f"decoder_iter_{start}.pth").exists():
        save(start)
    if plot:
        _plot_losses(rows, out)
    log.info(f"decoder saved: {out / f'decoder_iter_{it}.pth'}")
    last = rows[-1] if rows else {"loss_content": "nan", "loss_style": "nan"}
    return TrainResult(
        checkpoint=ckpt_path,
        decoder=out / f"decoder_iter_{it}.pth",
        iteration=it,
        loss_content=float(last["loss_content"]),
        loss_style=float(last["loss_style"]),
    )


def _plot_losses(rows: list[dict[str, Any]], out: Path) -> None:
    if not rows:
        return
    it = [int(r["iteration"]) for r in rows]
    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    ax.plot(it, [float(r["loss_content"]) for r in rows], label="content")
    ax.plot(it, [float(r["loss_style"]) for r in rows], label="style")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(frameon=False)
    ax.set_title("AdaIN decoder training")
    fig.tight_layout()
    save_figure(fig, out / "loss_curve")
