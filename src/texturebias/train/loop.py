"""The training loop: SGD with step decay, DDP under torchrun, exact resume, atomic checkpoints.

Read top to bottom: :func:`train` resolves the configuration, builds data, model and optimiser, then
runs :func:`train_one_epoch` and the validation pass once per epoch, writing ``metrics.csv`` and the
checkpoints on rank 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from texturebias.data.loader import worker_init
from texturebias.errors import TextureBiasError
from texturebias.models import Preprocessing, create_model
from texturebias.train.builders import build_model, build_style_augment, effective_preprocessing
from texturebias.train.checkpoints import (
    CHECKPOINT_FORMAT,
    METRICS_FIELDS,
    check_resume_config,
    format_row,
    load_training_checkpoint,
    preprocessing_json,
    read_metrics,
    write_config,
)
from texturebias.train.data import (
    ImageDataset,
    LabeledBatches,
    ShardSampler,
    check_training_images,
    collate_labeled,
    index_training_folders,
    train_transform_parts,
)
from texturebias.train.recipes import TrainConfig, resolve_config
from texturebias.train.validate import MetricAccumulator, score_batches
from texturebias.utils.device import autocast, deterministic_algorithms, resolve_device
from texturebias.utils.distributed import DistInfo, barrier, init_distributed
from texturebias.utils.io import save_torch, write_csv
from texturebias.utils.progress import get_logger, progress
from texturebias.utils.seed import gather_rng_states, seed_everything, set_rng_state, stable_hash

log = get_logger("train")


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        out: The output folder.
        config: The resolved configuration (also in ``out/config.json``).
        classes: Class names; output ``i`` of the model is ``classes[i]``.
        metrics: One dict per epoch run so far (the rows of ``metrics.csv``).
        best_top1: Best validation top-1 (``None`` without validation data).
        best_epoch: Epoch (1-based) of ``best_top1``.
        checkpoint_last: ``out/checkpoint_last.pt``.
        checkpoint_best: ``out/checkpoint_best.pt`` (``None`` without validation data).
        model: The trained model, unwrapped from DDP, in eval mode.
    """

    out: Path
    config: TrainConfig
    classes: tuple[str, ...]
    metrics: list[dict[str, Any]]
    best_top1: float | None
    best_epoch: int | None
    checkpoint_last: Path
    checkpoint_best: Path | None
    model: nn.Module


class StepDecay:
    """lr = base_lr × gamma^(number of milestones <= epoch): the academic ImageNet schedule.

    Stateless given the epoch, so a resumed run gets exactly the same learning rates.
    """

    def __init__(self, base_lr: float, milestones: Iterable[int], gamma: float) -> None:
        self.base_lr = base_lr
        self.milestones = tuple(sorted(milestones))
        self.gamma = gamma

    def lr(self, epoch: int) -> float:
        """Learning rate of 0-based ``epoch``."""
        return self.base_lr * self.gamma ** sum(1 for m in self.milestones if m <= epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "milestones": list(self.milestones), "gamma": self.gamma}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr = float(state["base_lr"])
        self.milestones = tuple(int(m) for m in state["milestones"])
        self.gamma = float(state["gamma"])


def _training_device(config: TrainConfig, info: DistInfo) -> torch.device:
    device = resolve_device(config.device)
    if device.type == "cuda" and info.distributed:
        return torch.device("cuda", info.local_rank)
    return device


