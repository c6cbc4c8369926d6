"""Detection throughput: texturebias's detect-train / detect-eval loops vs a plain torchvision loop.

Same detector architecture and initial weights, same generated VOC-layout images (read from disk by both,
batch by batch), same process. Training: images/s of one epoch of :func:`train_detector` (its own
``metrics.csv`` timing, which excludes set-up and checkpoint writing) against the loop of torchvision's
detection reference (``model(images, targets)``, sum of losses, SGD step). Evaluation: images/s of
:func:`detect_voc_set` against ``model(images)`` under ``no_grad``. Rounds are interleaved and the medians
compared. Usage::

    python benchmarks/detect.py [--backbone demo_cnn|resnet18] [--images 32] [--size 96] [--batch-size 4]
        [--rounds 3] [--threads N]

Prints the CPU model and flags (avx2 / avx512_bf16 / amx) beside the ratios ``ours / plain`` (overhead =
1 - ratio; target <= 10 %).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")

from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

from texturebias.detect.data import VocDetectionDataset, collate  # noqa: E402
from texturebias.detect.inference import detect_voc_set  # noqa: E402
from texturebias.detect.model import detection_model  # noqa: E402
from texturebias.detect.synthetic import write_synthetic_voc  # noqa: E402
from texturebias.detect.train import DetectTrainConfig, train_detector  # noqa: E402
from texturebias.detect.voc import load_voc  # noqa: E402


def plain_train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: object) -> int:
    """torchvision's detection reference loop, nothing else; returns the number of images."""
    model.train()
    n = 0
    for images, targets, _ in loader:  # type: ignore[attr-defined]
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += len(images)
    return n


@torch.no_grad()
def plain_eval(model: torch.nn.Module, loader: object) -> int:
    model.eval()
    n = 0
    for images, _, _ in loader:  # type: ignore[attr-defined]
        model(images)
        n += len(images)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="demo_cnn")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print_machine()
    work = Path(tempfile.mkdtemp(prefix="tb-detect-bench-"))
    write_synthetic_voc(work, splits={"trainval": args.images, "test": args.images}, size=(args.size, args.size))
    anchors = (16, 32, 64, 128, 256) if args.backbone.startswith("resnet") else (16, 32, 64)
    kw = dict(min_size=args.size, max_size=args.size, anchor_sizes=anchors)
    settings = dict(backbone=args.backbone, voc_root=work, train_sets=("2007-trainval",), epochs=1,
                    batch_size=args.batch_size, lr=0.01, warmup_iters=0, min_size=args.size, max_size=args.size,
                    anchor_sizes=anchors, workers=0, hflip=False)  # fmt: skip
    train_set = load_voc(work, "2007-trainval")
    test_set = load_voc(work, "2007-test")
    loader = torch.utils.data.DataLoader(VocDetectionDataset(train_set.images, train_set.classes),
                                         batch_size=args.batch_size, shuffle=True, collate_fn=collate)  # fmt: skip
    eval_loader = torch.utils.data.DataLoader(VocDetectionDataset(test_set.images, test_set.classes),
                                              batch_size=args.batch_size, collate_fn=collate)  # fmt: skip
    ours_train, plain_train, ours_eval, plain_eval_rates = [], [], [], []
    for r in range(args.rounds):
        result = train_detector(DetectTrainConfig(out=work / f"run{r}", **settings))  # type: ignore[arg-type]
        ours_train.append(result.metrics[-1]["images_per_s"])
        torch.manual_seed(0)
        model = detection_model(args.backbone, num_classes=len(train_set.classes) + 1, **kw)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9,
                              weight_decay=1e-4)  # fmt: skip
        t0 = time.perf_counter()
        n = plain_train_epoch(model, opt, loader)
        plain_train.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        detect_voc_set(result.model, test_set, batch_size=args.batch_size)
        ours_eval.append(len(test_set) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        n = plain_eval(result.model, eval_loader)
        plain_eval_rates.append(n / (time.perf_counter() - t0))
    med = statistics.median
    print(f"{args.backbone} Faster R-CNN, {args.images} images of {args.size} px, batch {args.batch_size}, "
          f"{args.rounds} rounds (median)")  # fmt: skip
    print(f"train: ours {med(ours_train):.2f} img/s, plain {med(plain_train):.2f} img/s, "
          f"ratio {med(ours_train) / med(plain_train):.3f}")  # fmt: skip
    print(f"eval:  ours {med(ours_eval):.2f} img/s, plain {med(plain_eval_rates):.2f} img/s, "
          f"ratio {med(ours_eval) / med(plain_eval_rates):.3f}")  # fmt: skip
    print_machine()


if __name__ == "__main__":
    main()
