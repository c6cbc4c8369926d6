"""CLIP zero-shot classifiers (``open_clip/<arch>[:<tag>]``): text head, cache, preprocessing, loading, CLI.

Offline: a tiny open_clip architecture (registered with ``open_clip.add_model_config``) with random weights.
The one full 1000-class × 80-prompt head of this file (shared through one cache folder) costs ~10-35 s on 2
CPU cores, almost all of it open_clip's tokenizer and per-call overhead; every other test uses 2 classes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from texturebias.cli import main
from texturebias.data.labels import imagenet_categories
from texturebias.errors import CheckpointError, DownloadError, UnknownModelError
from texturebias.evaluate.mapping import logits_to_decisions, resolve_mapping
from texturebias.models import clip_zoo, create_model, get_model_entry, load_model, resolve_preprocessing
from texturebias.models.clip_zoo import ZeroShotClassifier, imagenet_prompts, text_head

open_clip = pytest.importorskip("open_clip", reason="open_clip is not installed (pip install 'texturebias[clip]')")

ARCH = "tb-tiny-test"
NAME = f"{clip_zoo.PREFIX}{ARCH}"
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CLASSES = ("tench", "goldfish")
TEMPLATES = ("a photo of a {}.", "a drawing of the {}.")


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Registers the tiny architecture with open_clip (its public ``add_model_config``)."""
    path = tmp_path_factory.mktemp("open_clip_cfg") / f"{ARCH}.json"
    path.write_text(json.dumps(TINY))
    open_clip.add_model_config(path)
    return ARCH


