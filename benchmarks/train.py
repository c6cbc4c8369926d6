"""Training-step throughput: texturebias's Trainer vs a minimal plain PyTorch loop, and fp32 vs bf16.

Same model, same batches (held in memory, so data loading is not measured), same process. The two loops
run interleaved, several rounds each, and the median images/s is compared, which keeps the ratio
meaningful on a busy machine. Usage::

    python benchmarks/train.py [--model resnet18] [--input-size 112] [--batch-size 32] [--steps 6] [--rounds 5]
        [--threads N]

Prints images/s and the ratios: ``ours / plain`` (overhead = 1 - ratio; target <= 10 %) and ``bf16 / fp32``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")

from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

from texturebias.models import create_model  # noqa: E402
from texturebias.train.loop import Trainer  # noqa: E402


def plain_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list) -> None:
    """The baseline: the loop of the PyTorch ImageNet example, nothing else."""
    model.train()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="batches per timed epoch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--threads", type=int, help="torch threads (1 is steadier on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    device = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(args.batch_size, 3, args.input_size, args.input_size, generator=g),
         torch.randint(0, args.classes, (args.batch_size,), generator=g))
        for _ in range(args.steps)
    ]  # fmt: skip
    n_images = args.steps * args.batch_size

    def setup(precision: str = "fp32", channels_last: bool = False) -> tuple:
        model = create_model(args.model, num_classes=args.classes).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        return model, opt, Trainer(model, opt, device=device, precision=precision, channels_last=channels_last,
                                   num_classes=args.classes)  # fmt: skip

    plain_model, plain_opt, _ = setup()
    _, _, ours = setup()
    _, _, ours_bf16 = setup("bf16", channels_last=True)
    runs = {
        "plain fp32": lambda: plain_epoch(plain_model, plain_opt, batches),
        "ours fp32": lambda: ours.train_one_epoch(batches, epoch=0, log_every=0),
        "ours bf16+channels_last": lambda: ours_bf16.train_one_epoch(batches, epoch=0, log_every=0),
    }
    for fn in runs.values():  # warm-up (allocator, oneDNN kernel selection)
        fn()
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            rates[name].append(n_images / (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print_machine()
    print(f"{args.model} @ {args.input_size}px, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds x {args.steps} steps")  # fmt: skip
    for name, rate in med.items():
        print(f"  {name:<26} {rate:8.1f} img/s")
    ratio = med["ours fp32"] / med["plain fp32"]
    print(f"ours / plain (fp32):         {ratio:.3f}  (overhead {max(0.0, 1 - ratio):.1%}; target <= 10%)")
    print(f"bf16+channels_last / fp32:   {med['ours bf16+channels_last'] / med['ours fp32']:.2f}x")


if __name__ == "__main__":
    main()
