"""The ten findings (eleven with ``--detection``): each measured number compared with its criterion."""

from __future__ import annotations

from typing import Any

from texturebias.demo.config import HUMAN_SHAPE_BIAS
from texturebias.models import demo as _demo_models  # noqa: F401  (registers demo_cnn / demo_bagnet)
from texturebias.utils.progress import get_logger

log = get_logger("demo")


# ------------------------------------------------------------------------------------------- findings
def as_float(x: Any) -> float:
    """A summary number as a float (``None`` → NaN, so comparisons with it are simply false)."""
    return float("nan") if x is None else float(x)


def evaluate_findings(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Compare the measured numbers with each finding's criterion; ``held`` is True/False (None: not measured)."""
    sb = {k: as_float(v["shape_bias"]) for k, v in s["shape_bias"].items()}
    ci = {k: [as_float(c) for c in v["ci95"]] for k, v in s["shape_bias"].items()}
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
            as_float(real["shape_bias"]) < 0.5 < as_float(h),
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
    det = s.get("detection")
    if det is not None:  # only with --detection; the ten findings above are always evaluated
        diff = det.get("differences", {}).get("cnn-stylized")
        held = None if diff is None else as_float(diff["ci95_voc07"][0]) > 0
        numbers = {} if diff is None else {
            "natural": det["backbones"]["cnn-natural"]["map_voc07"],
            "stylized": det["backbones"]["cnn-stylized"]["map_voc07"],
            "difference": diff["voc07"], "ci95": diff["ci95_voc07"]}  # fmt: skip
        add("detection-transfer", "A detector fine-tuned from the stylized-trained backbone beats one from the "
            "natural backbone (shape-biased backbones transfer better)", held, numbers,
            "Geirhos et al., ICLR 2019, Table 2 (VOC07 mAP50: IN 70.7, SIN 70.6, SIN+IN 74.0, SIN+IN->IN 75.1)",
            "paired-bootstrap 95% CI of stylized - natural VOC07 mAP above 0")  # fmt: skip
    return out
