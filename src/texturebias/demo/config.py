"""What the demo runs: sizes (full and --quick), the run configuration, the result, the model names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from texturebias.demo import world
from texturebias.models import demo as _demo_models  # noqa: F401  (registers demo_cnn / demo_bagnet)
from texturebias.utils.progress import get_logger

log = get_logger("demo")

CNN = "demo_cnn"
BAGNET = "demo_bagnet"
CHANCE = 1.0 / len(world.SHAPES)
HUMAN_SHAPE_BIAS = 0.9587  # REFERENCE §3, pooled over 10 subjects


@dataclass(frozen=True)
class DemoSizes:
    """How much the demo generates and trains (the full demo and ``--quick`` differ only here).

    The full sizes keep the default run within 10 minutes on 2 CPU cores. Training reads the PNGs once
    (``--cache-images``). The number of CNN epochs is a trade-off that was measured (seed 0, 8,000 images,
    docs/demo.md): the texture-randomised CNN needs epochs to learn shapes (accuracy on its own test set
    0.81-0.83 / 0.89-0.90 / 0.90-0.92 after 6 / 8 / 10 epochs), while the natural CNN, given longer, also learns shape
    from the 10 % of natural images whose texture does not match (shape bias 0.18-0.22 / 0.26-0.32 /
    0.35-0.47), which the ImageNet-trained CNNs of the paper (0.21) do not.
    """

    n_train: int = 8000  # per training set (natural, randomised)
    n_test: int = 1000  # per test set (natural, randomised, silhouettes)
    conflict_per_pair: int = 20  # cue-conflict images per (shape, texture != shape) pair: 56 pairs, 1,120 images
    n_probe: int = 2000  # texture-probe training images
    n_styles: int = 256  # style images (full-frame bank textures) for AdaIN
    epochs: int = 6  # CNN epochs over one training set (a concatenation of two gets half as many)
    bagnet_epochs: int = 3  # the BagNets learn local texture in fewer epochs and cost 3x more per image
    batch_size: int = 128
    lr: float = 0.1
    decoder_iterations: int = 800
    decoder_batch: int = 8
    # AdaIN content-style trade-off: at 1.0 the miniature stylizer also erases much of the shape (shape probe
    # 0.26 on stylized images, chance 0.125); at 0.8 the shape probe reads 0.35 while the texture probe stays
    # at 0.22 (measured with seed 0).
    stylize_alpha: float = 0.8
    n_boot: int = 2000
    real_stimuli: bool = True  # run step 1 when the stimuli are found
    workers: int = 2  # processes generating the world's images (the images do not depend on it)


FULL = DemoSizes()
QUICK = DemoSizes(
    n_train=600,
    n_test=160,
    conflict_per_pair=3,
    n_probe=300,
    n_styles=32,
    epochs=2,
    bagnet_epochs=1,
    batch_size=64,
    lr=0.05,
    decoder_iterations=30,
    decoder_batch=4,
    n_boot=500,
    real_stimuli=False,
)


@dataclass
class DemoConfig:
    """Options of :func:`run_demo`.

    Attributes:
        out: Output folder (data sets, checkpoints, trial CSVs, figures, report.html, summary.json).
        seed: Seed of everything (data, initialisation, shuffling, stylization, bootstrap).
        quick: Small sizes (CI smoke run, ~2 minutes); findings are evaluated but not expected to hold.
        stimuli: Folder of the real cue-conflict stimuli (or a data root laid out like ``shared/data``);
            default: ``$TEXTUREBIAS_DATA`` or the download cache (nothing is downloaded).
        sizes: Override the sizes (default: :data:`FULL` or :data:`QUICK`).
    """

    out: Path = Path("texturebias-demo")
    seed: int = 0
    quick: bool = False
    stimuli: Path | None = None
    sizes: DemoSizes | None = None

    def resolved_sizes(self) -> DemoSizes:
        return self.sizes or (QUICK if self.quick else FULL)


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    out: Path
    report: Path
    summary: Path
    summary_data: dict[str, Any]
    findings: list[dict[str, Any]] = field(default_factory=list)