def _random_clip(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(ARCH, pretrained=None).eval()


@pytest.fixture(scope="module")
def checkpoints(tiny_arch: str, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Two open_clip checkpoint files (state dicts) of the tiny architecture with different random weights."""
    folder = tmp_path_factory.mktemp("open_clip_weights")
    files = {}
    for seed in (0, 1):
        files[seed] = folder / f"tiny-{seed}.pt"
        torch.save(_random_clip(seed).state_dict(), files[seed])
    return files


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clip_home")


@pytest.fixture()
def home(shared_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One ``$TEXTUREBIAS_HOME`` for the tests that use the full ImageNet head, so it is computed once."""
    monkeypatch.setenv("TEXTUREBIAS_HOME", str(shared_home))
    return shared_home


@pytest.fixture()
def imagenet_head(home: Path, checkpoints: dict[int, Path]) -> ZeroShotClassifier:
    model, _ = load_model(NAME, checkpoints[0])
    assert isinstance(model, ZeroShotClassifier)
    return model


def _head_files() -> list[Path]:
    return sorted((clip_zoo.texturebias_home() / "clip").glob("*.pt"))


# ------------------------------------------------------------------------------------------- prompts


def test_prompts_are_openais_imagenet_ensemble() -> None:
    names, templates = imagenet_prompts()
    assert len(names) == 1000 and len(templates) == 80
    assert names[:3] == ("tench", "goldfish", "great white shark") and names[-1] == "toilet paper"
    assert templates[0] == "a bad photo of a {}." and templates[-1] == "a tattoo of the {}."
    assert all(t.count("{}") == 1 for t in templates)


# ----------------------------------------------------------------------------------------- text head


def test_text_head_matches_a_hand_computation(tiny_arch: str) -> None:
    clip = _random_clip(0)
    tokenizer = open_clip.get_tokenizer(ARCH)
    head = text_head(clip, tokenizer, CLASSES, TEMPLATES)
    with torch.no_grad():
        rows = []
        for name in CLASSES:
            one = [F.normalize(clip.encode_text(tokenizer([t.format(name)]))[0], dim=0) for t in TEMPLATES]
            mean = (one[0] + one[1]) / 2
            rows.append(mean / mean.norm())
    expected = torch.stack(rows)
    assert head.shape == (2, TINY["embed_dim"])
    torch.testing.assert_close(head, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(head.norm(dim=1), torch.ones(2))
    # open_clip's own zero-shot builder (D × C) gives the same head.
    reference = open_clip.build_zero_shot_classifier(clip, tokenizer, CLASSES, TEMPLATES)
    torch.testing.assert_close(head, reference.T, rtol=0, atol=1e-6)


def test_logits_are_scaled_cosine_similarities(tiny_arch: str, checkpoints: dict[int, Path]) -> None:
    model = create_model(NAME, checkpoint=checkpoints[0], class_names=CLASSES, templates=TEMPLATES)
    clip = open_clip.create_model(ARCH, pretrained=str(checkpoints[0])).eval()
    head = text_head(clip, open_clip.get_tokenizer(ARCH), CLASSES, TEMPLATES)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = clip.logit_scale.exp() * clip.encode_image(x, normalize=True) @ head.T
        logits = model(x)
    assert not model.training and logits.shape == (3, 2)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(model.head.weight, head)


def test_head_is_cached_and_keyed_by_weights_and_prompts(
    tiny_arch: str, checkpoints: dict[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = create_model(NAME, checkpoint=checkpoints[0], class_names=CLASSES, templates=TEMPLATES)
    (cached,) = _head_files()
    record = torch.load(cached, weights_only=True)
    assert record["format"] == clip_zoo.CACHE_FORMAT and record["class_names"] == list(CLASSES)
    torch.testing.assert_close(record["class_embeddings"], first.head.weight.detach(), rtol=0, atol=0)

    def no_recompute(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached head should have been read")

    with monkeypatch.context() as m:
        m.setattr(clip_zoo, "text_head", no_recompute)
        again = create_model(NAME, checkpoint=checkpoints[0], class_names=CLASSES, templates=TEMPLATES)
    assert torch.equal(again.head.weight, first.head.weight)
    # Other weights, other templates: other keys, never the stale head.
    other = create_model(NAME, checkpoint=checkpoints[1], class_names=CLASSES, templates=TEMPLATES)
    create_model(NAME, checkpoint=checkpoints[0], class_names=CLASSES, templates=TEMPLATES[:1])
    assert len(_head_files()) == 3
    assert not torch.allclose(other.head.weight, first.head.weight)
    # A truncated cache file is recomputed, not trusted.
    cached.write_bytes(cached.read_bytes()[:100])
    repaired = create_model(NAME, checkpoint=checkpoints[0], class_names=CLASSES, templates=TEMPLATES)
    assert torch.equal(repaired.head.weight, first.head.weight)


def test_cache_key_parts() -> None:
    a = clip_zoo.text_head_cache_path("ViT-B-32", "openai", "a" * 64, "b" * 64)
    assert a.parent == clip_zoo.texturebias_home() / "clip"
    assert a != clip_zoo.text_head_cache_path("ViT-B-32", "openai", "c" * 64, "b" * 64)
    assert a != clip_zoo.text_head_cache_path("ViT-B-32", "laion2b_e16", "a" * 64, "b" * 64)
    assert clip_zoo.prompts_digest(CLASSES, TEMPLATES) != clip_zoo.prompts_digest(CLASSES[::-1], TEMPLATES)
    assert clip_zoo.weights_digest(_random_clip(0)) != clip_zoo.weights_digest(_random_clip(1))


def test_deterministic(
    tiny_arch: str, checkpoints: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    outputs = []
    for run in range(2):
        monkeypatch.setenv("TEXTUREBIAS_HOME", str(tmp_path / f"run{run}"))  # recomputed from scratch each time
        model = create_model(NAME, checkpoint=checkpoints[0], class_names=CLASSES, templates=TEMPLATES)
        with torch.no_grad():
            outputs.append((model.head.weight.detach().clone(), model(x)))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


# ------------------------------------------------------------------------------------- preprocessing


def test_preprocessing_comes_from_the_open_clip_config(tiny_arch: str) -> None:
    ours = resolve_preprocessing(NAME)
    cfg = _random_clip(0).visual.preprocess_cfg
    assert (ours.input_size, ours.resize_size) == (cfg["size"][0], cfg["size"][0]) == (32, 32)
    assert ours.mean == pytest.approx(cfg["mean"]) and ours.std == pytest.approx(cfg["std"])
    assert ours.interpolation == cfg["interpolation"] == "bicubic"


def test_eval_transform_equals_open_clips(tiny_arch: str) -> None:
    from texturebias.data.images import load_image
    from texturebias.data.samples import sample_photo_paths

    _, _, val = open_clip.create_model_and_transforms(ARCH, pretrained=None)
    ours = resolve_preprocessing(NAME).eval_transform("always")
    for path in sample_photo_paths():  # non-square photos: shorter side resized, centre crop
        img = load_image(path)
        torch.testing.assert_close(ours(img), val(img), rtol=0, atol=1e-5)


def test_preprocessing_of_published_weights() -> None:
    openai = resolve_preprocessing("open_clip/ViT-B-32:openai")
    assert (openai.input_size, openai.resize_size, openai.interpolation) == (224, 224, "bicubic")
    assert openai.mean == pytest.approx(OPENAI_MEAN) and openai.std == pytest.approx(OPENAI_STD)
    siglip = resolve_preprocessing("open_clip/ViT-B-16-SigLIP:webli")
    assert siglip.mean == (0.5, 0.5, 0.5) and siglip.std == (0.5, 0.5, 0.5)
    assert resolve_preprocessing("open_clip/ViT-B-32-256:datacomp_s34b_b86k").input_size == 256
    # Overrides apply on top, as for every model.
    assert resolve_preprocessing("open_clip/ViT-B-32:openai", overrides={"crop_pct": 0.875}).resize_size == 256


def test_unsupported_preprocessing_is_refused() -> None:
    with pytest.raises(UnknownModelError, match="resize_mode 'longest'"):
        clip_zoo.preprocessing_from_open_clip({"size": 224, "resize_mode": "longest"})
    with pytest.raises(UnknownModelError, match="not square"):
        clip_zoo.preprocessing_from_open_clip({"size": (224, 256)})


# ---------------------------------------------------------------------------------- weights, errors


@pytest.fixture()
def tiny_tags(tiny_arch: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Pretrained tags of the tiny arch: "local" (file in open_clip's URL cache) and "offline" (unreachable)."""
    from open_clip import pretrained

    monkeypatch.setenv("HOME", str(tmp_path))  # open_clip's URL cache: ~/.cache/clip
    tags = {
        "local": {"url": "https://example.invalid/tb-tiny-local.pt", "hf_hub": "", "mean": (0.5, 0.5, 0.5),
                  "std": (0.5, 0.5, 0.5), "interpolation": "bilinear", "resize_mode": "shortest", "quick_gelu": True},
        "offline": {"url": "http://127.0.0.1:9/tb-tiny-missing.pt", "hf_hub": ""},
    }  # fmt: skip
    monkeypatch.setitem(pretrained._PRETRAINED, ARCH, tags)
    cache = tmp_path / ".cache" / "clip"
    cache.mkdir(parents=True)
    torch.manual_seed(2)
    quick = open_clip.create_model(ARCH, pretrained=None, force_quick_gelu=True)
    torch.save(quick.state_dict(), cache / "tb-tiny-local.pt")
    yield cache / "tb-tiny-local.pt"


def test_tagged_weights_load_through_open_clips_loader(tiny_tags: Path) -> None:
    model, preprocessing = load_model(f"{NAME}:local", class_names=CLASSES, templates=TEMPLATES)
    assert preprocessing.mean == (0.5, 0.5, 0.5) and preprocessing.interpolation == "bilinear"
    assert model.visual.preprocess_cfg["interpolation"] == "bilinear"  # open_clip applied the same tag
    saved = torch.load(tiny_tags, weights_only=True)
    for key, value in model.visual.state_dict().items():
        assert torch.equal(value, saved[f"visual.{key}"]), key
    # The tag says QuickGELU; the plain config says GELU: the model is built as the weights were trained.
    assert any(type(m).__name__ == "QuickGELU" for m in model.modules())
    assert _head_files()[0].name.startswith(f"{ARCH}__local__")


def test_offline_weights_are_one_clear_line(tiny_tags: Path) -> None:
    with pytest.raises(DownloadError) as err:
        load_model(f"{NAME}:offline")
    message = str(err.value)
    assert "\n" not in message and "127.0.0.1:9/tb-tiny-missing.pt" in message and "--checkpoint" in message
    hint = clip_zoo._download_hint(open_clip.get_pretrained_cfg("ViT-B-32", "openai"))
    assert "hf download timm/vit_base_patch32_clip_224.openai" in hint


def test_errors_name_what_to_do(tiny_arch: str, checkpoints: dict[int, Path], tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="tags of ViT-B-32: openai"):
        get_model_entry("open_clip/ViT-B-32:no_such_tag")
    with pytest.raises(CheckpointError, match="names no pretrained tag; use open_clip/ViT-B-32:<tag>"):
        create_model("open_clip/ViT-B-32", pretrained=True)
    with pytest.raises(CheckpointError, match="one row per class name"):
        create_model(NAME, checkpoint=checkpoints[0], num_classes=16, class_names=CLASSES)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        create_model(NAME, checkpoint=tmp_path / "absent.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="open_clip could not load"):
        create_model(NAME, checkpoint=tmp_path / "bad.pt")
    with pytest.raises(UnknownModelError, match="unknown model 'open_clip/No-Such-Arch'"):
        get_model_entry("open_clip/No-Such-Arch")


def test_missing_open_clip_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clip_zoo, "open_clip_available", lambda: False)
    with pytest.raises(UnknownModelError, match=r"pip install 'texturebias\[clip\]'"):
        get_model_entry("open_clip/RN101:openai")


# ------------------------------------------------------------------------------------- end to end


def test_imagenet_head_and_16_category_decisions(imagenet_head: ZeroShotClassifier) -> None:
    assert imagenet_head.num_classes == 1000
    (cached,) = [p for p in _head_files() if p.name.startswith(f"{ARCH}__none__")]
    assert torch.load(cached, weights_only=True)["templates"] == list(imagenet_prompts()[1])
    with torch.no_grad():
        logits = imagenet_head(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    decisions, scores = logits_to_decisions(logits, resolve_mapping(None, logits.shape[1]))
    assert len(decisions) == 4 and scores.shape == (4, 16)


def test_cli_classify_and_models(
    imagenet_head: ZeroShotClassifier, checkpoints: dict[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["classify", "--samples", "--model", NAME, "--checkpoint", str(checkpoints[0]), "--top-k", "2"]
    assert main([*argv, "--device", "cpu"]) == 0  # the ImageNet head comes from the cache written above
    out = capsys.readouterr().out
    assert "chelsea.png" in out and "coffee.png" in out
    assert any(name in out for name in imagenet_categories())  # the head's 1000 outputs are read as ImageNet
    assert main(["models", NAME, "-v"]) == 0
    assert "preprocessing: 32 px (resize 32, crop_pct 1, bicubic), mean (0.4815" in capsys.readouterr().out
    assert main(["classify", "--samples", "--model", "open_clip/ViT-B-32:nope"]) == 1
    assert "tags of ViT-B-32" in capsys.readouterr().err
