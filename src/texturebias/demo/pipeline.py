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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from texturebias.data.datasets import dataset_dir
from texturebias.data.images import load_image
from texturebias.demo import world
from texturebias.demo.config import (
    BAGNET,
    CHANCE,
    CNN,
    HUMAN_SHAPE_BIAS,
    PRE_OPTION_SIZES,
    WORLD_OPTIONS,
    DemoConfig,
    DemoResult,
    DemoSizes,
)
from texturebias.demo.detection import SCRATCH, run_detection_transfer
from texturebias.demo.figures import (
    plot_accuracy_grid,
    plot_bagnet_heatmaps,
    plot_detection_map,
    plot_detection_scenes,
    plot_probes,
    plot_samples,
    plot_stylized_pairs,
)
from texturebias.demo.findings import as_float, evaluate_findings
from texturebias.demo.report import write_report
from texturebias.demo.steps import (
    Clock,
    EvalSet,
    Timer,
    accuracy_on,
    cue_conflict_trials,
    load_eval_set,
    make_datasets,
    make_stylized,
    train_command,
    train_model,
)
from texturebias.detect.voc import parse_annotation
from texturebias.errors import TextureBiasError
from texturebias.evaluate.cue_conflict import evaluate_shape_bias, human_trials_of_set
from texturebias.evaluate.figures import plot_shape_bias_matrix, plot_shape_bias_summary
from texturebias.evaluate.metrics import bootstrap_shape_bias, shape_bias
from texturebias.evaluate.trials import write_trials
from texturebias.explain.evidence import class_evidence
from texturebias.models import demo as _demo_models  # noqa: F401  (registers demo_cnn / demo_bagnet)
from texturebias.utils.io import finite_or_none, write_json
from texturebias.utils.progress import get_logger
from texturebias.utils.seed import seed_everything

log = get_logger("demo")

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
        if "sizes" in have:
            have["sizes"] = {**PRE_OPTION_SIZES, **have["sizes"]}
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
    clock = Clock()
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

    def step(name: str) -> Timer:
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
        samples = {k: [world.make_sample(k, i * (3 if k == "cue-conflict" else 1), seed, split="test",
                                         texture_scale=sizes.texture_scale)
                       for i in range(16)] for k in kinds}  # fmt: skip
    # 2b. Stylization.
    with step("train the AdaIN decoder and stylize"):
        stylized, decoder_path = make_stylized(folders, data_root, seed, sizes)
        folders.update(stylized)
    base = "QUICK" if config.quick else "FULL"
    # Settings of the world and stylizer that differ from the full defaults are part of the command, so that it
    # rebuilds the same data.
    default = DemoSizes()
    changed = {k: getattr(sizes, k) for k in WORLD_OPTIONS if getattr(sizes, k) != getattr(default, k)}
    sizes_expr = f"replace({base}, {', '.join(f'{k}={v!r}' for k, v in changed.items())})" if changed else base
    commands["stylize"] = (
        'python -c "from dataclasses import replace; from pathlib import Path; '
        "from texturebias.demo.pipeline import make_stylized, make_datasets, QUICK, FULL; "
        f"s = {sizes_expr}; root = Path('{data_root}'); "
        f'make_stylized(make_datasets(root, {seed}, s), root, {seed}, s)"'
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
    checkpoints: dict[str, Path] = {}
    ckpt_dir = out / "runs"
    for key, arch, train_sets, _ in MODELS:
        with step(f"train {key}"):
            data = [folders[f"{s}/train"] for s in train_sets]
            model, classes, checkpoints[key] = train_model(arch, data, ckpt_dir / key, seed, sizes)
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

    # 2g. Detection transfer (--detection): detectors fine-tuned from the CNN backbones on generated scenes.
    if config.detection:
        with step("detection transfer: scenes, detectors, mAP"):
            summary["detection"] = run_detection_transfer(
                out, seed, config.resolved_detection_sizes(), _backbone_checkpoints(config, checkpoints),
                commands=commands, texture_scale=sizes.texture_scale, texture_match=sizes.texture_match,
            )  # fmt: skip

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


def _backbone_checkpoints(config: DemoConfig, checkpoints: dict[str, Path]) -> dict[str, Path | None]:
    """The detection step's backbones: demo CNN checkpoints by key, ``scratch`` for a random body."""
    out: dict[str, Path | None] = {}
    for name in config.resolved_detection_sizes().backbones:
        if name == SCRATCH:
            out[name] = None
        elif name in checkpoints and any(k == name and arch == CNN for k, arch, _, _ in MODELS):
            out[name] = checkpoints[name]
        else:
            cnns = ", ".join(k for k, arch, _, _ in MODELS if arch == CNN)
            raise TextureBiasError(f"detection backbone {name!r} is not a demo CNN; choose from {cnns}, {SCRATCH}")
    return out


# ------------------------------------------------------------------------------------------------ step 1


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
        humans = human_trials_of_set("cue-conflict", root, download=False)
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
    ci = {k: tuple(as_float(c) for c in v["ci95"]) for k, v in s["shape_bias"].items()}
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
    if "detection" in s:
        figs.update(_detection_figures(s["detection"], figures))
    real = s.get("real", {})
    if real.get("figure"):
        figs["real"] = real["figure"]
    return figs


def _detection_figures(detection: dict[str, Any], figures: Path) -> dict[str, str]:
    """The mAP bars and example test scenes (ground truth and each backbone's detections) of the detection step."""
    figs = {"detection_map": str(plot_detection_map(detection, figures / "detection_map")[0])}
    voc = Path(detection["voc_root"])
    ex = detection["examples"]
    images, truth = [], []
    for image_id in ex["image_ids"]:
        images.append(np.asarray(load_image(voc / "JPEGImages" / f"{image_id}.jpg")))
        ann = parse_annotation(voc / "Annotations" / f"{image_id}.xml", world.SHAPES)
        truth.append([(o.name, o.box) for o in ann.objects])
    figs["detection_scenes"] = str(plot_detection_scenes(images, truth, ex["detections"],
                                                         figures / "detection_scenes")[0])  # fmt: skip
    return figs
