"""The demo's ``report.html``: one self-contained page (figures embedded as base64 PNG), readable offline."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from texturebias.demo import world
from texturebias.demo.config import PRE_OPTION_SIZES
from texturebias.utils.io import atomic_open

CITATIONS = {
    "geirhos2019": "R. Geirhos, P. Rubisch, C. Michaelis, M. Bethge, F. A. Wichmann, W. Brendel. "
    "ImageNet-trained CNNs are biased towards texture; increasing shape bias improves accuracy and "
    "robustness. ICLR 2019.",
    "brendel2019": "W. Brendel, M. Bethge. Approximating CNNs with bag-of-local-features models works "
    "surprisingly well on ImageNet. ICLR 2019.",
    "huang2017": "X. Huang, S. Belongie. Arbitrary style transfer in real-time with adaptive instance "
    "normalization. ICCV 2017.",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.held{color:#176b2c;font-weight:600}.failed{color:#a11;font-weight:600}.na{color:#777;font-weight:600}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.8rem}.note{background:#fff8e0;padding:.5rem}
"""


def _img(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")  # fmt: skip


def _num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    if isinstance(x, list | tuple):
        return "[" + ", ".join(_num(v, digits) for v in x) + "]"
    return html.escape(str(x))


def _verdict(held: bool | None) -> str:
    if held is None:
        return '<span class="na">not measured</span>'
    return '<span class="held">held</span>' if held else '<span class="failed">did not hold</span>'


def render_report(summary: Mapping[str, Any], figures: Mapping[str, Path]) -> str:
    """The report as an HTML string (every figure inlined)."""
    s = summary
    e = html.escape
    parts: list[str] = []
    add = parts.append
    quick = " (quick mode: small sizes, findings are not expected to hold)" if s.get("quick") else ""
    add(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>texturebias demo</title>"
        f"<style>{_CSS}</style></head><body>")  # fmt: skip
    add(f"<h1>texturebias demo: texture bias in minutes, offline{e(quick)}</h1>")
    add("<p>This report was produced by <code>texturebias demo</code> with the toolkit's own components (data "
        "generation, AdaIN stylizer, training loop, shape-bias metrics, BagNet heatmaps). Every number below was "
        f"measured in this run (seed {s['seed']}, {s['total_time_s']:.0f} s wall time with "
        f"{s.get('torch_threads')} torch threads); each finding states its criterion and whether it held.</p>"
    )  # fmt: skip

    # Findings table.
    add("<h2>Findings</h2><table><tr><th>finding</th><th>criterion</th><th>numbers</th><th>result</th></tr>")
    for f in s["findings"]:
        nums = ", ".join(f"{e(k)} {_num(v)}" for k, v in f["numbers"].items())
        add(f"<tr><td>{e(f['claim'])}<br><small>{e(f['citation'])}</small></td><td>{e(f['criterion'])}</td>"
            f"<td>{nums}</td><td>{_verdict(f['held'])}</td></tr>")  # fmt: skip
    add("</table>")

    # Step 1.
    real = s.get("real", {})
    add("<h2>1. A real ImageNet model on the real cue-conflict stimuli</h2>")
    add("<p>Geirhos et al. (2019) combined the shape of one object with the texture of another by style transfer "
        "(1,280 images, 16 categories) and asked which of the two a classifier reports. Humans answer with the "
        "shape (shape bias 0.96); ImageNet-trained CNNs mostly answer with the texture [geirhos2019]. Here the "
        "offline EfficientNet-Lite0 (real ImageNet weights) is evaluated on the same images and compared with "
        "the human observers' trials.</p>")  # fmt: skip
    if real.get("status") == "done":
        add(f"<p>EfficientNet-Lite0 shape bias <b>{_num(real['shape_bias'])}</b> (95% CI {_num(real['ci95'])}; "
            f"{real['n_shape']} shape, {real['n_texture']} texture, {real['n_other']} other decisions); humans "
            f"{_num(real.get('human_shape_bias', real['human_shape_bias_published']))}.</p>")  # fmt: skip
        if "real" in figures:
            add(_img(figures["real"], "shape-bias matrix plot",
                     "Per-category fraction of texture vs shape decisions (the paper's Fig. 4 layout); vertical "
                     "lines: overall shape bias."))  # fmt: skip
    else:
        add(f"<p class='note'>Not run: {e(str(real.get('reason', '')))}. To run it: "
            f"<code>{e(str(real.get('how', '')))}</code></p>")  # fmt: skip

    # Step 2: the world.
    # The world and stylizer options (docs/demo.md) change the text: it says which ran, also for old summaries.
    sz = {**PRE_OPTION_SIZES, **s["sizes"]}
    match = float(sz["texture_match"])
    shortcut = ("so texture predicts the class exactly as well as shape" if match == 1
                else "so texture is a shortcut, as on ImageNet")  # fmt: skip
    scale = float(sz["texture_scale"])
    finer = (f" The textures' periods are {scale:g}&times; shorter than the world's base patterns, so that they are "
             "much finer than the shapes, as on ImageNet." if scale != 1 else "")  # fmt: skip
    encoder = ("the first blocks of the ImageNet-trained EfficientNet-Lite0 as encoder, the image upsampled x4 "
               "inside it" if sz["stylizer"] == "lite0"
               else "frozen random VGG-style encoder, AdaIN at a relu2_1-like layer")  # fmt: skip
    size = int(sz["stylize_size"])
    if size != world.SIZE:
        encoder += f"; the images upsampled to {size}&times;{size} pixels for stylization and read back at 32 pixels"
    add("<h2>2. A miniature replication in a generated world</h2>")
    add("<p>Eight shape classes (arrow, circle, crescent, cross, ellipse, square, star, triangle) at random pose "
        "on plain or noisy backgrounds, filled with eight texture classes (stripes, dots, checker, waves, blobs and "
        "scikit-image's brick, grass and gravel photographs), each in its own two-colour palette; 32&times;32 "
        f"pixels, {sz['n_train']} training and {sz['n_test']} test images per set.{finer} In the <i>natural</i> "
        f"set shape k wears texture k with probability {match:g}, {shortcut}. In the <i>randomised</i> set "
        "textures come from a separate bank with random colours, so only shape predicts the class (the ideal "
        "that Stylized-ImageNet approximates). The <i>stylized</i> set is the natural set "
        f"re-rendered by AdaIN [huang2017] with bank textures as styles ({encoder}, decoder trained here, style "
        f"strength &alpha; = {sz.get('stylize_alpha', 1.0)}). "
        "The <i>cue-conflict</i> set puts texture B on shape A "
        "(A &ne; B); <i>silhouettes</i> are flat-coloured shapes (shape only).</p>")  # fmt: skip
    if "samples" in figures:
        add(_img(figures["samples"], "example images", "Example test images of each generated set."))
    if "stylized" in figures:
        add(_img(figures["stylized"], "stylized examples", "Natural test images and their AdaIN-stylized versions."))

    # Accuracy grid.
    add("<h3>Accuracy: train set &times; test set (cf. Table 1 of [geirhos2019])</h3>")
    acc = s["accuracy"]
    cols = list(next(iter(acc.values())))
    add("<table><tr><th>model (training set)</th>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
    for k, row in acc.items():
        add(f"<tr><td>{e(k)}</td>" + "".join(f"<td>{row[c]:.3f}</td>" for c in cols) + "</tr>")
    add(f"</table><p>Chance is {s['chance']:.3f}. On the cue-conflict set the shape label counts as correct.</p>")
    if "accuracy" in figures:
        add(_img(figures["accuracy"], "accuracy grid", "Top-1 accuracy of every model on every test set."))

    # Shape bias.
    add("<h3>Shape bias</h3>")
    add("<p>Shape bias = shape decisions / (shape + texture decisions) on the cue-conflict set, as for the real "
        "stimuli; 95% bootstrap confidence intervals over images. The trial CSVs use the human-data schema "
        "(<code>trials/</code>), so the toolkit's trial analysis reads them like human data.</p>")  # fmt: skip
    add("<table><tr><th>model</th><th>shape bias</th><th>95% CI</th><th>shape</th><th>texture</th><th>other</th></tr>")
    for k, v in s["shape_bias"].items():
        add(f"<tr><td>{e(k)}</td><td>{_num(v['shape_bias'])}</td><td>{_num(v['ci95'])}</td><td>{v['n_shape']}</td>"
            f"<td>{v['n_texture']}</td><td>{v['n_other']}</td></tr>")  # fmt: skip
    add("</table>")
    if "shape_bias" in figures:
        add(_img(figures["shape_bias"], "shape bias bars", "Shape bias per model with 95% bootstrap CIs."))
    if "shape_matrix" in figures:
        add(_img(figures["shape_matrix"], "per-shape shape bias", "Per-shape-class shape bias of the CNNs."))

    # Probes.
    pr = s["probes"]
    add("<h3>What did stylization do? Probes</h3>")
    add("<p>A <i>shape probe</i> (the CNN trained on texture-randomised data, which can only use shape) and a "
        "<i>texture probe</i> (a CNN trained to name the texture class of random shapes) are evaluated on natural "
        "and stylized test images. Stylization should remove the class texture (texture probe near chance) and keep "
        f"the shape (shape probe well above chance). Shape probe: natural {pr['shape_probe']['natural']:.3f}, "
        f"stylized {pr['shape_probe']['stylized']:.3f}; texture probe: natural {pr['texture_probe']['natural']:.3f}, "
        f"stylized {pr['texture_probe']['stylized']:.3f}; chance {pr['chance']:.3f}.</p>")  # fmt: skip
    if "probes" in figures:
        add(_img(figures["probes"], "probe accuracies", "Probe accuracy on natural vs stylized test images."))

    # BagNets.
    add("<h3>BagNet heatmaps</h3>")
    q = s.get("heatmaps", {}).get("receptive_field", "q")
    add(f"<p>A BagNet classifies by averaging the class evidence of small patches (here {q}&times;{q} of 32&times;32 "
        "pixels) [brendel2019]; its heatmap shows each patch's evidence for the true class, and its most "
        "informative patches show what it relies on: texture, not the outline.</p>")  # fmt: skip
    if "heatmaps" in figures:
        add(_img(figures["heatmaps"], "BagNet heatmaps",
                 "Natural-trained BagNet: test images, class evidence for the true class (red: for, blue: against), "
                 "and the three most informative patches."))  # fmt: skip

    if "detection" in s:
        parts.extend(_detection_section(s["detection"], figures))

    # Commands.
    add("<h2>Rerun any step</h2><p>Everything this run made is in the output folder (<code>data/</code> "
        "ImageFolders, <code>runs/</code> checkpoints and metrics, <code>trials/</code> CSVs, <code>figures/</code>). "
        "The equivalent commands:</p><pre>")  # fmt: skip
    for name, cmd in s.get("commands", {}).items():
        add(f"# {e(name)}\n{e(cmd)}\n")
    add("</pre>")
    add(
        "<h2>Timings</h2><p>Wall time and CPU time of this process (all threads) per step; on a busy machine the "
        "CPU time is the better measure of the work.</p><table><tr><th>step</th><th>wall s</th><th>CPU s</th></tr>"
    )
    cpu = s.get("cpu_times_s", {})
    for k, v in s.get("timings_s", {}).items():
        add(f"<tr><td>{e(k)}</td><td>{v:.1f}</td><td>{_num(cpu.get(k), 1)}</td></tr>")
    add("</table>")
    add("<h2>References</h2><ul>")
    for k, v in CITATIONS.items():
        add(f"<li>[{e(k)}] {e(v)}</li>")
    add("</ul></body></html>")
    return "\n".join(parts)


def _detection_section(d: Mapping[str, Any], figures: Mapping[str, Path]) -> list[str]:
    """Section 3: the miniature detection transfer (``--detection``; the SIN paper's Table 2)."""
    e = html.escape
    sz = d["sizes"]
    out = ["<h2>3. Detection transfer: a miniature of Table 2</h2>"]
    paper = ", ".join(f"{e(k)} {v}" for k, v in d["paper_map50"].items())
    out.append(
        "<p>The SIN paper's practical claim: a Faster R-CNN whose backbone starts from shape-biased weights detects "
        f"better on Pascal VOC 2007 (mAP50 {paper}) [geirhos2019]. Here the demo CNNs above are the backbones: "
        f"Faster R-CNN detectors (the toolkit's <code>detect-train</code>) are fine-tuned from each on "
        f"{sz['n_train']} generated scenes ({sz['scene_size']}&times;{sz['scene_size']} px, 1-{sz['max_objects']} "
        "textured shapes on a background, class = shape, textures by the natural rule) with one recipe "
        f"({sz['epochs']} epochs, batch {sz['batch_size']}, lr {sz['lr']}, stem and first stage frozen), and "
        f"scored on {d['test_images']} test scenes ({d['test_objects']} objects) with the devkit's rules (IoU &gt; "
        f"0.5). 95% CIs: bootstrap over test images ({d['n_boot']} samples); differences are paired (every detector "
        "scored on the same resampled sets). <i>scratch</i> starts from a randomly initialised body.</p>"
    )  # fmt: skip
    head = ("backbone", "miniature of", "VOC07 mAP", "95% CI", "all-point mAP", "95% CI", "&Delta; VOC07 vs natural",
            "95% CI")  # fmt: skip
    out.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    for name, b in d["backbones"].items():
        diff = d["differences"].get(name)
        delta = (f"<td>{_num(diff['voc07'])}</td><td>{_num(diff['ci95_voc07'])}</td>" if diff else
                 "<td>&mdash;</td><td></td>")  # fmt: skip
        out.append(f"<tr><td>{e(name)}</td><td>{e(b.get('analogue', ''))}</td><td>{_num(b['map_voc07'])}</td>"
                   f"<td>{_num(b['ci95_voc07'])}</td><td>{_num(b['map_all'])}</td><td>{_num(b['ci95_all'])}</td>"
                   f"{delta}</tr>")  # fmt: skip
    out.append("</table>")
    out.append(
        "<p class='note'>What this does and does not show: the miniature asks the paper's question with the same "
        "pipeline (VOC layout, Faster R-CNN, devkit AP) on 8 synthetic classes, CNNs of 78 k parameters and a few "
        "hundred scenes. Its objects wear the natural set's textures, so the texture shortcut the natural backbone "
        "learned stays valid in the detection world. A difference here says which backbone starts the detector "
        "better in this world with this recipe; it is not a measurement of the paper's effect on photographs, and "
        "one seed with small test sets gives wide intervals (docs/detection.md).</p>"
    )  # fmt: skip
    if "detection_map" in figures:
        out.append(_img(figures["detection_map"], "detection mAP per backbone",
                        "mAP of the detector fine-tuned from each backbone, with 95% bootstrap CIs."))  # fmt: skip
    if "detection_scenes" in figures:
        out.append(_img(figures["detection_scenes"], "example detections",
                        f"Test scenes: ground truth (top) and each detector's boxes with score &ge; "
                        f"{d['examples']['min_score']}."))  # fmt: skip
    return out


def write_report(path: str | os.PathLike[str], summary: Mapping[str, Any], figures: Mapping[str, Path]) -> Path:
    """Write :func:`render_report` to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(render_report(summary, figures))
    return Path(path)
