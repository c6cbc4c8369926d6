"""The machine a benchmark ran on: CPU model and the flags that decide its speed, torch version, GPU.

Ratios only mean something next to the machine that produced them: on AVX2-only CPUs bf16 is emulated
(slower than fp32), AVX512-BF16 makes it about 2x fp32 and AMX several x. Every script in ``benchmarks/``
prints :func:`describe_machine` beside its ratios. Import it as ``from _machine import print_machine``
(scripts run as ``python benchmarks/<name>.py`` have ``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The flags that change which kernels oneDNN / the vectorised CPU kernels use.
SPEED_FLAGS: tuple[str, ...] = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or :func:`platform.processor` where that is unavailable."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> dict[str, bool]:
    """Which of :data:`SPEED_FLAGS` the CPU reports (all ``False`` where ``/proc/cpuinfo`` is unreadable)."""
    flags: set[str] = set()
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {flag: flag in flags for flag in SPEED_FLAGS}


def cpu_has_bf16_hardware() -> bool:
    """True when bf16 runs in hardware on this CPU (AVX512-BF16 or AMX), i.e. bf16 autocast is worth it."""
    flags = cpu_flags()
    return flags["avx512_bf16"] or flags["amx_tile"]


def describe_machine() -> dict[str, str]:
    """CPU model, cores, flags, torch version/CPU capability/threads, CUDA version and GPU name (if any)."""
    import torch

    flags = cpu_flags()
    info = {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count() or "?"),
        "cpu flags": " ".join(f"{k}={'yes' if v else 'no'}" for k, v in flags.items()),
        "torch": torch.__version__,
        "torch cpu capability": str(torch.backends.cpu.get_cpu_capability()),
        "torch threads": str(torch.get_num_threads()),
        "cuda": str(torch.version.cuda or "none"),
    }
    if torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
        info["cudnn"] = str(torch.backends.cudnn.version())
    else:
        info["gpu"] = "none"
    return info


def machine_line() -> str:
    """:func:`describe_machine` on one line."""
    return "machine: " + "; ".join(f"{k}: {v}" for k, v in describe_machine().items())


def print_machine() -> None:
    """Print :func:`machine_line` (call it beside the ratios a benchmark prints)."""
    print(machine_line(), flush=True)


if __name__ == "__main__":
    print_machine()
