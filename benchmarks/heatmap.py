"""Benchmark: exact BagNet class-evidence maps, patch-loop baseline vs texturebias.explain.evidence.class_evidence.

The baseline implements the reference definition the way the original code does: cut the q x q patch centred
on every pixel of the zero-padded image and run batches of 1000 patches through the full network. It is very
slow (minutes per map for BagNet-33), so by default it runs on the first ``--baseline-patches`` patches (whole
rows, >= one batch of 1000) and its time is extrapolated LINEARLY to all H*W patches (every batch costs the
same); the output says so. ``class_evidence`` always computes the full map. Max |delta| compares both on the
rows the baseline computed. Weights: the fixtures' "detinit-v1" weights when ../shared/fixtures is present
(no official BagNet weights are reachable offline), else a seeded random init.

    .venv/bin/python benchmarks/heatmap.py                       # q = 9, 17, 33 at 224x224, fp32
    .venv/bin/python benchmarks/heatmap.py --q 33 --bf16 --bf16-window 64
    .venv/bin/python benchmarks/heatmap.py --memory              # peak RSS of a 1024x1024 BagNet-33 map (one tile)
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the detinit recipe lives with the tests

from _machine import print_machine  # noqa: E402  (benchmarks/ is on sys.path)

from texturebias.explain.evidence import (  # noqa: E402
    DensePlan,
    _tile_shape,  # noqa: E402
    class_evidence,
    patch_loop_evidence,
)
from texturebias.models import create_model, load_into  # noqa: E402


def _fixtures() -> Path | None:
    p = Path(os.environ.get("TEXTUREBIAS_FIXTURES", REPO.parent / "shared" / "fixtures"))
    return p if (p / "bagnet").is_dir() else None


def _model(q: int) -> tuple[torch.nn.Module, str]:
    model = create_model(f"bagnet{q}")
    fx = _fixtures()
    if fx is not None:
        from detinit import detinit_state_dict

        load_into(model, detinit_state_dict(fx / "bagnet" / f"keys_bagnet{q}.json", gain=1.0))
        return model.eval(), "detinit-v1"
    torch.manual_seed(q)
    return model.eval(), "seeded random init"


def _image(size: int) -> torch.Tensor:
    fx = _fixtures()
    if fx is not None and size == 224:
        return torch.load(fx / "bagnet" / "inputs.pt", weights_only=True)["x224"]
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def bench(q: int, size: int, baseline_patches: int, bf16: bool, bf16_window: int | None) -> dict[str, float]:
    model, weights = _model(q)
    x = _image(size)
    rows = max(1, math.ceil(baseline_patches / size))
    t0 = time.perf_counter()
    ref = patch_loop_evidence(model, x, 7, batch_size=1000, rows=range(rows))
    t_part = time.perf_counter() - t0
    t_base = t_part * size / rows  # linear extrapolation: every 1000-patch batch costs the same
    plan = DensePlan(model, "fp32")
    t0 = time.perf_counter()
    heat = class_evidence(plan, x, 7)[0]
    t_ours = time.perf_counter() - t0
    delta = float((heat[:rows] - ref[:rows]).abs().max())
    res = {
        "q": q,
        "baseline_s": t_base,
        "baseline_rows": rows,
        "ours_s": t_ours,
        "max_delta": delta,
        "max_abs": float(heat.abs().max()),
        "weights": weights,
    }
    print(
        f"bagnet{q} {size}x{size}: baseline {t_base:8.1f} s (measured {t_part:.1f} s on {rows * size} patches, "
        f"extrapolated x{size / rows:.1f}) | class_evidence fp32 {t_ours:6.2f} s | speed-up {t_base / t_ours:5.1f}x "
        f"| max|delta| {delta:.2e} (map max {res['max_abs']:.2f}) [{weights}]",
        flush=True,
    )
    if bf16:
        off = (size - bf16_window) // 2 if bf16_window else 0
        win = (off, off, bf16_window, bf16_window) if bf16_window else None  # centred: away from the padding
        plan16 = DensePlan(model, "bf16")
        t0 = time.perf_counter()
        h16 = class_evidence(plan16, x, 7, window=win)[0]
        t16 = time.perf_counter() - t0
        t0 = time.perf_counter()
        h32 = heat if win is None else class_evidence(plan, x, 7, window=win)[0]
        t32 = t_ours if win is None else time.perf_counter() - t0
        err = float((h16 - h32).abs().max() / h32.abs().max())
        where = "full map" if win is None else f"central {bf16_window}x{bf16_window} window"
        print(
            f"  bf16 ({where}): {t16:.2f} s vs fp32 {t32:.2f} s (x{t32 / t16:.2f}); est. speed-up vs baseline "
            f"{t_base / (t_ours * t16 / t32):.1f}x; max|bf16 - fp32| / max|fp32| = {err:.2%}",
            flush=True,
        )
        res.update(bf16_s=t16, bf16_rel_err=err)
    return res


def memory(size: int) -> None:
    model, weights = _model(33)
    plan = DensePlan(model, "fp32")
    from texturebias.explain.evidence import DEFAULT_TILE_BYTES

    th, tw = _tile_shape(size, size, 1, 33, DEFAULT_TILE_BYTES // plan.bytes_per_pixel)
    n_tiles = math.ceil(size / th) * math.ceil(size / tw)
    x = _image(size)
    t0 = time.perf_counter()
    class_evidence(plan, x, 7, window=(0, 0, th, tw))  # one tile: tiles run one after the other
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"bagnet33 {size}x{size}: {n_tiles} tiles of {th}x{tw}; one tile {dt:.1f} s (full map ~{dt * n_tiles:.0f} s); "
        f"peak RSS {rss:.0f} MB (the whole map adds only its {size * size * 4 / 2**20:.0f} MB output) [{weights}]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--q", type=int, nargs="+", default=[9, 17, 33], choices=[9, 17, 33])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--baseline-patches", type=int, default=1000, help="patches the baseline really runs")
    ap.add_argument("--bf16", action="store_true", help="also time precision='bf16' and its error vs fp32")
    ap.add_argument("--bf16-window", type=int, help="time bf16 (and fp32 again) on this central window only")
    ap.add_argument("--memory", action="store_true", help="peak RSS of a 1024x1024 BagNet-33 map (one tile)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TEXTUREBIAS_NO_PROGRESS", "1")
    print_machine()
    if args.memory:
        memory(1024)
        return
    for q in args.q:
        bench(q, args.size, args.baseline_patches, args.bf16, args.bf16_window)


if __name__ == "__main__":
    main()
