"""detect.model: strict body transfer from registry classifiers, frozen stages, normalisation, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from texturebias.detect.model import (
    SeededSampler,
    detection_model,
    export_backbone_state_dict,
    load_detector,
)
from texturebias.errors import CheckpointError, TextureBiasError
from texturebias.models import create_model, resolve_preprocessing

SMALL = dict(min_size=64, max_size=64, box_batch_size_per_image=32, rpn_batch_size_per_image=64)


def _randomise_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    classifier = _randomise_bn(create_model("resnet18", num_classes=10))
    path = tmp_path_factory.mktemp("ck") / "sin_style.pth.tar"
    # A SIN-style DataParallel checkpoint: {"state_dict": {"module.<key>": ...}}.
    torch.save({"state_dict": {f"module.{k}": v for k, v in classifier.state_dict().items()}, "epoch": 3}, path)
    return path, classifier


def test_resnet_body_transfers_every_key_and_computes_the_classifier_features(resnet18_file) -> None:  # noqa: ANN001
    path, classifier = resnet18_file
    detector = detection_model("resnet18", checkpoint=path, num_classes=4, **SMALL)
    t = detector.backbone_transfer
    assert t.dropped == ("fc.weight", "fc.bias") and t.kind == "resnet-fpn" and t.skipped_counters == 20
    assert t.loaded == len(classifier.state_dict()) - 2 - 20
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = detector.backbone.body(x)
        c = classifier
        y = c.maxpool(c.relu(c.bn1(c.conv1(x))))
        expected = {}
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            y = getattr(c, name)(y)
            expected[str(i)] = y
    for key, value in expected.items():
        torch.testing.assert_close(feats[key], value, rtol=1e-4, atol=1e-5)
    # Normalisation comes from the backbone's preprocessing record.
    pre = resolve_preprocessing("resnet18")
    assert tuple(detector.transform.image_mean) == pre.mean and tuple(detector.transform.image_std) == pre.std


def test_other_architectures_and_checkpoints_are_refused_in_one_line(resnet18_file, tmp_path: Path) -> None:  # noqa: ANN001
    path, _ = resnet18_file
    with pytest.raises(CheckpointError, match="is not a resnet34 classifier") as err:
        detection_model("resnet34", checkpoint=path, **SMALL)
    assert "\n" not in str(err.value) and "missing key" in str(err.value)
    vgg_like = tmp_path / "other.pth"
    torch.save(create_model("squeezenet1_0").state_dict(), vgg_like)
    with pytest.raises(CheckpointError, match="unexpected key"):
        detection_model("resnet18", checkpoint=vgg_like, **SMALL)
    with pytest.raises(TextureBiasError, match="neither a ResNet nor"):
        detection_model("squeezenet1_0", **SMALL)


def test_frozen_stages_and_batchnorm_do_not_change_after_a_step(resnet18_file) -> None:  # noqa: ANN001
    path, _ = resnet18_file
    detector = detection_model("resnet18", checkpoint=path, num_classes=3, anchor_sizes=(8, 16, 32, 64, 128), **SMALL)
    frozen = {n for n, p in detector.named_parameters() if not p.requires_grad}
    assert frozen and all(n.split(".")[2] in ("conv1", "layer1") for n in frozen)  # backbone.body.<stage>
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.modules())
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    opt = torch.optim.SGD(detector.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    detector.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[10.0, 20.0, 50.0, 60.0]]), "labels": torch.tensor([2])}]  # fmt: skip
    loss = sum(detector(images, targets).values())
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = detector.state_dict()
    for name in frozen:
        assert torch.equal(after[name], before[name]), name
    bn_buffers = [k for k in before if k.endswith(("running_mean", "running_var")) or ".bn" in k]
    assert bn_buffers and all(torch.equal(after[k], before[k]) for k in bn_buffers if k.startswith("backbone.body"))
    assert not torch.equal(after["backbone.body.layer4.0.conv1.weight"], before["backbone.body.layer4.0.conv1.weight"])


def test_a_small_registry_cnn_serves_as_backbone_through_its_feature_map(tmp_path: Path) -> None:
    torch.manual_seed(1)
    classifier = _randomise_bn(create_model("demo_cnn"), seed=1)
    path = tmp_path / "checkpoint_best.pt"
    torch.save({"format": "texturebias-train-v1", "model": classifier.state_dict(), "epoch": 1}, path)
    detector = detection_model("demo_cnn", checkpoint=path, num_classes=4, trainable_layers=3, **SMALL)
    transfer = detector.backbone_transfer
    assert transfer.kind == "feature-map" and transfer.dropped == ("fc.weight", "fc.bias")
    assert detector.backbone.out_channels == 64
    assert tuple(detector.transform.image_mean) == (0.5, 0.5, 0.5)  # the demo preprocessing, not ImageNet's
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(detector.backbone(x)["0"], classifier.forward_features(x), rtol=1e-4, atol=1e-5)
    frozen = {n.split(".")[2] for n, p in detector.named_parameters() if not p.requires_grad}
    assert frozen == {"stem"}


def test_seeded_sampler_is_per_image_and_order_free() -> None:
    matched = [torch.tensor([1, 0, 0, -1, 2, 0, 0, 1, 0]), torch.tensor([0, 0, 3, 0, 0, 0, 1])]
    s = SeededSampler(4, 0.5)
    s.seeds = [11, 22]
    pos, neg = s(matched)
    s.seeds = [22, 11]
    pos_r, neg_r = s(matched[::-1])
    assert torch.equal(pos[0], pos_r[1]) and torch.equal(neg[1], neg_r[0])
    assert int(pos[0].sum() + neg[0].sum()) == 4 and int(pos[0].sum()) == 2


def test_export_backbone_is_a_torchvision_resnet_state_dict(resnet18_file, tmp_path: Path) -> None:  # noqa: ANN001
    path, classifier = resnet18_file
    detector = detection_model("resnet18", checkpoint=path, num_classes=4, **SMALL)
    ck = tmp_path / "detector.pt"
    torch.save({"format": "texturebias-detector-v1", "model": detector.state_dict(),
                "spec": detector.spec.to_json()}, ck)  # fmt: skip
    loaded, spec = load_detector(ck)
    assert spec.backbone == "resnet18" and not loaded.training
    sd = export_backbone_state_dict(loaded)
    fresh = torchvision.models.resnet18()
    assert list(sd) == [k for k in fresh.state_dict() if not k.startswith("fc.")]
    missing, unexpected = fresh.load_state_dict(sd, strict=False)
    assert missing == ["fc.weight", "fc.bias"] and unexpected == []
    for key, value in classifier.state_dict().items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(sd[key], value), key
    with pytest.raises(CheckpointError, match="not a texturebias detector"):
        load_detector(path)
