"""``texturebias demo``: the papers' findings in minutes, offline, with the toolkit's own components.

Steps (each resumable: rerunning with the same ``--out`` and seed reuses what is already there):

1. Real model, real stimuli: EfficientNet-Lite0 (offline ImageNet weights) on the 1,280 cue-conflict
   stimuli vs the human observers (Geirhos et al., ICLR 2019), when the stimuli are available.
2. A miniature replication in the generated shapes x textures world (:mod:`texturebias.demo.world`):
   data sets written as ImageFolders, an AdaIN stylizer with a frozen random encoder
   (:mod:`texturebias.stylize`), small CNNs and BagNets trained with :func:`texturebias.train.train`,
   a Table-1-style accuracy grid, shape bias with bootstrap CIs (:mod:`texturebias.evaluate.metrics`),
   probes of what stylization did, BagNet heatmaps (:mod:`texturebias.explain`).
3. ``report.html`` (self-contained) and ``summary.json`` (every number in the report).

Every finding is *measured* and then compared with its criterion; the report says whether it held.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from texturebias.data.datasets import dataset_dir
from texturebias.data.images import index_image_folder, load_image
from texturebias.demo import world
from texturebias.demo.figures import (
    plot_accuracy_grid,
    plot_bagnet_heatmaps,
    plot_probes,
    plot_samples,
    plot_stylized_pairs,
)
from texturebias.demo.report import write_report
from texturebias.errors import TextureBiasError
from texturebias.evaluate.cue_conflict import evaluate_shape_bias, load_human_trials
from texturebias.evaluate.figures import plot_shape_bias_matrix, plot_shape_bias_summary
from texturebias.evaluate.metrics import bootstrap_shape_bias, shape_bias
from texturebias.evaluate.trials import write_trials
from texturebias.explain.evidence import class_evidence
from texturebias.models import demo as _demo_models  # noqa: F401  (registers demo_cnn / demo_bagnet)
from texturebias.models import resolve_preprocessing
from texturebias.models.weights import load_checkpoint, load_into
from texturebias.stylize.adain import AdaIN
from texturebias.stylize.builder import stylize_folder
from texturebias.stylize.networks import mirrored_decoder, small_vgg_encoder
from texturebias.stylize.train import train_decoder
from texturebias.train.loop import train
from texturebias.train.recipes import TrainConfig
from texturebias.utils.io import finite_or_none, write_json
from texturebias.utils.progress import get_logger, progress
from texturebias.utils.seed import seed_everything

log = get_logger("demo")

CNN = "demo_cnn"
BAGNET = "demo_bagnet"
CHANCE = 1.0 / len(world.SHAPES)


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


# ------------------------------------------------------------------------------------------------ helpers
class _Clock:
    """Wall time per step, for summary.json (the budget is part of the demo's promise)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.c0 = time.process_time()
        self.steps: dict[str, float] = {}
        # CPU seconds of this process (all threads) per step: on a shared machine wall time says little.
        self.cpu: dict[str, float] = {}

    def step(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, clock: _Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.t, self.c = time.perf_counter(), time.process_time()
        log.info("demo: %s ...", self.name)

    def __exit__(self, *exc: object) -> None:
        self.clock.steps[self.name] = round(time.perf_counter() - self.t, 2)
        self.clock.cpu[self.name] = round(time.process_time() - self.c, 2)


def _texture_of(path: Path) -> str:
    """Texture class of a natural/stylized image from its file name ``<shape>-<texture>-<index>.png``."""
    parts = path.stem.split("-")
    return parts[1] if len(parts) >= 3 else ""


# --------------------------------------------------------------------------------------------- data sets
def make_datasets(root: Path, seed: int, sizes: DemoSizes) -> dict[str, Path]:
    """Write every generated set as an ImageFolder under ``root``; returns name → folder."""
    n_conflict = sizes.conflict_per_pair * len(world.SHAPES) * (len(world.SHAPES) - 1)
    plan = [
        ("natural/train", "natural", sizes.n_train, "train"),
        ("natural/test", "natural", sizes.n_test, "test"),
        ("randomised/train", "randomised", sizes.n_train, "train"),
        ("randomised/test", "randomised", sizes.n_test, "test"),
        ("silhouettes/test", "silhouettes", sizes.n_test, "test"),
        ("cue-conflict/test", "cue-conflict", n_conflict, "test"),
        ("texture-probe/train", "texture-probe", sizes.n_probe, "train"),
        ("styles", "styles", sizes.n_styles, "train"),
    ]
    folders = {}
    for name, kind, count, split in plan:
        folder = root / name
        world.write_set(folder, kind, count, seed, split=split, desc=f"generate {name}", workers=sizes.workers)
        folders[name] = folder
    return folders


# ---------------------------------------------------------------------------------------------- stylizer
def build_stylizer(seed: int) -> Any:
    """The demo's AdaIN: frozen random VGG-style encoder (AdaIN at its relu2_1-like layer) + mirrored decoder.

    A randomly initialised (Kaiming) encoder was as good as a briefly trained one in the prototype: AdaIN
    needs feature statistics that describe texture, which random conv features already give (cf. Ulyanov
    et al., 2017 on random networks as image priors).
    """

    channels = (32, 64)
    encoder, style_layers = small_vgg_encoder(channels, convs_per_stage=1, seed=seed)
    torch.manual_seed(seed)
    decoder = mirrored_decoder(channels, convs_per_stage=1)
    return AdaIN(encoder, decoder, style_layers=style_layers)


def make_stylized(folders: dict[str, Path], root: Path, seed: int, sizes: DemoSizes) -> tuple[dict[str, Path], Path]:
    """Train the demo decoder, then stylize the natural train and test sets; returns folders and decoder path."""

    model = build_stylizer(seed)
    result = train_decoder(
        folders["natural/train"],
        folders["styles"],
        root / "stylizer",
        model=model,
        iterations=sizes.decoder_iterations,
        batch_size=sizes.decoder_batch,
        lr=1e-3,
        lr_decay=5e-5,
        style_weight=10.0,
        image_size=world.SIZE,
        crop_size=world.SIZE,
        save_every=max(sizes.decoder_iterations, 1),
        log_every=10,
        seed=seed,
        workers=0,
        device="cpu",
    )

    load_into(model.decoder, load_checkpoint(result.decoder), what=f"decoder {result.decoder}")
    out = {}
    for split in ("train", "test"):
        target = root / "stylized" / split
        stylize_folder(
            folders[f"natural/{split}"],
            folders["styles"],
            target,
            model=model,
            alpha=sizes.stylize_alpha,
            content_size=None,
            crop=None,
            style_size=world.SIZE,
            min_style_size=world.SIZE,
            seed=seed,
            batch_size=64,
            workers=0,
            device="cpu",
            png_compress_level=1,
        )
        out[f"stylized/{split}"] = target
    return out, result.decoder


# -------------------------------------------------------------------------------------------- training
def train_epochs(model: str, n_sets: int, sizes: DemoSizes) -> int:
    """Epochs for a run over ``n_sets`` concatenated sets: about the same number of steps as one set."""
    epochs = sizes.bagnet_epochs if model == BAGNET else sizes.epochs
    return max(1, round(epochs / n_sets))


def train_model(
    model: str, data: Sequence[Path], out: Path, seed: int, sizes: DemoSizes
) -> tuple[nn.Module, tuple[str, ...], Path]:
    """Train with the toolkit's training loop; a finished run in ``out`` is reused (resume is a no-op).

    No validation pass during training: the demo evaluates every model on every test set afterwards.
    """

    n_epochs = train_epochs(model, len(data), sizes)
    cfg = TrainConfig(
        model=model,
        data=list(data),
        out=out,
        val=None,
        epochs=n_epochs,
        batch_size=sizes.batch_size,
        lr=sizes.lr,
        momentum=0.9,
        weight_decay=5e-4,
        # Step decay late in the run: most of the learning happens at the high rate, the last epoch settles.
        lr_steps=(max(1, n_epochs - 1),),
        lr_gamma=0.1,
        workers=0,
        pretrained=False,
        resume=(out / "checkpoint_last.pt").exists(),
        seed=seed,
        log_every=0,
        augment="flip",
        cache_images=True,
        device="cpu",
    )
    result = train(cfg)
    return result.model.eval(), tuple(result.classes), result.checkpoint_last


def train_command(model: str, data: Sequence[Path], out: Path, seed: int, sizes: DemoSizes) -> str:
    """The ``texturebias train`` command line equivalent to :func:`train_model`."""
    d = " ".join(f"--data {p}" for p in data)
    n = train_epochs(model, len(data), sizes)
    return (
        f"texturebias train --model {model} {d} --out {out} --epochs {n} "
        f"--batch-size {sizes.batch_size} --lr {sizes.lr} --weight-decay 5e-4 --lr-steps {max(1, n - 1)} "
        f"--augment flip --cache-images --workers 0 --seed {seed} --device cpu"
    )


# ------------------------------------------------------------------------------------------ evaluation
@dataclass
class EvalSet:
    """A test set loaded once: normalised tensors, labels and file paths."""

    name: str
    x: torch.Tensor
    classes: tuple[str, ...]
    labels: np.ndarray
    paths: list[Path]


def load_eval_set(name: str, root: Path) -> EvalSet:
    """Load every image of an ImageFolder through the toolkit's loader and the demo preprocessing."""

    index = index_image_folder(root)
    tf = resolve_preprocessing(CNN).eval_transform("auto")
    xs = [tf(load_image(p)) for p, _ in progress(index.samples, desc=f"load {name}", unit="img", leave=False)]
    return EvalSet(
        name=name,
        x=torch.stack(xs),
        classes=index.classes,
        labels=np.array([c for _, c in index.samples]),
        paths=[p for p, _ in index.samples],
    )


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Class indices predicted for a batch of normalised images."""
    model.eval()
    out = [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def accuracy_on(model: nn.Module, model_classes: Sequence[str], data: EvalSet, labels: str = "shape") -> float:
    """Top-1 accuracy; ``labels="texture"`` scores against the texture class in the file name."""
    pred = np.array(model_classes)[predict(model, data.x)]
    if labels == "shape":
        truth = np.array(data.classes)[data.labels]
    else:
        truth = np.array([_texture_of(p) for p in data.paths])
        unknown = sorted(set(truth) - set(world.TEXTURES))
        if unknown:  # a renamed file would otherwise silently count as a wrong answer
            raise TextureBiasError(f"{data.name}: cannot read the texture class from file names ({unknown[:3]})")
    return float((pred == truth).mean())


def cue_conflict_trials(model: nn.Module, model_classes: Sequence[str], data: EvalSet, name: str) -> pd.DataFrame:
    """One row per cue-conflict image in the human trial schema (REFERENCE §3), like the real experiment."""
    pred = np.array(model_classes)[predict(model, data.x)]
    return pd.DataFrame(
        {
            "subj": name,
            "session": "session-1",
            "trial": np.arange(1, len(pred) + 1),
            "rt": np.nan,
            "object_response": pred,
            "category": np.array(data.classes)[data.labels],
            "condition": "0",
            "imagename": [p.name for p in data.paths],
        }
    )


# ------------------------------------------------------------------------------------------ the pipeline
MODELS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    # key, architecture, training sets, what it shows
    ("cnn-natural", CNN, ("natural",), "texture and shape both predict the class (ImageNet-like)"),
    ("cnn-randomised", CNN, ("randomised",), "only shape predicts the class (the ideal SIN approximates)"),
    ("cnn-natural+randomised", CNN, ("natural", "randomised"), "both sets concatenated (SIN+IN)"),
    ("cnn-stylized", CNN, ("stylized",), "AdaIN-stylized natural set (Stylized-ImageNet)"),
    ("bagnet-natural", BAGNET, ("natural",), "13-px receptive field: local features only"),
    ("bagnet-randomised", BAGNET, ("randomised",), "a BagNet where local texture carries no class information"),
)
TEST_SETS: tuple[str, ...] = ("natural", "randomised", "stylized", "silhouettes", "cue-conflict")


def _check_out(out: Path, config: DemoConfig, sizes: DemoSizes) -> None:
    """Refuse to mix runs: an existing demo folder must come from the same seed and sizes."""
    stamp = out / "demo-config.json"
    want = {"seed": config.seed, "sizes": dataclasses.asdict(sizes)}
    if stamp.exists():
        have = json.loads(stamp.read_text(encoding="utf-8"))
        if have != want:
            raise TextureBiasError(
                f"{out} holds a demo run with other settings (seed {have.get('seed')}, sizes {have.get('sizes')}); "
                "choose another --out or delete it"
            )
    else:
        write_json(stamp, want)


def run_demo(config: DemoConfig, *, on_step: Callable[[str], None] | None = None) -> DemoResult:
    """Run the whole demo and write ``report.html`` and ``summary.json`` into ``config.out``.

    Args:
        config: Options (output folder, seed, quick mode, where the real stimuli are).
        on_step: Called with each step's name as it starts (the CLI prints them).

    Returns:
        A :class:`DemoResult` with the paths and the summary dict.
    """

    sizes = config.resolved_sizes()
    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    _check_out(out, config, sizes)
    seed = config.seed
    seed_everything(seed)
    clock = _Clock()
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    summary: dict[str, Any] = {
        "version": 1,
        "seed": seed,
        "quick": config.quick,
        "sizes": dataclasses.asdict(sizes),
        "torch_threads": torch.get_num_threads(),
    }
    commands: dict[str, str] = {}

    def step(name: str) -> _Timer:
        if on_step is not None:
            on_step(name)
        return clock.step(name)

    # 1. Real model on the real stimuli.
    with step("real stimuli: EfficientNet-Lite0 vs humans"):
        summary["real"] = _real_step(out, config, sizes, commands)

    # 2a. Data.
    data_root = out / "data"
    with step("generate the shapes x textures world"):
        folders = make_datasets(data_root, seed, sizes)
        # Every third cue-conflict index: the examples then span several shapes and textures.
        kinds = ("natural", "randomised", "cue-conflict", "silhouettes")
        samples = {k: [world.make_sample(k, i * (3 if k == "cue-conflict" else 1), seed, split="test")
                       for i in range(16)] for k in kinds}  # fmt: skip
    # 2b. Stylization.
    with step("train the AdaIN decoder and stylize"):
        stylized, decoder_path = make_stylized(folders, data_root, seed, sizes)
        folders.update(stylized)
    commands["stylize"] = (
        'python -c "from texturebias.demo.pipeline import build_stylizer, make_stylized, make_datasets, QUICK, FULL; '
        f"from pathlib import Path; make_stylized(make_datasets(Path('{data_root}'), {seed}, "
        f"{'QUICK' if config.quick else 'FULL'}), Path('{data_root}'), {seed}, {'QUICK' if config.quick else 'FULL'})\""
    )
    # 2c. Test sets in memory.
    with step("load the test sets"):
        tests = {
            "natural": load_eval_set("natural", folders["natural/test"]),
            "randomised": load_eval_set("randomised", folders["randomised/test"]),
            "stylized": load_eval_set("stylized", folders["stylized/test"]),
            "silhouettes": load_eval_set("silhouettes", folders["silhouettes/test"]),
            "cue-conflict": load_eval_set("cue-conflict", folders["cue-conflict/test"]),
        }
    # 2d. Models.
    models: dict[str, tuple[nn.Module, tuple[str, ...]]] = {}
    ckpt_dir = out / "runs"
    for key, arch, train_sets, _ in MODELS:
        with step(f"train {key}"):
            data = [folders[f"{s}/train"] for s in train_sets]
            model, classes, _ckpt = train_model(arch, data, ckpt_dir / key, seed, sizes)
            models[key] = (model, classes)
            commands[f"train {key}"] = train_command(arch, data, ckpt_dir / key, seed, sizes)
    with step("train the texture probe"):
        probe_data = [folders["texture-probe/train"]]
        probe, probe_classes, _ = train_model(CNN, probe_data, ckpt_dir / "texture-probe", seed, sizes)
        commands["train texture-probe"] = train_command(CNN, probe_data, ckpt_dir / "texture-probe", seed, sizes)

    # 2e. Evaluation: accuracy grid, shape bias, probes.

    with step("evaluate: accuracy grid, shape bias, probes"):
        grid: dict[str, dict[str, float]] = {}
        bias: dict[str, dict[str, Any]] = {}
        trials_dir = out / "trials"
        shape_results = {}
        for key, (model, classes) in models.items():
            grid[key] = {t: accuracy_on(model, classes, tests[t]) for t in TEST_SETS}
            trials = cue_conflict_trials(model, classes, tests["cue-conflict"], key)
            write_trials(trials_dir / f"cue-conflict_{key}_session-1.csv", trials)
            sb = shape_bias(trials, categories=world.SHAPES)
            lo, hi = bootstrap_shape_bias(trials, n_boot=sizes.n_boot, seed=seed)
            shape_results[key] = sb
            bias[key] = {
                "shape_bias": finite_or_none(sb.shape_bias),
                "ci95": [finite_or_none(lo), finite_or_none(hi)],
                "n_shape": sb.n_shape,
                "n_texture": sb.n_texture,
                "n_other": sb.n_other,
                "per_category": {k: finite_or_none(v) for k, v in sb.per_category.items()},
            }
        probes = {
            "shape_probe": {
                "model": "cnn-randomised",
                "natural": accuracy_on(*models["cnn-randomised"], tests["natural"], labels="shape"),
                "stylized": accuracy_on(*models["cnn-randomised"], tests["stylized"], labels="shape"),
            },
            "texture_probe": {
                "model": "texture-probe",
                "natural": accuracy_on(probe, probe_classes, tests["natural"], labels="texture"),
                "stylized": accuracy_on(probe, probe_classes, tests["stylized"], labels="texture"),
            },
            "chance": CHANCE,
        }
    commands["analyze trials"] = f"texturebias analyze {trials_dir}"
    summary["accuracy"] = grid
    summary["shape_bias"] = bias
    summary["probes"] = probes
    summary["chance"] = CHANCE

    # 2f. BagNet heatmaps.
    with step("BagNet heatmaps"):
        summary["heatmaps"] = _heatmaps(models["bagnet-natural"], tests["natural"], figures)

    # 3. Findings, figures, report.
    findings = evaluate_findings(summary)
    summary["findings"] = findings
    summary["commands"] = commands
    summary["timings_s"] = clock.steps
    summary["cpu_times_s"] = clock.cpu
    summary["total_time_s"] = round(time.perf_counter() - clock.t0, 2)
    with step("figures and report"):
        figs = _figures(summary, samples, tests, folders, shape_results, figures, out)
        summary["figures"] = {k: str(Path(v).relative_to(out)) for k, v in figs.items()}
        summary["total_time_s"] = round(time.perf_counter() - clock.t0, 2)
        summary["total_cpu_s"] = round(time.process_time() - clock.c0, 2)
        summary_path = write_json(out / "summary.json", summary)
        report = write_report(out / "report.html", summary, {k: Path(v) for k, v in figs.items()})
    return DemoResult(out=out, report=report, summary=summary_path, summary_data=summary, findings=findings)


# ------------------------------------------------------------------------------------------------ step 1
HUMAN_SHAPE_BIAS = 0.9587  # REFERENCE §3, pooled over 10 subjects


def _real_step(out: Path, config: DemoConfig, sizes: DemoSizes, commands: dict[str, str]) -> dict[str, Any]:
    """EfficientNet-Lite0 on the real cue-conflict stimuli, or a note on how to get them."""
    how = (
        "texturebias shape-bias --model efficientnet_lite0 --stimuli DIR  (DIR: the cue-conflict stimuli of "
        "github.com/rgeirhos/texture-vs-shape, or set TEXTUREBIAS_DATA; `texturebias data fetch cue-conflict` "
        "downloads them)"
    )
    if not sizes.real_stimuli and config.stimuli is None:
        return {"status": "skipped", "reason": "--quick (the real-stimuli step takes ~1 minute)", "how": how}
    try:
        folder = dataset_dir("cue-conflict", config.stimuli, download=False, show_progress=False)
    except TextureBiasError as exc:
        return {"status": "unavailable", "reason": str(exc), "how": how}

    real_out = out / "real"
    result = evaluate_shape_bias(
        "efficientnet_lite0",
        stimuli=folder,
        out_dir=real_out,
        sets=("cue-conflict",),
        n_boot=sizes.n_boot,
        seed=config.seed,
        download=False,
        device="cpu",
        human_consistency=False,
    )
    info: dict[str, Any] = {
        "status": "done",
        "stimuli": str(folder),
        "model": "efficientnet_lite0",
        "shape_bias": finite_or_none(result.shape.shape_bias),
        "ci95": [finite_or_none(result.ci[0]), finite_or_none(result.ci[1])],
        "n_shape": result.shape.n_shape,
        "n_texture": result.shape.n_texture,
        "n_other": result.shape.n_other,
        "accuracy": {k: finite_or_none(v) for k, v in result.accuracy.items()},
        "human_shape_bias_published": HUMAN_SHAPE_BIAS,
    }
    humans = None
    try:
        root = config.stimuli if config.stimuli is not None else None
        humans = load_human_trials("cue-conflict", root, download=False)
    except TextureBiasError as exc:
        info["humans_note"] = str(exc)
    results = {"efficientnet_lite0": result.shape}
    if humans is not None and len(humans):
        hs = shape_bias(humans)
        info["human_shape_bias"] = finite_or_none(hs.shape_bias)
        results = {"humans": hs, "efficientnet_lite0": result.shape}
    paths = plot_shape_bias_matrix(results, out / "figures" / "real_shape_bias_matrix",
                                   title="Cue-conflict stimuli: EfficientNet-Lite0 vs humans")  # fmt: skip
    info["figure"] = str(paths[0])
    commands["real stimuli"] = f"texturebias shape-bias --model efficientnet_lite0 --stimuli {folder} --out {real_out}"
    return info


# ------------------------------------------------------------------------------------------- heatmaps
def _heatmaps(bagnet: tuple[nn.Module, tuple[str, ...]], data: EvalSet, figures: Path, n: int = 6) -> dict[str, Any]:
    """Class-evidence heatmaps of the natural-trained BagNet on a few test images + most informative patches."""

    model, classes = bagnet
    idx = np.linspace(0, len(data.x) - 1, n).astype(int)
    x = data.x[idx]
    truth = [data.classes[data.labels[i]] for i in idx]
    target = [classes.index(t) for t in truth]
    with torch.inference_mode():
        heat = class_evidence(model, x, target).numpy()
    info: dict[str, Any] = {"images": [str(data.paths[i].name) for i in idx], "targets": truth,
                            "receptive_field": int(model.receptive_field)}  # fmt: skip
    np.save(figures / "bagnet_heatmaps.npy", heat)
    info["max_evidence"] = [float(h.max()) for h in heat]
    return info


# ------------------------------------------------------------------------------------------- findings
def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def evaluate_findings(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare the measured numbers with each finding's criterion; ``held`` is True/False (None: not measured)."""
    sb = {k: _f(v["shape_bias"]) for k, v in s["shape_bias"].items()}
    ci = {k: [_f(c) for c in v["ci95"]] for k, v in s["shape_bias"].items()}
    acc = s["accuracy"]
    pr = s["probes"]
    chance = s["chance"]
    out: list[dict[str, Any]] = []

    def add(fid: str, claim: str, held: bool | None, numbers: dict[str, Any], cite: str, criterion: str) -> None:
        out.append({"id": fid, "claim": claim, "criterion": criterion,
                    "held": None if held is None else bool(held), "numbers": numbers, "citation": cite})  # fmt: skip

    real = s.get("real", {})
    claim = "An ImageNet-trained CNN (EfficientNet-Lite0) is texture-biased; humans are shape-biased"
    if real.get("status") == "done":
        h = real.get("human_shape_bias", HUMAN_SHAPE_BIAS)
        add("real-texture-bias", claim,
            _f(real["shape_bias"]) < 0.5 < _f(h),
            {"efficientnet_lite0": real["shape_bias"], "ci95": real["ci95"], "humans": h},
            "Geirhos et al., ICLR 2019, Fig. 4", "model shape bias < 0.5 < human shape bias")  # fmt: skip
    else:
        add("real-texture-bias", claim,
            None, {"status": real.get("status"), "reason": real.get("reason")},
            "Geirhos et al., ICLR 2019, Fig. 4", "needs the real stimuli")  # fmt: skip
    add("natural-texture-bias", "A CNN trained where texture predicts the class as well as shape learns texture",
        ci["cnn-natural"][1] < 0.5, {"shape_bias": sb["cnn-natural"], "ci95": ci["cnn-natural"]},
        "Geirhos et al., ICLR 2019, Sec. 3", "upper end of the 95% CI < 0.5")  # fmt: skip
    add("randomised-shape-bias", "Removing the texture shortcut (texture-randomised data) gives a shape-biased CNN",
        ci["cnn-randomised"][0] > 0.5 and sb["cnn-randomised"] > sb["cnn-natural"],
        {"shape_bias": sb["cnn-randomised"], "ci95": ci["cnn-randomised"], "natural": sb["cnn-natural"]},
        "Geirhos et al., ICLR 2019, Fig. 5 (SIN-trained ResNet-50: 0.81)", "lower end of the 95% CI > 0.5")  # fmt: skip
    add("stylized-more-shape", "Training on AdaIN-stylized data raises shape bias over natural training",
        ci["cnn-stylized"][0] > ci["cnn-natural"][1],
        {"stylized": sb["cnn-stylized"], "ci95": ci["cnn-stylized"], "natural": sb["cnn-natural"],
         "natural_ci95": ci["cnn-natural"]},
        "Geirhos et al., ICLR 2019, Sec. 4", "CIs do not overlap (stylized above natural)")  # fmt: skip
    mixed = sb["cnn-natural+randomised"]
    add("mixed-intermediate", "Mixing natural and shape-only data gives an intermediate shape bias (cf. SIN+IN)",
        sb["cnn-natural"] < mixed < sb["cnn-randomised"],
        {"natural": sb["cnn-natural"], "natural+randomised": mixed, "randomised": sb["cnn-randomised"]},
        "Geirhos et al., ICLR 2019, Table 2 (SIN+IN 0.35 between IN 0.21 and SIN 0.81)",
        "natural < natural+randomised < randomised")  # fmt: skip
    add("bagnet-local", "A BagNet (13-px receptive field) classifies natural images from local texture alone, "
        "but not shape-only silhouettes",
        acc["bagnet-natural"]["natural"] >= 0.8 and acc["bagnet-natural"]["silhouettes"] < 2 * chance,
        {"natural": acc["bagnet-natural"]["natural"], "silhouettes": acc["bagnet-natural"]["silhouettes"],
         "chance": chance},
        "Brendel & Bethge, ICLR 2019", "accuracy on natural >= 0.80 and on silhouettes < 2x chance")  # fmt: skip
    add("bagnet-randomised", "Without a texture shortcut the BagNet falls far behind the CNN (BagNets on SIN)",
        acc["bagnet-randomised"]["randomised"] < acc["cnn-randomised"]["randomised"] - 0.2,
        {"bagnet": acc["bagnet-randomised"]["randomised"], "cnn": acc["cnn-randomised"]["randomised"]},
        "Geirhos et al., ICLR 2019, Table 1", "BagNet accuracy on randomised < CNN's - 0.20")  # fmt: skip
    add("table1-asymmetry", "Natural-trained CNNs fail on stylized images; stylized-trained CNNs transfer to natural",
        acc["cnn-stylized"]["natural"] > acc["cnn-natural"]["stylized"] + 0.2,
        {"natural->stylized": acc["cnn-natural"]["stylized"], "stylized->natural": acc["cnn-stylized"]["natural"]},
        "Geirhos et al., ICLR 2019, Table 1 (IN->SIN 16.4, SIN->IN 82.6 top-5)",
        "stylized->natural accuracy > natural->stylized + 0.20")  # fmt: skip
    add("probe-texture-removed", "Stylization removes the class texture (texture probe near chance on stylized images)",
        pr["texture_probe"]["stylized"] <= chance + 0.10,
        {"natural": pr["texture_probe"]["natural"], "stylized": pr["texture_probe"]["stylized"], "chance": chance},
        "Geirhos et al., ICLR 2019, Sec. 2 (SIN)", "texture probe on stylized <= chance + 0.10")  # fmt: skip
    add("probe-shape-kept", "Stylization keeps shape information (shape probe well above chance on stylized images)",
        pr["shape_probe"]["stylized"] >= 2 * chance,
        {"natural": pr["shape_probe"]["natural"], "stylized": pr["shape_probe"]["stylized"], "chance": chance},
        "Geirhos et al., ICLR 2019, Sec. 2 (SIN)", "shape probe on stylized >= 2x chance")  # fmt: skip
    return out


# -------------------------------------------------------------------------------------------- figures
def _figures(
    s: dict[str, Any],
    samples: dict[str, list[world.Sample]],
    tests: dict[str, EvalSet],
    folders: dict[str, Path],
    shape_results: dict[str, Any],
    figures: Path,
    out: Path,
) -> dict[str, str]:

    figs: dict[str, str] = {}
    figs["samples"] = str(plot_samples(samples, figures / "world_samples")[0])
    figs["stylized"] = str(plot_stylized_pairs(folders["natural/test"], folders["stylized/test"],
                                               figures / "stylized_examples")[0])  # fmt: skip
    figs["accuracy"] = str(plot_accuracy_grid(s["accuracy"], figures / "accuracy_grid")[0])
    ci = {k: tuple(_f(c) for c in v["ci95"]) for k, v in s["shape_bias"].items()}
    title = "Shape bias on the generated cue-conflict set"
    figs["shape_bias"] = str(plot_shape_bias_summary(shape_results, figures / "shape_bias", ci=ci, title=title)[0])
    cnns = {k: v for k, v in shape_results.items() if k.startswith("cnn")}
    figs["shape_matrix"] = str(plot_shape_bias_matrix(cnns, figures / "shape_bias_matrix", categories=world.SHAPES,
                                                      title="Per-shape shape bias (demo CNNs)")[0])  # fmt: skip
    figs["probes"] = str(plot_probes(s["probes"], figures / "probes")[0])
    heat = np.load(figures / "bagnet_heatmaps.npy")
    names = s["heatmaps"]["images"]
    images = [load_image(folders["natural/test"] / t / nm) for t, nm in zip(s["heatmaps"]["targets"], names,
                                                                                   strict=True)]  # fmt: skip
    figs["heatmaps"] = str(plot_bagnet_heatmaps(images, heat, s["heatmaps"]["targets"], figures / "bagnet_heatmaps",
                                               q=s["heatmaps"]["receptive_field"])[0])  # fmt: skip
    real = s.get("real", {})
    if real.get("figure"):
        figs["real"] = real["figure"]
    return figs
