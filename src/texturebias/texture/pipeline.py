"""File-level entry points behind ``texturebias synthesize``: pick a network, synthesise, write PNGs + a CSV."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from texturebias.data.images import load_image
from texturebias.errors import DataError, TextureBiasError
from texturebias.models import load_model
from texturebias.texture.network import DEFAULT_LAYERS, normalise_torchvision_vgg19, texture_network
from texturebias.texture.synthesis import Method, TextureResult, TextureSynthesizer
from texturebias.utils.device import Precision
from texturebias.utils.io import atomic_path, write_csv

NETWORKS: tuple[str, ...] = ("vgg_normalised", "torchvision")

SYNTHESIS_FIELDS: tuple[str, ...] = (
    "image",
    "output",
    "seed",
    "height",
    "width",
    "iterations",
    "loss_start",
    "loss_final",
    "seconds",
)


def build_texture_network(
    network: str = "vgg_normalised",
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    padding: str = "zero",
) -> nn.Sequential:
    """The texture network by name.

    Args:
        network: "vgg_normalised" — the DeepTextures/AdaIN ``vgg_normalised.pth`` (declared weights, or
            ``checkpoint`` in that layout); "torchvision" — a torchvision VGG-19 (declared torchvision weights,
            or ``checkpoint`` as a torchvision ``vgg19`` state dict) normalised by the T3 procedure on the
            scikit-image sample photos.
        checkpoint: Local weights file (see above).
        padding: "zero" (Caffe, faithful) or "reflect" — only for "vgg_normalised".
    """
    if network == "vgg_normalised":
        return texture_network(checkpoint, padding=padding)
    if network == "torchvision":
        return normalise_torchvision_vgg19(load_model("vgg19", checkpoint)[0])
    raise TextureBiasError(f"unknown texture network {network!r} (choose from {', '.join(NETWORKS)})")


@dataclass
class SynthesisRecord:
    """One synthesised file: the CSV row and the in-memory result."""

    image: Path
    output: Path
    result: TextureResult
    seconds: float


def synthesize_files(
    images: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    network: str = "vgg_normalised",
    checkpoint: str | os.PathLike[str] | None = None,
    layers: Sequence[str] = DEFAULT_LAYERS,
    iterations: int = 2000,
    size: int | None = 256,
    method: Method = "scipy",
    history: int = 20,
    histogram_matching: bool = False,
    seed: int = 0,
    precision: Precision = "fp32",
    device: str = "auto",
    batch_size: int = 8,
    padding: str = "zero",
    net: nn.Sequential | None = None,
) -> list[SynthesisRecord]:
    """Synthesise a texture for every image file and write ``OUT/<stem>.png`` plus ``OUT/synthesis.csv``.

    Image i gets seed ``seed + i``. The CSV has the columns :data:`SYNTHESIS_FIELDS`. Files are written
    atomically; unreadable inputs raise before any work starts.

    Args:
        images: Image files.
        out_dir: Output folder (created).
        network, checkpoint, padding: See :func:`build_texture_network` (ignored when ``net`` is given).
        layers, iterations, size, method, history, histogram_matching, precision, device, batch_size:
            See :class:`~texturebias.texture.synthesis.TextureSynthesizer`.
        seed: Base seed of the white-noise starts.
        net: A ready texture network (tests, notebooks).

    Raises:
        DataError: no images, or two inputs with the same file stem (they would overwrite each other).
    """
    paths = [Path(p) for p in images]
    if not paths:
        raise DataError("no images given")
    stems: dict[str, Path] = {}
    for p in paths:
        other = stems.setdefault(p.stem, p)
        if other != p:
            raise DataError(f"{p} and {other} would both be written as {p.stem}.png; rename one")
    sources = [load_image(p) for p in paths]
    if net is None:
        net = build_texture_network(network, checkpoint, padding=padding)
    synth = TextureSynthesizer(
        net,
        layers=layers,
        iterations=iterations,
        history=history,
        method=method,
        size=size,
        histogram_matching=histogram_matching,
        precision=precision,
        device=device,
        batch_size=batch_size,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[SynthesisRecord] = []
    # One call per image in scipy mode (it is sequential anyway); the torch mode batches everything.
    chunks = [[i] for i in range(len(paths))] if method == "scipy" else [list(range(len(paths)))]
    for chunk in chunks:
        start = time.perf_counter()
        results = synth.synthesize([sources[i] for i in chunk], seeds=[seed + i for i in chunk])
        seconds = (time.perf_counter() - start) / len(chunk)
        for i, res in zip(chunk, results, strict=True):
            target = out / f"{paths[i].stem}.png"
            with atomic_path(target) as tmp:
                res.to_pil().save(tmp, format="PNG")
            records.append(SynthesisRecord(paths[i], target, res, seconds))
    rows = [
        {
            "image": str(r.image),
            "output": r.output.name,
            "seed": r.result.seed,
            "height": r.result.image.shape[0],
            "width": r.result.image.shape[1],
            "iterations": r.result.iterations,
            "loss_start": f"{r.result.losses[0]:.6g}",
            "loss_final": f"{r.result.loss:.6g}",
            "seconds": f"{r.seconds:.2f}",
        }
        for r in records
    ]
    write_csv(out / "synthesis.csv", rows, SYNTHESIS_FIELDS)
    return records
