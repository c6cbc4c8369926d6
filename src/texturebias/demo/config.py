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

    The full sizes keep the default run within 10 minutes on 2 CPU cores (8.6-9.4 minutes measured on a 2-core AVX2
    machine, docs/demo.md). Training reads the PNGs once (``--cache-images``). The number of CNN epochs was
    measured (seed 0, 8,000 images, docs/demo.md): the texture-randomised CNN needs epochs to learn shapes
    (accuracy on its own test set 0.81-0.83 / 0.89-0.90 / 0.90-0.92 after 6 / 8 / 10 epochs in the first world).

    The world and stylizer settings (texture scale 3, texture match 1, stylization at 96 px with alpha 1, the
    Stylized-ImageNet recipe) are those of issue 18, which made the Stylized-ImageNet effect clear on every seed:
    docs/demo.md has every setting tried, with its numbers.
    ``texture_scale=1.0, texture_match=0.9, stylize_alpha=0.8, stylize_size=32`` is the demo's first world and
    stylizer.
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
    # AdaIN content-style trade-off. Lower keeps more shape and more of the class pattern, and the CNN trained on the
    # images learns the pattern: on seed 1 at 96 px, alpha 0.6 / 0.85 / 1.0 gave shape probes of 0.55 / 0.41 / 0.32
    # and stylized CNNs of 0.21 / 0.44 / 0.50. 1.0 is the Stylized-ImageNet recipe (issue 18, docs/demo.md).
    stylize_alpha: float = 1.0
    n_boot: int = 2000
    real_stimuli: bool = True  # run step 1 when the stimuli are found
    workers: int = 2  # processes generating the world's images (the images do not depend on it)
    # Textures this many times finer than demo.world's base patterns at the same 32 px (class, randomised and style
    # textures alike). AdaIN keeps whatever its feature cells resolve, so the class patterns must be much finer than
    # the shapes for stylization to replace them (issue 18, docs/demo.md); 1 is the demo's first world.
    texture_scale: float = 3.0
    # Natural set: probability that shape k wears texture k. At 1.0 texture predicts the class exactly as well as
    # shape, and the CNN shows which cue it prefers. At 0.9 (world.P_MATCH, the first world) the 10 % of mismatched
    # images teach the natural CNN shape, more so with finer textures (0.30-0.34 at texture scale 3). Issue 18.
    texture_match: float = 1.0
    # The AdaIN encoder: "random" (frozen random VGG-style, the demo's) or "lite0" (the first blocks of the
    # ImageNet-trained EfficientNet-Lite0, the world upsampled x4 inside it). Issue 18 (docs/demo.md).
    stylizer: str = "random"
    # Pixels the AdaIN stylizer works at: the 32-px content and style images are upsampled to it, the decoder is
    # trained at it and the stylized sets are written at it; the classifiers read them at 32 px through their
    # preprocessing (Stylized-ImageNet, too, is made at a larger size than the 224 px its classifiers see). Larger,
    # the decoder paints the outline in more detail. The stylized CNN's shape bias on seed 2: 0.29 at 32 px (alpha
    # 0.7), 0.38 at 64 and 0.56 at 96 (alpha 0.85); 96 px costs ~4 of the 10 minutes (issue 18, docs/demo.md).
    stylize_size: int = 96


# The world and stylizer options of `texturebias demo` (DemoSizes fields, the CLI flags' names): the CLI passes those
# given into the sizes, and the printed stylize command carries those that differ from the full defaults.
WORLD_OPTIONS: tuple[str, ...] = ("texture_scale", "texture_match", "stylize_alpha", "stylizer", "stylize_size")

# What an out folder stamped before an option existed was made with (its demo-config.json lacks the key): the
# first world, at match 0.9, with the random stylizer at 32 px. The out-folder check and the report both read it.
PRE_OPTION_SIZES: dict[str, Any] = {
    "texture_scale": 1.0,
    "stylizer": "random",
    "texture_match": world.P_MATCH,
    "stylize_size": world.SIZE,
}

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


@dataclass(frozen=True)
class DetectionSizes:
    """The miniature detection transfer (``texturebias demo --detection``; issue 16, the SIN paper's Table 2).

    Faster R-CNN detectors (:mod:`texturebias.detect`, ``demo_cnn`` as a one-level feature-map body) are
    fine-tuned from each demo backbone on generated scenes (:mod:`texturebias.demo.scenes`) with one recipe.
    The full sizes keep the whole step within 5 minutes on 2 CPU cores (docs/detection.md gives the measured
    time). The recipe mirrors torchvision's VOC fine-tuning at miniature scale: the stem and the first stage
    frozen (torchvision freezes ResNet's stem and ``layer1``), SGD with momentum 0.9 and weight decay 1e-4, a
    short linear warm-up, one step decay, horizontal flips; the sampled anchors and RoIs per image are cut from
    256 / 512 to 64 / 32 (CPU time goes mostly into the RoI head; scenes hold 1-3 objects).
    """

    n_train: int = 320  # training scenes (trainval)
    n_test: int = 200  # test scenes: the bootstrap resamples these
    scene_size: int = 64  # pixels; objects are the classification world's 32-px tiles (19-29 px across)
    max_objects: int = 3
    epochs: int = 6
    batch_size: int = 8
    lr: float = 0.02
    warmup_iters: int = 20
    lr_step: int = 5  # lr x 0.1 after this many epochs
    anchor_sizes: tuple[int, ...] = (16, 24, 32)
    box_batch_size_per_image: int = 32
    rpn_batch_size_per_image: int = 64
    trainable_layers: int = 2  # of demo_cnn's stem, layer1, layer2, layer3: layer2 and layer3 train
    # Which demo backbones (keys of the demo's runs/) are transferred; "scratch" is a randomly initialised body,
    # the control that says whether pretraining matters at all.
    backbones: tuple[str, ...] = ("cnn-natural", "cnn-randomised", "cnn-stylized", "scratch")
    n_boot: int = 1000
    # Torch threads while the detectors train and run. Faster R-CNN on 64-px scenes is thousands of tiny ops, and
    # two threads that wait on each other lose badly on a busy machine: on a shared 2-core machine one thread
    # trained at 26 ms per scene, two at 95-181 ms (measured; docs/detection.md).
    torch_threads: int = 1


DETECTION_FULL = DetectionSizes()
DETECTION_QUICK = DetectionSizes(n_train=48, n_test=32, epochs=2, lr_step=1, warmup_iters=5, n_boot=200)


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
        detection: Also run the miniature detection transfer (:mod:`texturebias.demo.detection`).
        detection_sizes: Override its sizes (default: :data:`DETECTION_FULL` or :data:`DETECTION_QUICK`).
    """

    out: Path = Path("texturebias-demo")
    seed: int = 0
    quick: bool = False
    stimuli: Path | None = None
    sizes: DemoSizes | None = None
    detection: bool = False
    detection_sizes: DetectionSizes | None = None

    def resolved_sizes(self) -> DemoSizes:
        """The sizes of this run: explicit, or the full / quick defaults."""
        return self.sizes or (QUICK if self.quick else FULL)

    def resolved_detection_sizes(self) -> DetectionSizes:
        """The detection step's sizes: explicit, or the full / quick defaults."""
        return self.detection_sizes or (DETECTION_QUICK if self.quick else DETECTION_FULL)


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    out: Path
    report: Path
    summary: Path
    summary_data: dict[str, Any]
    findings: list[dict[str, Any]] = field(default_factory=list)
