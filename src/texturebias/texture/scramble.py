"""Scrambling images: tile shuffling, and whole ImageFolders replaced by textures or shuffled tiles.

Tile shuffling cuts an image into T×T tiles and puts them back in a seeded random order. Everything inside a
tile survives; the global arrangement does not. For a BagNet with patch size q and stride 8, every q×q window
that lies inside one tile is moved together with it when T is a multiple of 8, so the bag of patch
evidence — and the averaged logits — barely change once T ≫ q (Brendel & Bethge, ICLR 2019).

Rows/columns that do not fill a whole tile (when T does not divide the image size) stay where they are, so
the output is always a permutation of the input's pixels and has the input's size.

:func:`scramble_folder` runs over an ImageFolder with the shared machinery of
:func:`~texturebias.data.folder_job.run_folder_job` (manifest.csv, failed.csv, resume, atomic writes,
torchrun sharding).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from texturebias.data.folder_job import ItemResult, run_folder_job
from texturebias.errors import TextureBiasError
from texturebias.texture.synthesis import TextureSynthesizer

ScrambleMethod = Literal["texture", "patches"]
Array = np.ndarray | torch.Tensor


def tile_permutation(n_tiles: int, seed: int | np.random.Generator) -> np.ndarray:
    """A seeded random permutation of ``n_tiles`` tile indices (row-major order)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.permutation(n_tiles)


def shuffle_tiles(
    image: Array,
    tile: int,
    seed: int | np.random.Generator = 0,
    *,
    channels_first: bool | None = None,
    permutation: Sequence[int] | None = None,
) -> Array:
    """Cut ``image`` into ``tile``×``tile`` tiles and reassemble them in a seeded random order.

    Args:
        image: (H, W[, C]) NumPy array / PIL-like array, or a tensor (…, C, H, W) (batch allowed; every image of
            the batch gets the same permutation).
        tile: Tile side T in pixels.
        seed: Seed or NumPy Generator of the permutation.
        channels_first: Layout of a 3-D array; default: True for tensors, False for NumPy arrays.
        permutation: Explicit tile order (output tile k = input tile ``permutation[k]``) instead of a seed.

    Returns:
        Same type, shape and dtype as ``image``; the bottom/right remainder (H mod T, W mod T) is unchanged.

    Raises:
        TextureBiasError: ``tile`` < 1 or larger than the image.
    """
    is_tensor = isinstance(image, torch.Tensor)
    if channels_first is None:
        channels_first = is_tensor
    arr = image
    if not channels_first:
        # Work in (..., H, W) layout: move channels first for the duration.
        arr = (
            arr.permute(2, 0, 1) if is_tensor and arr.ndim == 3 else (np.moveaxis(arr, 2, 0) if arr.ndim == 3 else arr)
        )
    h, w = arr.shape[-2], arr.shape[-1]
    if tile < 1 or tile > min(h, w):
        raise TextureBiasError(f"tile size {tile} must be between 1 and the image's shorter side ({min(h, w)})")
    rows, cols = h // tile, w // tile
    n = rows * cols
    perm = np.asarray(permutation) if permutation is not None else tile_permutation(n, seed)
    if sorted(perm.tolist()) != list(range(n)):
        raise ValueError(f"permutation must be a permutation of range({n})")
    out = arr.clone() if is_tensor else arr.copy()
    core = arr[..., : rows * tile, : cols * tile]
    lead = core.shape[:-2]
    # (..., rows, T, cols, T) -> (..., rows*cols, T, T): tile k is row-major tile k.
    tiles = core.reshape(*lead, rows, tile, cols, tile)
    tiles = tiles.transpose(-3, -2) if is_tensor else np.swapaxes(tiles, -3, -2)
    tiles = tiles.reshape(*lead, n, tile, tile)
    index = torch.as_tensor(perm, dtype=torch.long) if is_tensor else perm
    shuffled = tiles[..., index, :, :].reshape(*lead, rows, cols, tile, tile)
    shuffled = shuffled.transpose(-3, -2) if is_tensor else np.swapaxes(shuffled, -3, -2)
    out[..., : rows * tile, : cols * tile] = shuffled.reshape(*lead, rows * tile, cols * tile)
    if not channels_first:
        out = (
            out.permute(1, 2, 0) if is_tensor and out.ndim == 3 else (np.moveaxis(out, 0, 2) if out.ndim == 3 else out)
        )
    return out