class Trainer:
    """One optimisation step and one epoch; holds model, optimiser and gradient scaler.

    ``model`` may be DDP-wrapped; gradients are averaged across ranks by DDP, so with equal per-rank batches
    a step equals the single-process step on the global batch.

    Args:
        batch_augment: Optional ``(images in [0, 1], generator) -> images`` applied on the device before the
            forward pass (on-the-fly stylisation, :class:`~texturebias.stylize.augment.StyleAugment`); needs
            ``preprocessing`` to undo and redo the mean/std normalisation.
        seed: Seeds the generator of ``batch_augment`` per (seed, epoch, step, rank).
        rank: This process's rank.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        precision: str = "fp32",
        channels_last: bool = False,
        num_classes: int,
        scaler: torch.amp.GradScaler | None = None,
        batch_augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        preprocessing: Preprocessing | None = None,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if batch_augment is not None and preprocessing is None:
            raise ValueError("batch_augment needs the preprocessing (to undo the normalisation)")
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.num_classes = num_classes
        self.scaler = scaler or torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.batch_augment = batch_augment
        self.preprocessing = preprocessing
        self.seed = seed
        self.rank = rank

    def step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        acc: MetricAccumulator | None = None,
        *,
        epoch: int = 0,
        index: int = 0,
    ) -> torch.Tensor:
        """Forward, backward and SGD update on batch ``index`` of ``epoch``; returns the (detached) mean loss."""
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.batch_augment is not None:
            assert self.preprocessing is not None
            gen = torch.Generator().manual_seed(
                stable_hash("batch-augment", self.seed, epoch, index, self.rank) % 2**63
            )
            images = self.preprocessing.normalize(self.batch_augment(self.preprocessing.denormalize(images), gen))
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):  # type: ignore[arg-type]
            logits = self.model(images)
            loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        loss = loss.detach()
        if acc is not None:
            acc.update(logits, labels, loss * labels.shape[0])
        return loss

    def train_one_epoch(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, epoch: int, log_every: int = 0
    ) -> MetricAccumulator:
        """Train on every batch; returns this rank's loss/accuracy sums (reduce them across ranks)."""
        self.model.train()
        acc = MetricAccumulator(self.num_classes, self.device)
        bar = progress(batches, desc=f"epoch {epoch + 1}", unit="batch", leave=False)
        for i, (images, labels) in enumerate(bar):
            loss = self.step(images, labels, acc, epoch=epoch, index=i)
            if log_every and (i + 1) % log_every == 0:
                value = float(loss.item())
                if not math.isfinite(value):
                    raise TextureBiasError(f"training diverged at epoch {epoch + 1}, step {i + 1} (loss {value}); "
                                           "lower --lr")  # fmt: skip
                bar.set_postfix(loss=f"{value:.4f}")
                log.debug("epoch %d step %d loss %.4f", epoch + 1, i + 1, value)
        return acc


def train(config: TrainConfig, *, style_augment: nn.Module | None = None) -> TrainResult:
    """Train a registered model on ImageFolder data; see the package docstring for the outputs.

    Works in one process and unchanged under ``torchrun`` (DDP; NCCL on GPU, gloo on CPU). Only rank 0
    writes files. With a fixed seed on CPU the result is bitwise reproducible, including across
    ``resume``.

    Args:
        config: The run's configuration; unset fields come from the recipe (:func:`resolve_config`).
        style_augment: A ready :class:`~texturebias.stylize.augment.StyleAugment` (e.g. with a small custom
            stylizer) used instead of building one from ``config.stylize_*``.

    Raises:
        TextureBiasError: bad configuration, bad data folders, unusable checkpoint, or an ``out`` folder that
            already holds a run (pass ``resume=True`` to continue it).
    """
    cfg = resolve_config(config)
    info = init_distributed()
    own_group = info.distributed  # we destroy what init_distributed created
    try:
        with deterministic_algorithms(cfg.deterministic):
            return _train(cfg, info, style_augment)
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, info: DistInfo, style_augment: nn.Module | None) -> TrainResult:
    """The training run: check the folder, build data and model, resume, then train and save epoch by epoch."""
    device = _training_device(cfg, info)
    last_path, best_path = _check_run_folder(cfg, info, device)
    data = _build_data(cfg, info, device)
    model, optimizer, schedule, scaler = _build_model(cfg, info, device, len(data.classes))
    state = _RunState()
    if cfg.resume:
        state = _resume(cfg, info, last_path, model, optimizer, schedule, scaler)
    writer = _start_records(cfg, info, data)
    trainer = _make_trainer(cfg, info, device, model, optimizer, scaler, data, style_augment)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    t_run = time.perf_counter() - state.elapsed_before
    for epoch in range(state.start_epoch, cfg.epochs):
        row, improved = _run_epoch(cfg, info, device, epoch, model, trainer, optimizer, schedule, data, state)
        row["wall_time_s"] = time.perf_counter() - t_run
        state.metrics.append(row)
        rng_states = gather_rng_states(info)  # collective: every rank takes part
        if info.is_main:
            _save_epoch(cfg, info, epoch, model, optimizer, schedule, scaler, data, state, rng_states, improved,
                        last_path, best_path, writer, row)  # fmt: skip
        barrier()
    if writer is not None:
        writer.close()
    model.eval()
    return TrainResult(
        out=cfg.out,
        config=cfg,
        classes=data.classes,
        metrics=state.metrics,
        best_top1=state.best_top1,
        best_epoch=state.best_epoch,
        checkpoint_last=last_path,
        checkpoint_best=best_path if data.val_loader is not None else None,
        model=model,
    )


@dataclass
class _Data:
    """What the loop reads: the training set (its sampler is reseeded per epoch) and the validation batches."""

    train_images: Any
    classes: Sequence[str]
    pre: Preprocessing
    train_set: Any
    sampler: Any
    train_loader: Any
    val_loader: Any


@dataclass
class _RunState:
    """Where the run stands: 0 epochs for a new run, the checkpoint's values after a resume."""

    start_epoch: int = 0
    best_top1: float | None = None
    best_epoch: int | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    elapsed_before: float = 0.0


