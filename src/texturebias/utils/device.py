"""Device and precision selection shared by every command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

from texturebias.errors import TextureBiasError

Precision = Literal["fp32", "bf16", "fp16"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else CPU; anything else is checked and passed to ``torch.device``.

    Raises:
        TextureBiasError: an unknown device name, or a CUDA device this machine does not have.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise TextureBiasError(f"unknown device {str(device)!r} (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TextureBiasError(f"device {str(device)!r} requested but no CUDA GPU is available (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise TextureBiasError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise TextureBiasError(f"unsupported device {str(device)!r} (use auto, cpu, cuda or cuda:N)")
    return dev


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot run, before any work (fp16 autocast needs CUDA).

    Raises:
        TextureBiasError: fp16 on a CPU, or an unknown precision.
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise TextureBiasError(f"unknown precision {precision!r} (fp32, bf16 or fp16)")
    if precision == "fp16" and device.type != "cuda":
        raise TextureBiasError("--precision fp16 needs a CUDA device; use bf16 (or fp32) on a CPU")


def autocast(device: torch.device, precision: Precision = "fp32") -> contextlib.AbstractContextManager[None]:
    """Autocast context for ``precision`` ("fp32" is a no-op; "bf16" works on CPU AMX and GPU; "fp16" GPU only)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 needs a CUDA device; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """Disable TF32 matmuls/convs inside the block (BagNet checkpoints are fragile under TF32, REFERENCE §1)."""
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn


def cpu_has_bf16_hardware() -> bool:
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX, from ``/proc/cpuinfo``).

    Without it (AVX2-only CPUs, non-Linux systems where the flags cannot be read) oneDNN emulates bf16 and
    bf16 autocast is several times *slower* than fp32.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16", "amx_tile"))


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """Resolve ``"auto"``: bf16 where it is fast (CUDA with bf16 support, CPUs with AVX512-BF16/AMX), else fp32.

    Any other value is returned unchanged. bf16 changes the results (see the command's docs for its error),
    so ``"auto"`` is an explicit opt-in; defaults stay fp32.
    """
    if precision != "auto":
        return precision  # type: ignore[return-value]
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and cpu_has_bf16_hardware():
        return "bf16"
    return "fp32"