def center_crop_resize(img: Image.Image, size: int, resize_size: int | None = None) -> Image.Image:
    """ImageNet evaluation geometry: shorter side to ``resize_size`` (default size·256/224), centre crop size×size.

    Shuffling after this crop aligns tiles with the model's input grid (what matters for BagNets).
    """
    resize_size = resize_size or round(size * 256 / 224)
    scale = resize_size / min(img.size)
    new = (max(size, round(img.width * scale)), max(size, round(img.height * scale)))
    img = img.resize(new, Image.Resampling.BILINEAR)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((left, top, left + size, top + size))


@dataclass
class _PatchJob:
    tiles: tuple[int, ...]
    crop: int | None

    def __call__(self, items: list[Any], images: list[Image.Image]) -> list[Any]:

        results = []
        for item, img in zip(items, images, strict=True):
            if self.crop is not None:
                img = center_crop_resize(img, self.crop)
            arr = np.asarray(img)
            outputs, seeds = {}, {}
            for t in self.tiles:
                if t > min(arr.shape[:2]):
                    raise TextureBiasError(f"tile size {t} is larger than the image ({arr.shape[1]}x{arr.shape[0]})")
                s = item.seed("tiles", t)
                outputs[f"tile{t}"] = shuffle_tiles(arr, t, s)
                seeds[f"tile{t}"] = s
            results.append(
                ItemResult(outputs=outputs, info={"tile": {f"tile{t}": t for t in self.tiles}, "seed": seeds})
            )
        return results


@dataclass
class _TextureJob:
    synthesizer: Any  # TextureSynthesizer (kept Any: it is built lazily, heavy to import)

    def __call__(self, items: list[Any], images: list[Image.Image]) -> list[Any]:

        seeds = [item.seed("texture") for item in items]
        out = self.synthesizer.synthesize(images, seeds=[s % 2**63 for s in seeds])
        return [
            ItemResult(outputs={"": r.to_pil()}, info={"seed": s, "loss": f"{r.loss:.6g}", "iterations": r.iterations})
            for s, r in zip(seeds, out, strict=True)
        ]


def scramble_folder(
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    method: ScrambleMethod = "patches",
    tiles: Sequence[int] = (56,),
    crop: int | None = None,
    seed: int = 0,
    synthesizer: Any = None,
    batch_size: int = 8,
    workers: int = 0,
    limit: int | None = None,
) -> Any:
    """Mirror an image folder with every image scrambled.

    ``method="patches"`` writes ``OUTPUT_DIR/tile<T>/<same relative path>.png`` for each T in ``tiles`` (each
    ``tile<T>`` folder is an ImageFolder again). ``method="texture"`` writes the synthesised texture of each
    image at ``OUTPUT_DIR/<same relative path>.png``. Records (``manifest.csv`` with the seed of each output,
    ``failed.csv``), resume and sharding come from :func:`~texturebias.data.folder_job.run_folder_job`.

    Args:
        input_dir: Folder of images (an ImageFolder or any tree).
        output_dir: Output folder (created).
        method: "patches" or "texture".
        tiles: Tile sizes for "patches".
        crop: For "patches": first resize + centre-crop to crop×crop (ImageNet eval geometry) so tiles align
            with the model input; default: shuffle at the native size.
        seed: Job seed; each image's permutation / noise depends only on (seed, relative path, tile).
        synthesizer: A :class:`~texturebias.texture.synthesis.TextureSynthesizer` for "texture" (default:
            the reference settings with the declared weights).
        batch_size: Images per batch (the texture fast mode optimises a batch together).
        workers: Loader worker processes.
        limit: Only the first ``limit`` images.

    Returns:
        The :class:`~texturebias.data.folder_job.FolderJobSummary`.
    """

    if method == "patches":
        tiles = tuple(sorted(set(int(t) for t in tiles)))
        if not tiles or min(tiles) < 1:
            raise TextureBiasError("give at least one tile size >= 1")
        process: Any = _PatchJob(tiles, crop)
        fields = ["tile", "seed"]
        settings: dict[str, Any] = {"method": method, "crop": crop, "seed": seed}
    elif method == "texture":
        if synthesizer is None:
            synthesizer = TextureSynthesizer()
        process = _TextureJob(synthesizer)
        fields = ["seed", "loss", "iterations"]
        settings = {"method": method, "seed": seed, "synthesis": synthesizer.settings()}
    else:
        raise TextureBiasError(f"unknown scramble method {method!r} (choose texture or patches)")
    return run_folder_job(
        Path(input_dir),
        Path(output_dir),
        process,
        seed=seed,
        batch_size=batch_size,
        workers=workers,
        manifest_fields=fields,
        desc=f"scramble ({method})",
        limit=limit,
        settings=settings,
        # Each tile size writes its own tile<T>/ tree: other --tile values add outputs.
        expected_outputs=(lambda item: [f"tile{t}" for t in tiles]) if method == "patches" else None,
    )