def _check_run_folder(cfg: TrainConfig, info: DistInfo, device: torch.device) -> tuple[Path, Path]:
    """Refuse a run that cannot work before touching any data: batch split, precision, new vs resumed run."""
    if cfg.batch_size % info.world_size:
        raise TextureBiasError(f"global batch {cfg.batch_size} is not divisible by {info.world_size} processes")
    if cfg.precision == "fp16" and device.type != "cuda":
        raise TextureBiasError("fp16 needs a CUDA device; use --precision bf16 on CPU")
    last_path, best_path = cfg.out / "checkpoint_last.pt", cfg.out / "checkpoint_best.pt"
    if last_path.exists() and not cfg.resume:
        raise TextureBiasError(
            f"{cfg.out} already holds a training run; pass --resume to continue it or choose another --out"
        )
    if cfg.resume and not last_path.is_file():
        raise TextureBiasError(f"nothing to resume: {last_path} not found")
    if cfg.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise TextureBiasError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
    return last_path, best_path


def _build_data(cfg: TrainConfig, info: DistInfo, device: torch.device) -> _Data:
    """Index, check and load the folders; every rank indexes them itself (cheap, no broadcast of file lists)."""
    train_images = index_training_folders(cfg.data)
    val_images = index_training_folders([cfg.val], classes=train_images.classes) if cfg.val is not None else None
    classes = train_images.classes
    # Every file is read once now: an unreadable image refuses the run with the list, not at hour three.
    check_training_images(train_images, *([val_images] if val_images else []), rank=info.rank,
                          world_size=info.world_size)  # fmt: skip
    pre = effective_preprocessing(cfg)
    prepare, augment = train_transform_parts(pre, cfg.augment)
    train_set = ImageDataset(train_images, augment, prepare=prepare, seed=cfg.seed, cache=cfg.cache_images)
    train_set.preload(desc="cache training images")
    local_batch = cfg.batch_size // info.world_size
    sampler = torch.utils.data.DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed, drop_last=False
    )
    loader_kw: dict[str, Any] = {
        "num_workers": cfg.workers, "pin_memory": device.type == "cuda", "collate_fn": collate_labeled,
    }  # fmt: skip
    if cfg.workers > 0:
        loader_kw["prefetch_factor"] = 4
    train_loader = LabeledBatches(
        torch.utils.data.DataLoader(
            train_set, worker_init_fn=worker_init, batch_size=local_batch, sampler=sampler, **loader_kw
        ),
        on_unreadable="raise",
    )
    val_loader = None
    if val_images is not None:
        val_set = ImageDataset(val_images, pre.eval_transform("always"), cache=cfg.cache_images)
        val_set.preload(desc="cache validation images")
        val_loader = LabeledBatches(torch.utils.data.DataLoader(
            val_set, worker_init_fn=worker_init,
            batch_size=local_batch, sampler=ShardSampler(len(val_set), info.rank, info.world_size),
            **loader_kw,
        ), on_unreadable="raise")  # fmt: skip

    return _Data(train_images, classes, pre, train_set, sampler, train_loader, val_loader)


def _build_model(
    cfg: TrainConfig, info: DistInfo, device: torch.device, num_classes: int
) -> tuple[nn.Module, torch.optim.Optimizer, StepDecay, torch.amp.GradScaler]:
    """The network (identical initialisation on every rank), SGD, the step schedule and the fp16 scaler."""
    seed_everything(cfg.seed)
    if not info.is_main:
        barrier()  # let rank 0 download/verify pretrained weights into the cache first
    if cfg.resume:
        # The checkpoint replaces every weight: do not fetch pretrained weights or read --init again.
        model = create_model(cfg.model, num_classes=num_classes, **cfg.model_kwargs)
    else:
        model = build_model(cfg, num_classes)
    if info.is_main:
        barrier()
    model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    schedule = StepDecay(cfg.lr, cfg.lr_steps, cfg.lr_gamma)  # type: ignore[arg-type]
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    return model, optimizer, schedule, scaler


def _resume(
    cfg: TrainConfig,
    info: DistInfo,
    last_path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: StepDecay,
    scaler: torch.amp.GradScaler,
) -> _RunState:
    """Restore every state of the interrupted run (weights, optimizer, schedule, RNG) after checking its settings."""
    ck = load_training_checkpoint(last_path)
    check_resume_config(ck["config"], cfg)
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    schedule.load_state_dict(ck["scheduler"])
    schedule.base_lr = cfg.lr  # an explicit new --lr on resume wins; same value otherwise
    scaler.load_state_dict(ck["scaler"])
    start_epoch = int(ck["epoch"])
    rng = ck["rng"]
    set_rng_state(rng[info.rank] if len(rng) == info.world_size else rng[0])
    if info.is_main:
        log.info("resuming %s after epoch %d", cfg.out, start_epoch)
    return _RunState(
        start_epoch=start_epoch,
        best_top1=ck.get("best_top1"),
        best_epoch=ck.get("best_epoch"),
        metrics=read_metrics(cfg.out / "metrics.csv", start_epoch),
        elapsed_before=float(ck.get("wall_time_s", 0.0)),
    )


