"""``texturebias detect-train | detect-eval | detect | export-backbone``: detection transfer on Pascal VOC."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from texturebias.cli.common import add_device_arguments, non_negative_int, positive_int


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _name_list(text: str) -> tuple[str, ...]:
    """Comma-separated names, or a file with one name a line."""
    p = Path(text)
    if p.is_file():
        return tuple(line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _set_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def register(sub: argparse._SubParsersAction) -> None:
    _register_train(sub)
    _register_eval(sub)
    _register_detect(sub)
    _register_export(sub)


def _register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect-train",
        help="fine-tune a Faster R-CNN from a texturebias backbone on Pascal VOC",
        description="Train torchvision's Faster R-CNN (ResNet-FPN body, or the feature map of a small registry "
        "model) on VOC image sets, starting the body from a registry classifier. Default recipe: mmdetection's "
        "VOC 07+12 schedule (batch 16, lr 0.01 scaled with the batch, SGD momentum 0.9, weight decay 1e-4, "
        "500-iteration linear warm-up, 12 epochs, lr x0.1 after epoch 9, scale 600/1000, horizontal flip); "
        "see docs/detection.md. Runs unchanged under `torchrun --nproc_per_node=N -m texturebias detect-train ...`.",
    )
    p.add_argument(
        "--backbone",
        metavar="NAME",
        help="registry classifier: resnet50 (ResNet-18/34/101 too), "
        "resnet50_sin, resnet50_sin_in, resnet50_sin_in_in, demo_cnn ...",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--checkpoint",
        type=Path,
        metavar="PATH",
        help="classifier weights for the body (state dict, SIN or `texturebias train` checkpoint)",
    )
    start.add_argument(
        "--pretrained",
        action="store_true",
        default=None,
        help="start the body from the backbone's declared pretrained weights",
    )
    p.add_argument("--voc-root", type=Path, metavar="DIR", help="VOCdevkit folder (or one VOC year folder)")
    p.add_argument(
        "--train-sets",
        type=_set_list,
        metavar="SETS",
        help="comma-separated <year>-<set> (default 2007-trainval,2012-trainval; '07+12' works too)",
    )
    p.add_argument("--val-sets", type=_set_list, metavar="SETS", help="evaluate after the last epoch (2007-test)")
    p.add_argument(
        "--classes",
        type=_name_list,
        metavar="NAMES|FILE",
        help="class names (default: the data's classes.txt, else the 20 VOC classes)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--epochs", type=positive_int, help="passes over the training images (12)")
    p.add_argument("--batch-size", type=positive_int, help="GLOBAL batch over all processes (16)")
    p.add_argument("--lr", type=float, help="learning rate (default 0.01 x batch/16)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-iters", type=non_negative_int, help="linear warm-up iterations (500)")
    p.add_argument("--warmup-factor", type=float, help="lr factor at the first warm-up iteration (0.001)")
    p.add_argument("--lr-steps", type=_int_list, metavar="E1,E2", help="epochs after which lr is multiplied (9)")
    p.add_argument("--lr-gamma", type=float, help="step-decay factor (0.1)")
    p.add_argument("--trainable-layers", type=non_negative_int, help="body stages that train (3, torchvision)")
    p.add_argument("--min-size", type=positive_int, help="shorter image side (600)")
    p.add_argument("--max-size", type=positive_int, help="longer image side cap (1000)")
    p.add_argument("--anchor-sizes", type=_int_list, metavar="S1,...", help="anchor sizes (FPN: 5, one per level)")
    p.add_argument(
        "--box-batch-size", dest="box_batch_size_per_image", type=positive_int, help="RoIs sampled per image (512)"
    )
    p.add_argument(
        "--rpn-batch-size", dest="rpn_batch_size_per_image", type=positive_int, help="anchors sampled per image (256)"
    )
    p.add_argument("--no-hflip", dest="hflip", action="store_false", default=None, help="no horizontal flips")
    p.add_argument("--include-difficult", action="store_true", default=None, help="train on difficult objects too")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        default=None,
        help="leave out images with problems (listed in OUT/bad-files.json) instead of failing",
    )
    p.add_argument("--workers", type=non_negative_int, help="data-loading processes per training process (4)")
    p.add_argument("--amp", action="store_true", default=None, help="fp16 autocast + gradient scaling (CUDA only)")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=non_negative_int, metavar="N", help="log the loss every N steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoint_last.pt")
    p.set_defaults(func=run_train)


_TRAIN_FIELDS = (
    "backbone",
    "checkpoint",
    "pretrained",
    "voc_root",
    "train_sets",
    "val_sets",
    "classes",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "warmup_iters",
    "warmup_factor",
    "lr_steps",
    "lr_gamma",
    "trainable_layers",
    "min_size",
    "max_size",
    "anchor_sizes",
    "box_batch_size_per_image",
    "rpn_batch_size_per_image",
    "hflip",
    "include_difficult",
    "skip_bad",
    "workers",
    "amp",
    "device",
    "seed",
    "log_every",
)


def train_config_from_args(args: argparse.Namespace):  # noqa: ANN201 (lazy import of the config class)
    """The :class:`~texturebias.detect.train.DetectTrainConfig` of the flags (``--resume``: config.json + flags)."""
    from texturebias.detect.train import DetectTrainConfig, load_run_config

    given = {k: getattr(args, k) for k in _TRAIN_FIELDS if getattr(args, k, None) is not None}
    if args.resume and (args.out / "config.json").is_file():
        return dataclasses.replace(load_run_config(args.out), **given, out=args.out, resume=True)
    if "backbone" not in given or "voc_root" not in given:
        print(
            "texturebias detect-train: error: --backbone and --voc-root are required (except with --resume)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return DetectTrainConfig(out=args.out, resume=args.resume, **given)


def run_train(args: argparse.Namespace) -> int:
    from texturebias.detect.train import train_detector
    from texturebias.utils.distributed import dist_info

    result = train_detector(train_config_from_args(args))
    if dist_info().is_main and result.metrics:
        last = result.metrics[-1]
        print(f"trained a {result.config.backbone} Faster R-CNN for {last['epoch']} epochs -> {result.out}")
        if result.evaluation is not None:
            print(
                f"{','.join(result.config.val_sets)}: VOC07 mAP {result.evaluation['map_voc07']:.4f}, "
                f"all-point mAP {result.evaluation['map_all']:.4f}"
            )
        print(f"detector: {result.detector_path}")
    return 0


def _register_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect-eval",
        help="VOC AP/mAP (VOC07 11-point and all-point) of a detector or of devkit results files",
        description="Evaluate with the devkit's exact rules (IoU > 0.5 with the +1 pixel convention, difficult "
        "boxes ignored, duplicates are false positives). Writes OUT/detect-eval.json = {classes: {name: {ap_voc07, "
        "ap_all, npos, detections}}, map_voc07, map_all}, OUT/detect-eval.csv, OUT/pr-curves.png/.pdf and, for "
        "--checkpoint, the detections as devkit results files in OUT/results/.",
    )
    p.add_argument(
        "--voc-root",
        type=Path,
        required=True,
        metavar="DIR",
        help="VOC year folder (VOCdevkit/VOC2007), or VOCdevkit with --image-set 2007-test",
    )
    p.add_argument("--image-set", default="test", metavar="SET", help="image set (default: test)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--results", type=Path, metavar="DIR", help="folder of comp4_det_<set>_<class>.txt files")
    src.add_argument("--checkpoint", type=Path, metavar="PATH", help="a detector from detect-train")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--classes", type=_name_list, metavar="NAMES|FILE", help="class names (default: as the data)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="images per forward pass (4)")
    p.add_argument("--workers", type=non_negative_int, default=2, help="data-loading processes (2)")
    p.add_argument("--amp", action="store_true", help="fp16 autocast (CUDA only)")
    p.add_argument("--skip-bad", action="store_true", help="leave out bad images (listed in OUT/bad-files.json)")
    add_device_arguments(p)
    p.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from texturebias.detect.inference import evaluate_voc
    from texturebias.utils.distributed import dist_info

    res = evaluate_voc(
        args.voc_root,
        args.image_set,
        args.out,
        results=args.results,
        checkpoint=args.checkpoint,
        classes=args.classes,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        amp=args.amp,
        skip_bad=args.skip_bad,
    )
    if not dist_info().is_main:
        return 0
    ev = res.evaluation
    print(f"{'class':<14} {'AP (VOC07)':>10} {'AP (all)':>9} {'npos':>6} {'dets':>7}")
    for name, r in ev.classes.items():
        print(f"{name:<14} {r.ap_voc07:>10.4f} {r.ap_all:>9.4f} {r.npos:>6} {r.detections:>7}")
    print(f"{'mAP':<14} {ev.map_voc07:>10.4f} {ev.map_all:>9.4f}")
    print(f"-> {res.json}")
    return 0


def _register_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in images with a trained detector (JSON boxes + drawn PNG)",
        description="Writes OUT/<image stem>.json (boxes: 0-based x1 y1 x2 y2, box_voc: the devkit's 1-based "
        "values, class, score) and OUT/<image stem>.png with the boxes drawn.",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    p.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="detector.pt of detect-train")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum score of a reported box (0.5)")
    add_device_arguments(p)
    p.set_defaults(func=run_detect)


def run_detect(args: argparse.Namespace) -> int:
    import json

    from texturebias.detect.inference import detect_images

    for path in detect_images(args.images, args.checkpoint, args.out, threshold=args.threshold, device=args.device):
        n = len(json.loads(path.read_text(encoding="utf-8"))["detections"])
        print(f"{path.with_suffix('.png')}: {n} box(es)")
    return 0


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-backbone",
        help="write a trained detector's ResNet body as a torchvision-style ResNet state dict",
        description="The body of a ResNet-FPN detector as torchvision ResNet keys (conv1, bn1, layer1-4; no fc). "
        "mmdetection loads it with init_cfg=dict(type='Pretrained', checkpoint=FILE); detectron2 after "
        "`python tools/convert-torchvision-to-d2.py FILE out.pkl` (docs/detection.md).",
    )
    p.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="detector.pt or checkpoint_last.pt")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="output .pth file")
    p.set_defaults(func=run_export, out_is_file=True)


def run_export(args: argparse.Namespace) -> int:
    from texturebias.detect.model import export_backbone_state_dict, load_detector
    from texturebias.utils.io import save_torch

    detector, spec = load_detector(args.checkpoint)
    sd = export_backbone_state_dict(detector)
    save_torch(args.out, sd)
    print(f"{args.out}: {len(sd)} tensors of the {spec.backbone} body (torchvision ResNet keys, no fc)")
    return 0
