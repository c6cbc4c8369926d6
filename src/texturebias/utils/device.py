"""Device and precision selection shared by every command."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
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


#: Bytes of full-resolution activations (about 64 float32 channels per pixel, as VGG's relu1_1 or a ResNet stem)
#: that one network call on a CPU should hold; see :func:`cpu_micro_batch`.
CPU_ACTIVATION_BUDGET = 32 * 2**20


def cpu_micro_batch(height: int, width: int, budget: int = CPU_ACTIVATION_BUDGET) -> int:
    """Images per network call on a CPU for inputs of ``height × width``: as many as fit ``budget``, at least 2.

    Batches that outgrow the caches cost more per image on a CPU. Measured on a 2-core AVX2 EPYC, fp32, 224²,
    ms per image at calls of 2 / 4 / 8 / 32 images: EfficientNet-Lite0 25.7 / 21.5 / 33.5 / 52.1, ResNet-50
    88.0 / 81.3 / 101.0 / 126.5, BagNet-33 316 / 490 / 541 / 660; the AdaIN encoder + decoder 427 ms at 2, 556 at 8
    (docs/performance.md). The budget gives 2 at 224² and whole batches for small images.
    """
    return max(2, budget // (64 * 4 * max(height * width, 1)))


def run_batch_of_two(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)``, running a batch of one as a batch of two.

    oneDNN picks a different convolution algorithm for batch size 1 than for larger batches (measured: ~2e-5
    apart, enough to flip a few uint8 pixels), while batches of 2, 3, 4 … give bit-identical per-sample results.
    Never running a batch of one keeps outputs byte-identical whatever the batch size.
    """
    if x.shape[0] != 1:
        return fn(x)
    return fn(torch.cat([x, x]))[:1]


def forward_in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int) -> torch.Tensor:
    """``fn(x)`` computed ``size`` images at a time (0: all at once), with per-sample results unchanged."""
    if size <= 0 or x.shape[0] <= size:
        return run_batch_of_two(fn, x)
    return torch.cat([run_batch_of_two(fn, x[i : i + size]) for i in range(0, x.shape[0], size)])


def inference_forward(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A model's outputs for an inference batch: on a CPU in cache-sized calls (:func:`cpu_micro_batch`).

    The measuring commands (shape-bias, benchmark, robustness, evaluate, classify) decode and batch as before;
    only the network calls are split. In eval mode no layer mixes samples, but oneDNN may pick other kernels for
    other call sizes, so logits can differ from one whole-batch call in the last bits (``benchmarks/call_size.py``
    reports it per model); the 1,600 shape-bias decisions were identical. On a GPU the whole batch goes in one call.
    """
    if x.device.type != "cpu" or x.dim() != 4:
        return model(x)
    return forward_in_chunks(model, x, cpu_micro_batch(x.shape[-2], x.shape[-1]))


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Within the block, run only deterministic kernels where PyTorch has them; the settings are restored after.

    On a GPU, cuDNN's default algorithm search and atomic-add kernels make two seeded runs differ in the last
    bits, and the differences grow over training. This sets ``cudnn.deterministic``, turns off
    ``cudnn.benchmark`` and calls ``torch.use_deterministic_algorithms(True, warn_only=True)``. Ops with no
    deterministic kernel warn instead of failing (on CUDA, ResNet's adaptive average pooling backward is one),
    and such a run is not bitwise repeatable. It also sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set:
    cuBLAS reads it when its first handle is created, so it must be set before the first matrix product on the
    GPU. CPU runs are deterministic without this.
    """
    if not enabled:
        yield
        return
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled())  # fmt: skip
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    cudnn.deterministic, cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