def _start_records(cfg: TrainConfig, info: DistInfo, data: _Data) -> Any:
    """config.json (and a TensorBoard writer when asked) on rank 0."""
    if not info.is_main:
        return None
    write_config(cfg.out / "config.json", cfg, info, data.classes, data.pre, data.train_images)
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(cfg.out / "tensorboard"))
    return None


def _make_trainer(
    cfg: TrainConfig,
    info: DistInfo,
    device: torch.device,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    data: _Data,
    style_augment: nn.Module | None,
) -> Trainer:
    """The step runner: DDP wrapping under torchrun, and the AdaIN batch augmentation of the SIN recipes."""
    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if style_augment is None and cfg.stylize_prob > 0:
        style_augment = build_style_augment(cfg, device, data.pre.input_size)
    if style_augment is not None:
        style_augment.to(device)
    return Trainer(ddp_model, optimizer, device=device, precision=cfg.precision, channels_last=cfg.channels_last,
                   num_classes=len(data.classes), scaler=scaler, batch_augment=style_augment, preprocessing=data.pre,
                   seed=cfg.seed, rank=info.rank)  # fmt: skip


def _run_epoch(
    cfg: TrainConfig,
    info: DistInfo,
    device: torch.device,
    epoch: int,
    model: nn.Module,
    trainer: Trainer,
    optimizer: torch.optim.Optimizer,
    schedule: StepDecay,
    data: _Data,
    state: _RunState,
) -> tuple[dict[str, Any], bool]:
    """One epoch of training and validation; returns the metrics row and whether validation improved."""
    lr = schedule.lr(epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    data.sampler.set_epoch(epoch)
    data.train_set.set_epoch(epoch)
    t0 = time.perf_counter()
    acc = trainer.train_one_epoch(data.train_loader, epoch=epoch, log_every=cfg.log_every)
    acc.all_reduce()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_time = time.perf_counter() - t0
    tr = acc.result()
    if not math.isfinite(tr.loss):
        raise TextureBiasError(f"training diverged in epoch {epoch + 1} (loss {tr.loss}); lower --lr")
    row: dict[str, Any] = {
        "epoch": epoch + 1, "lr": lr, "train_loss": tr.loss, "train_top1": tr.top1,
        "val_loss": "", "val_top1": "", "val_top5": "",
        "images_per_s": tr.n / train_time if train_time > 0 else 0.0,
    }  # fmt: skip
    improved = False
    if info.distributed:
        # BatchNorm running statistics differ per rank after the last step: validate (and save) rank 0's.
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
    if data.val_loader is not None:
        vacc = score_batches(model, data.val_loader, num_labels=len(data.classes), device=device,
                             precision=cfg.precision, channels_last=cfg.channels_last, desc="validate")  # fmt: skip
        vacc.all_reduce()
        va = vacc.result()
        row.update(val_loss=va.loss, val_top1=va.top1, val_top5=va.top5)
        if state.best_top1 is None or va.top1 > state.best_top1:
            state.best_top1, state.best_epoch, improved = va.top1, epoch + 1, True
    row["epoch_time_s"] = time.perf_counter() - t0
    return row, improved


def _save_epoch(
    cfg: TrainConfig,
    info: DistInfo,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: StepDecay,
    scaler: torch.amp.GradScaler,
    data: _Data,
    state: _RunState,
    rng_states: Any,
    improved: bool,
    last_path: Path,
    best_path: Path,
    writer: Any,
    row: dict[str, Any],
) -> None:
    """checkpoint_last.pt (everything resume needs), checkpoint_best.pt when validation improved, metrics.csv."""
    ck = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch + 1,
        "best_top1": state.best_top1,
        "best_epoch": state.best_epoch,
        "wall_time_s": row["wall_time_s"],
        "rng": rng_states,
        "config": cfg.to_json(),
        "classes": list(data.classes),
        "preprocessing": preprocessing_json(data.pre),
        "world_size": info.world_size,
    }
    save_torch(last_path, ck)
    if improved:
        save_torch(best_path, {k: ck[k] for k in ("format", "model", "epoch", "best_top1", "config", "classes",
                                                 "preprocessing")})  # fmt: skip
    write_csv(cfg.out / "metrics.csv", state.metrics, METRICS_FIELDS)
    if writer is not None:
        for key in ("lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "images_per_s"):
            if row[key] != "":
                writer.add_scalar(key, row[key], epoch + 1)
        writer.flush()
    log.info(format_row(row))
