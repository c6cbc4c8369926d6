"""``detect-train``: fine-tune a Faster R-CNN from a texturebias backbone on VOC, one process or ``torchrun``.

The default recipe is the usual VOC 07+12 schedule of mmdetection's ``faster-rcnn_r50_fpn_1x_voc0712``
(also what torchvision's detection references use, scaled to VOC):

==================  ==================================================================================
global batch 16     2 images per GPU × 8 GPUs (mmdetection ``samples_per_gpu=2``)
lr 0.01             at batch 16, scaled linearly with the global batch (Goyal et al., 2017); mmdetection VOC
momentum 0.9        SGD, mmdetection / torchvision references
weight decay 1e-4   mmdetection / torchvision references
warm-up             linear over the first 500 iterations from 0.001 × lr (mmdetection ``warmup_ratio=0.001``)
12 epochs           mmdetection runs 4 epochs of ``RepeatDataset(times=3)`` = 12 passes over 07+12
step decay          lr × 0.1 after epoch 9 (mmdetection ``step=[3]`` of the repeated set = pass 9)
scale 600 / 1000    shorter side 600, longer ≤ 1000 (mmdetection VOC ``img_scale=(1000, 600)``)
horizontal flip     probability 0.5
trainable layers 3  torchvision's default: ``layer2``-``layer4`` train, stem and ``layer1`` frozen
==================  ==================================================================================

Outputs (rank 0): ``config.json`` (settings, the identity of the input weights, data, environment),
``metrics.csv`` (one row per epoch), ``checkpoint_last.pt`` (everything needed to resume, written atomically
after every epoch), ``detector.pt`` (weights + architecture for ``detect``/``detect-eval``), and with
``val_sets`` an evaluation under ``eval/`` after the last epoch. ``resume=True`` continues from
``checkpoint_last.pt`` bit-identically to an uninterrupted run (CPU; seeded flips and samplers, saved RNG
state); resuming with other settings is refused, naming the settings that differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from texturebias.data.loader import worker_init
from texturebias.detect.data import VocDetectionDataset, collate
from texturebias.detect.model import DetectorSpec, detection_model, set_sampling_seeds
from texturebias.detect.voc import VocSet, load_voc, parse_set_names
from texturebias.errors import CheckpointError, TextureBiasError
from texturebias.train.checkpoints import load_training_checkpoint, read_metrics
from texturebias.utils.device import autocast, resolve_device
from texturebias.utils.distributed import DistInfo, barrier, init_distributed
from texturebias.utils.download import sha256_file
from texturebias.utils.io import require_same_settings, save_torch, write_csv, write_json
from texturebias.utils.progress import get_logger, progress

# Exact-resume helpers of the classification loop (RNG state of every rank); see the report on moving them.
from texturebias.utils.seed import gather_rng_states, seed_everything, set_rng_state, stable_hash

CHECKPOINT_FORMAT = "texturebias-detect-v1"
DETECTOR_FORMAT = "texturebias-detector-v1"
#: Global batch the recipe's learning rate refers to.
REFERENCE_BATCH = 16
METRICS_FIELDS = (
    "epoch", "lr", "loss", "loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg",
    "images", "images_per_s", "epoch_time_s", "wall_time_s", "map_voc07", "map_all",
)  # fmt: skip
_LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
#: Settings that may change when resuming (they do not change what is computed).
RESUMABLE_CHANGES = ("epochs", "workers", "device", "log_every", "val_sets", "voc_root", "resume", "out")

log = get_logger("detect.train")


@dataclass(frozen=True)
class DetectTrainConfig:
    """Settings of a ``detect-train`` run (defaults: the VOC recipe of the module docstring).

    Attributes:
        backbone: Registry name of the backbone classifier (``resnet50``, ``resnet50_sin_in``, ``demo_cnn``).
        voc_root: ``VOCdevkit`` (or one year folder).
        out: Output folder.
        train_sets: Image sets, e.g. ``("2007-trainval", "2012-trainval")`` (``"07+12"`` is accepted).
        checkpoint: Classifier weights to start the body from (plain/SIN/``texturebias train`` checkpoints).
        pretrained: Start the body from the backbone's declared pretrained weights.
        classes: Class names (default: the data's ``classes.txt``, else the 20 VOC classes).
        epochs: Passes over the training images.
        batch_size: Global batch over all processes.
        lr: Learning rate (default ``0.01 × batch_size / 16``).
        momentum: SGD momentum.
        weight_decay: L2 penalty (on every trained parameter, as torchvision's references).
        warmup_iters: Linear warm-up iterations.
        warmup_factor: lr factor at iteration 0 of the warm-up.
        lr_steps: Epochs after which lr is multiplied by ``lr_gamma``.
        lr_gamma: Step-decay factor.
        trainable_layers: Body stages that train.
        min_size: Shorter side of the detector's input.
        max_size: Longer-side cap.
        anchor_sizes: Anchor sizes (see :class:`~texturebias.detect.model.DetectorSpec`).
        box_batch_size_per_image: RoIs sampled per image.
        rpn_batch_size_per_image: Anchors sampled per image.
        hflip: Horizontal flip with probability 0.5.
        include_difficult: Train on difficult objects too (VOC recipes leave them out).
        skip_bad: Leave out bad images (listed in ``bad-files.json``) instead of failing.
        val_sets: Image sets evaluated after the last epoch (e.g. ``("2007-test",)``).
        workers: Data-loading processes per training process.
        amp: fp16 autocast + gradient scaling (CUDA only).
        device: ``auto``, ``cpu``, ``cuda``.
        seed: Seed of initialisation, flips and sampling.
        resume: Continue the run in ``out``.
        log_every: Show the loss every N steps (0: never).
    """

    backbone: str
    voc_root: Path
    out: Path
    train_sets: tuple[str, ...] = ("2007-trainval", "2012-trainval")
    checkpoint: Path | None = None
    pretrained: bool = False
    classes: tuple[str, ...] | None = None
    epochs: int = 12
    batch_size: int = REFERENCE_BATCH
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    lr_steps: tuple[int, ...] = (9,)
    lr_gamma: float = 0.1
    trainable_layers: int = 3
    min_size: int = 600
    max_size: int = 1000
    anchor_sizes: tuple[int, ...] | None = None
    box_batch_size_per_image: int = 512
    rpn_batch_size_per_image: int = 256
    hflip: bool = True
    include_difficult: bool = False
    skip_bad: bool = False
    val_sets: tuple[str, ...] = ()
    workers: int = 4
    amp: bool = False
    device: str = "auto"
    seed: int = 0
    resume: bool = False
    log_every: int = 0

    def resolved_lr(self) -> float:
        """The learning rate: explicit, or 0.01 scaled linearly from a global batch of 16."""
        return self.lr if self.lr is not None else 0.01 * self.batch_size / REFERENCE_BATCH

    def to_json(self) -> dict[str, Any]:
        """JSON-able settings (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DetectTrainConfig:
        """Inverse of :meth:`to_json` (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in obj.items() if k in names}
        for key in ("voc_root", "out", "checkpoint"):
            if kw.get(key) is not None:
                kw[key] = Path(kw[key])
        for key in ("train_sets", "classes", "lr_steps", "anchor_sizes", "val_sets"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass
class DetectTrainResult:
    """What :func:`train_detector` returns (on every rank).

    Attributes:
        out: The output folder.
        config: The settings.
        metrics: One row per epoch run so far (``metrics.csv``).
        checkpoint_last: ``out/checkpoint_last.pt``.
        detector_path: ``out/detector.pt``.
        model: The trained detector (unwrapped, eval mode).
        evaluation: ``detect-eval.json`` content of the ``val_sets`` evaluation, if any.
    """

    out: Path
    config: DetectTrainConfig
    metrics: list[dict[str, Any]]
    checkpoint_last: Path
    detector_path: Path
    model: nn.Module
    evaluation: dict[str, Any] | None = None


def learning_rate(config: DetectTrainConfig, epoch: int, iteration: int) -> float:
    """lr at global ``iteration`` (0-based, counted over all epochs) in 0-based ``epoch``: warm-up × step decay.

    A pure function of its arguments, so a resumed run gets exactly the same learning rates.
    """
    lr = config.resolved_lr() * config.lr_gamma ** sum(1 for s in config.lr_steps if s <= epoch)
    if iteration < config.warmup_iters:
        t = iteration / config.warmup_iters
        lr *= config.warmup_factor + (1.0 - config.warmup_factor) * t
    return lr


def _identity_of_weights(config: DetectTrainConfig) -> dict[str, Any]:
    if config.checkpoint is not None:
        p = Path(config.checkpoint)
        if not p.is_file():
            raise CheckpointError(f"checkpoint not found: {p}")
        return {"checkpoint": str(p.resolve()), "sha256": sha256_file(p), "bytes": p.stat().st_size}
    if config.pretrained:
        from texturebias.models import get_model_entry

        entry = get_model_entry(config.backbone)
        w = entry.weights
        return {"pretrained": w.name if w else None, "url": w.source if w else None,
                "sha256": (w.sha256 or w.hash_prefix) if w else None}  # fmt: skip
    return {"random": True}


def _data_identity(vocset: VocSet) -> dict[str, Any]:
    h = hashlib.sha256("\n".join(img.image_id for img in vocset.images).encode()).hexdigest()
    return {"sets": [f"{d.name}/{s}" for d, s in vocset.sets], "images": len(vocset), "ids_sha256": h,
            "left_out": len(vocset.bad)}  # fmt: skip


def _resume_settings(config: DetectTrainConfig, weights: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The settings a resume must share with the interrupted run."""
    obj = {k: v for k, v in config.to_json().items() if k not in RESUMABLE_CHANGES}
    obj["checkpoint"] = None  # compared through its identity (content hash), not its path
    obj["lr"] = config.resolved_lr()
    obj["input_weights"] = weights
    obj["train_data"] = data
    return obj


def train_detector(config: DetectTrainConfig) -> DetectTrainResult:
    """Train a detector (see the module docstring); works unchanged under ``torchrun`` (DDP).

    Raises:
        TextureBiasError: bad settings or data, an unusable checkpoint, an ``out`` that already holds a run
            (pass ``resume=True``), or a resume with other settings.
    """
    info = init_distributed()
    own_group = info.distributed
    try:
        return _train(config, info)
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: DetectTrainConfig, info: DistInfo) -> DetectTrainResult:
    if cfg.batch_size % info.world_size:
        raise TextureBiasError(f"global batch {cfg.batch_size} is not divisible by {info.world_size} processes")
    if cfg.epochs < 1:
        raise TextureBiasError("epochs must be >= 1")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and info.distributed:
        device = torch.device("cuda", info.local_rank)
    if cfg.amp and device.type != "cuda":
        raise TextureBiasError("--amp (fp16 autocast) needs a CUDA device; train in fp32 on the CPU")
    out = Path(cfg.out)
    last_path, detector_path = out / "checkpoint_last.pt", out / "detector.pt"
    if last_path.exists() and not cfg.resume:
        raise TextureBiasError(f"{out} already holds a detection run; pass --resume to continue it or choose "
                               "another --out")  # fmt: skip
    if cfg.resume and not last_path.is_file():
        raise TextureBiasError(f"nothing to resume: {last_path} not found")
    sets = parse_set_names(cfg.train_sets)
    for v in cfg.val_sets:
        parse_set_names(v)

    vocset = load_voc(cfg.voc_root, sets, classes=cfg.classes, skip_bad=cfg.skip_bad)
    classes = vocset.classes
    ck: dict[str, Any] | None = (
        load_training_checkpoint(last_path, fmt=CHECKPOINT_FORMAT, command="detect-train") if cfg.resume else None
    )
    if ck is not None and cfg.checkpoint is not None and not Path(cfg.checkpoint).is_file():
        # The input checkpoint moved since the run started: its weights live on in checkpoint_last.pt.
        weights_identity = dict((ck.get("settings") or {}).get("input_weights") or {})
    else:
        weights_identity = _identity_of_weights(cfg)
    settings = _resume_settings(cfg, weights_identity, _data_identity(vocset))
    if ck is not None:
        require_same_settings(ck.get("settings"), settings, what="detection training run", state_file=last_path)

    seed_everything(cfg.seed)
    if not info.is_main:
        barrier()  # rank 0 downloads/verifies pretrained weights into the cache first
    spec_kw: dict[str, Any] = dict(
        num_classes=len(classes) + 1, trainable_layers=cfg.trainable_layers, min_size=cfg.min_size,
        max_size=cfg.max_size, anchor_sizes=cfg.anchor_sizes, box_batch_size_per_image=cfg.box_batch_size_per_image,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image, classes=classes,
    )  # fmt: skip
    if ck is not None:
        model = detection_model(cfg.backbone, **spec_kw)  # every weight comes from the checkpoint
    else:
        model = detection_model(cfg.backbone, checkpoint=cfg.checkpoint, pretrained=cfg.pretrained, **spec_kw)
    if info.is_main:
        barrier()
    spec: DetectorSpec = model.spec  # type: ignore[assignment]
    transfer = model.backbone_transfer  # type: ignore[union-attr]
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.resolved_lr(), momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp)

    start_epoch, iteration, elapsed_before = 0, 0, 0.0
    metrics: list[dict[str, Any]] = []
    if ck is not None:
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        start_epoch, iteration = int(ck["epoch"]), int(ck["iteration"])
        elapsed_before = float(ck.get("wall_time_s", 0.0))
        rng = ck["rng"]
        set_rng_state(rng[info.rank] if len(rng) == info.world_size else rng[0])
        metrics = read_metrics(out / "metrics.csv", start_epoch, int_fields=("epoch", "images"))
        if info.is_main:
            log.info("resuming %s after epoch %d", out, start_epoch)
    elif info.is_main and transfer.loaded:
        log.info("%s", transfer.summary())

    if info.is_main:
        write_json(out / "config.json", {
            **cfg.to_json(), "lr": cfg.resolved_lr(),
            "run": {"world_size": info.world_size, "batch_per_process": cfg.batch_size // info.world_size,
                    "classes": list(classes), "input_weights": weights_identity,
                    "backbone_transfer": dataclasses.asdict(transfer), "train_data": _data_identity(vocset),
                    "detector": spec.to_json(), "torch": torch.__version__},
        })  # fmt: skip
        if vocset.bad:
            write_json(out / "bad-files.json", [{"image": i, "problem": m} for i, m in vocset.bad])

    dataset = VocDetectionDataset(vocset.images, classes, hflip=cfg.hflip, seed=cfg.seed,
                                  include_difficult=cfg.include_difficult)  # fmt: skip
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                                  seed=cfg.seed, drop_last=False)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        dataset, worker_init_fn=worker_init,
        batch_size=cfg.batch_size // info.world_size, sampler=sampler, num_workers=cfg.workers,
        collate_fn=collate, pin_memory=device.type == "cuda", persistent_workers=False,
    )  # fmt: skip
    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    t_run = time.perf_counter() - elapsed_before
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        sums = torch.zeros(len(_LOSS_KEYS) + 2, dtype=torch.float64)  # losses..., total loss, images
        lr = learning_rate(cfg, epoch, iteration)
        bar = progress(loader, desc=f"epoch {epoch + 1}", unit="batch", leave=False)
        for step, (images, targets, indices) in enumerate(bar):
            lr = learning_rate(cfg, epoch, iteration)
            for group in optimizer.param_groups:
                group["lr"] = lr
            set_sampling_seeds(model, [stable_hash("detect-sample", cfg.seed, epoch, i) for i in indices])
            images = [im.to(device, non_blocking=True) for im in images]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
            with autocast(device, "fp16" if cfg.amp else "fp32"):
                loss_dict = ddp_model(images, targets)
            loss = sum(loss_dict[k].float() for k in _LOSS_KEYS)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            iteration += 1
            n = len(images)
            values = [float(loss_dict[k].detach()) for k in _LOSS_KEYS] + [float(loss.detach())]
            sums += torch.tensor([v * n for v in values] + [n], dtype=torch.float64)
            if not math.isfinite(values[-1]):
                raise TextureBiasError(f"training diverged at epoch {epoch + 1}, step {step + 1} (loss {values[-1]}); "
                                       "lower --lr")  # fmt: skip
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                bar.set_postfix(loss=f"{values[-1]:.4f}")
                log.info("epoch %d step %d lr %.5g loss %.4f", epoch + 1, step + 1, lr, values[-1])
        set_sampling_seeds(model, None)
        if info.distributed:
            dist.all_reduce(sums)  # gloo and NCCL both reduce float64 CPU/GPU tensors; CPU here
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        epoch_time = time.perf_counter() - t0
        images_seen = float(sums[-1])
        row: dict[str, Any] = {
            "epoch": epoch + 1, "lr": lr, "loss": float(sums[-2]) / max(images_seen, 1.0),
            **{k: float(sums[j]) / max(images_seen, 1.0) for j, k in enumerate(_LOSS_KEYS)},
            "images": int(images_seen), "images_per_s": images_seen / epoch_time if epoch_time > 0 else 0.0,
            "epoch_time_s": epoch_time, "wall_time_s": time.perf_counter() - t_run, "map_voc07": "", "map_all": "",
        }  # fmt: skip
        metrics.append(row)
        rng_states = gather_rng_states(info)  # collective: every rank takes part
        if info.is_main:
            state = {
                "format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch + 1, "iteration": iteration,
                "wall_time_s": row["wall_time_s"], "rng": rng_states, "settings": settings,
                "spec": spec.to_json(), "config": cfg.to_json(), "world_size": info.world_size,
            }  # fmt: skip
            save_torch(last_path, state)
            write_csv(out / "metrics.csv", metrics, METRICS_FIELDS)
            log.info("epoch %d: lr %.4g loss %.4f | %.1f img/s", epoch + 1, lr, row["loss"], row["images_per_s"])
        barrier()

    if info.is_main:
        save_torch(detector_path, {"format": DETECTOR_FORMAT, "model": model.state_dict(), "spec": spec.to_json(),
                                   "config": cfg.to_json(), "epoch": cfg.epochs})  # fmt: skip
    barrier()
    evaluation = None
    if cfg.val_sets and metrics:
        evaluation = _evaluate_after_training(model, cfg, classes, device, out)
        if info.is_main and evaluation is not None:
            metrics[-1].update(map_voc07=evaluation["map_voc07"], map_all=evaluation["map_all"])
            write_csv(out / "metrics.csv", metrics, METRICS_FIELDS)
    model.eval()
    return DetectTrainResult(out, cfg, metrics, last_path, detector_path, model, evaluation)


