"""The model registry: names, did-you-mean, create_model kwargs, checkpoint loading through the registry."""

from __future__ import annotations

import pytest
import torch
import torchvision

import texturebias
from texturebias.errors import CheckpointError, UnknownModelError
from texturebias.models import create_model, get_model_entry, list_models


def test_every_torchvision_classifier_is_registered_under_its_plain_name() -> None:
    names = set(list_models())
    tv = set(torchvision.models.list_models(module=torchvision.models))
    assert tv <= names
    for name in ("resnet50", "vgg16", "alexnet", "densenet121"):
        assert get_model_entry(name).family == "torchvision"


def test_project_models_registered() -> None:
    names = set(list_models())
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= names
    assert {"resnet50_sin", "resnet50_sin_in", "resnet50_sin_in_in"} <= names


def test_list_models_pattern() -> None:
    assert list_models("resnet50*") == ["resnet50", "resnet50_sin", "resnet50_sin_in", "resnet50_sin_in_in"]
    assert list_models("lite") == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert list_models("no-such-thing") == []


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownModelError, match="did you mean resnet50"):
        create_model("resnet5O")


def test_top_level_api_is_lazy_and_typed() -> None:
    assert texturebias.create_model is create_model
    with pytest.raises(AttributeError):
        texturebias.no_such_attribute  # noqa: B018


def test_create_model_num_classes_and_kwargs_none_dropped() -> None:
    m = create_model("resnet18", num_classes=16, dropout=None)
    assert m.fc.out_features == 16
    assert not m.training  # returned in eval mode


def test_sin_models_share_resnet50_architecture() -> None:
    a = create_model("resnet50_sin")
    b = torchvision.models.resnet50()
    assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]


def test_dataparallel_training_checkpoint_loads_via_registry(tmp_path) -> None:
    """The SIN checkpoints are {'state_dict': {'module.<key>': ...}} (REFERENCE §4)."""
    src = create_model("resnet18")
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    ckpt = {"epoch": 60, "arch": "resnet18", "state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    path = tmp_path / "dp.pth.tar"
    torch.save(ckpt, path)
    loaded = create_model("resnet18", checkpoint=path)
    for k, v in src.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_checkpoint_with_other_head_size_infers_num_classes(tmp_path) -> None:
    src = create_model("resnet18", num_classes=16)
    path = tmp_path / "ft.pt"
    torch.save({"model": src.state_dict(), "epoch": 3}, path)
    loaded = create_model("resnet18", checkpoint=path)
    assert loaded.fc.out_features == 16


def test_wrong_architecture_checkpoint_is_refused_with_key_list(tmp_path) -> None:
    path = tmp_path / "vgg.pt"
    torch.save(create_model("alexnet").state_dict(), path)
    with pytest.raises(CheckpointError, match=r"missing key\(s\).*unexpected key\(s\)"):
        create_model("resnet18", checkpoint=path)


def test_pretrained_without_declared_weights_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="no declared pretrained weights"):
        create_model("demo_cnn", pretrained=True)


def test_timm_models_available_with_prefix() -> None:
    pytest.importorskip("timm")
    m = create_model("timm/resnet18", num_classes=7)
    assert m(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    assert "timm/resnet18" in list_models("timm/resnet1*")


# One representative per registered family (all of bagnet/demo/efficientnet_lite/sin, the torchvision
# architectures that differ in kind), plus timm and user code where installed: built untrained, a forward and a
# backward pass on a small input, as timm's own model tests do.
SMOKE = [
    ("resnet18", 64), ("mobilenet_v3_small", 64), ("vit_b_16", 224), ("convnext_tiny", 64), ("vgg11", 64),
    ("bagnet9", 48), ("bagnet17", 48), ("bagnet33", 48), ("efficientnet_lite0", 64), ("resnet50_sin", 64),
    ("demo_cnn", 32), ("demo_bagnet", 32), ("timm/resnet18", 64),
]  # fmt: skip


@pytest.mark.parametrize(("name", "size"), SMOKE, ids=[n for n, _ in SMOKE])
def test_every_family_builds_runs_forward_and_backward(name: str, size: int) -> None:
    from texturebias.models import create_model, get_model_entry

    if name.startswith("timm/"):
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = create_model(name).train()
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.ndim == 2 and out.shape[0] == 2 and torch.isfinite(out).all()
    out.float().sum().backward()  # not a squared loss: ViT-B/16 starts with a zero head (zero output)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads if g is not None)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert get_model_entry(name).family  # every registered model names its family


LAZY_SCRIPT = """
import sys
import numpy as np
from PIL import Image
import texturebias.evaluate.cue_conflict
from texturebias.models import get_model_entry, get_weights, load_model
model, pre = load_model("efficientnet_lite0")
pre.eval_transform("auto")(Image.fromarray(np.zeros((224, 224, 3), np.uint8)))
print("torchvision" in sys.modules)
print(get_weights("resnet50.tv_imagenet1k_v2").filename, get_model_entry("resnet50").family)
"""


def test_torchvision_is_imported_only_when_a_torchvision_model_is_asked_for() -> None:
    """Measuring with EfficientNet-Lite on 224² stimuli never imports torchvision (1-2 s); its models still resolve."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", LAZY_SCRIPT], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "resnet50-11ad3fa6.pth", "torchvision"]


CLASH_SCRIPT = """
import sys
from texturebias.models.registry import ModelEntry, add_model
for name in ("resnet50", "my_resnet50"):
    try:
        add_model(ModelEntry(name=name, builder=lambda: None, family="mine"))
        print(name, "ok")
    except ValueError as exc:
        print(name, "refused:", exc)
print("torchvision" in sys.modules)
"""


def test_torchvision_names_are_taken_before_torchvision_is_imported() -> None:
    """A name of torchvision's lazily registered classifiers is refused at once, not at the first lookup later."""
    import subprocess
    import sys

    import torchvision

    from texturebias.models.torchvision_zoo import CLASSIFIER_NAMES

    assert list(CLASSIFIER_NAMES) == torchvision.models.list_models(module=torchvision.models)
    out = subprocess.run([sys.executable, "-c", CLASH_SCRIPT], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "resnet50 refused: model 'resnet50' registered twice (the name is one of torchvision's models)",
        "my_resnet50 ok",
        "False",
    ]