def _evaluate_after_training(
    model: nn.Module, cfg: DetectTrainConfig, classes: tuple[str, ...], device: torch.device, out: Path
) -> dict[str, Any] | None:
    from texturebias.detect.evaluate import evaluate_detections, ground_truth_by_class, write_results
    from texturebias.detect.inference import detect_voc_set

    vocset = load_voc(cfg.voc_root, cfg.val_sets, classes=classes, skip_bad=cfg.skip_bad)
    detections = detect_voc_set(model, vocset, device=device, amp=cfg.amp, desc="evaluate")
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    image_set = cfg.val_sets[0].rpartition("-")[2] if len(cfg.val_sets) == 1 else "val"
    write_results(out / "eval" / "results", detections, classes, image_set=image_set)
    evaluation = evaluate_detections(ground_truth_by_class(i.annotation for i in vocset.images), detections, classes,
                                     [i.image_id for i in vocset.images]).to_json()  # fmt: skip
    write_json(out / "eval" / "detect-eval.json", evaluation)
    log.info("%s: VOC07 mAP %.4f, all-point mAP %.4f", ",".join(cfg.val_sets), evaluation["map_voc07"],
             evaluation["map_all"])  # fmt: skip
    return evaluation


def load_run_config(out: str | os.PathLike[str]) -> DetectTrainConfig:
    """The settings of the run in ``out`` (its ``config.json``), for ``--resume`` without repeating flags.

    Raises:
        TextureBiasError: no readable ``config.json``.
    """
    path = Path(out) / "config.json"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TextureBiasError(f"cannot read {path} ({exc})") from None
    return DetectTrainConfig.from_json(obj)
