"""Property tests for the parametric distortions (DISTORTIONS.md S3), on synthetic and skimage images."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.transform

from texturebias.errors import DataError, DownloadError
from texturebias.robustness import datafiles as DF
from texturebias.robustness import distortions as D
from texturebias.robustness import eidolon as E
from texturebias.robustness import manipulations as M


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A textured natural 224² RGB image in [0, 1], 8-bit exact (like ``imread / 255``)."""
    img = skimage.transform.resize(skimage.data.chelsea(), (224, 224), anti_aliasing=True)
    return np.round(img * 255) / 255


@pytest.fixture(scope="module")
def g18_dir(shared_data: Path) -> Path:
    return shared_data / "generalisation-humans-DNNs"


def test_rgb2gray_matches_skimage(photo: np.ndarray) -> None:
    import skimage.color

    np.testing.assert_allclose(M.rgb2gray(photo), skimage.color.rgb2gray(photo), atol=1e-12)


def test_to_uint8_truncates_not_rounds() -> None:
    out = M.to_uint8(np.array([0.0, 0.999, 1.0, 0.5, 0.003]))
    assert out.tolist() == [0, 254, 255, 127, 0]
    with pytest.raises(ValueError):
        M.to_uint8(np.array([1.1]))


def test_contrast_maps_fixed_points() -> None:
    img = np.dstack([np.array([[0.0, 0.5, 1.0]])] * 3)
    for c in (1.0, 0.5, 0.3, 0.05, 0.0):
        out = M.contrast(img, c)
        assert out.shape == (1, 3)
        np.testing.assert_allclose(out[0], [(1 - c) / 2, 0.5, (1 + c) / 2], atol=1e-12)
    with pytest.raises(ValueError):
        M.contrast(img, 1.5)


def test_low_pass_identity_and_constant(photo: np.ndarray) -> None:
    g = M.rgb2gray(photo)
    assert np.array_equal(M.low_pass(photo, 0)[..., 0], g)
    flat = np.full((64, 64), M.MEAN_GREY)
    np.testing.assert_allclose(M.low_pass(flat, 7), M.MEAN_GREY, atol=1e-12)
    out = M.low_pass(photo, 3)
    assert out.shape == (224, 224, 3) and np.array_equal(out[..., 0], out[..., 2])
    # Constant padding with the mean grey, radius int(4σ + 0.5), as scipy's default truncate.
    ref = scipy.ndimage.gaussian_filter(g, 3, mode="constant", cval=0.4423)
    np.testing.assert_allclose(out[..., 0], np.clip(ref, 0, 1))


def test_high_pass_mean_and_mid_grey(photo: np.ndarray) -> None:
    for sigma in (3.0, 1.0, 0.4):
        h = M.high_pass(photo, sigma, return_unclipped=True)
        assert h.mean() == pytest.approx(0.4423, abs=1e-12)
    grey = 0.45 + 0.02 * np.random.default_rng(0).standard_normal((64, 64))
    unclipped = M.high_pass(grey, 1.5, return_unclipped=True)
    assert 0 < unclipped.min() and unclipped.max() < 1  # on a mid-grey image clipping does nothing
    np.testing.assert_array_equal(M.high_pass(grey, 1.5)[..., 1], unclipped)
    np.testing.assert_array_equal(M.high_pass(photo, math.inf)[..., 0], M.rgb2gray(photo))


def test_uniform_noise(photo: np.ndarray) -> None:
    base = M.contrast(photo, 0.3)
    assert np.array_equal(M.uniform_noise(photo, 0.0, np.random.default_rng(1)), base)  # w = 0: 30 % contrast
    out = M.uniform_noise(photo, 0.1, np.random.default_rng(1))
    assert out.ndim == 2 and 0 <= out.min() and out.max() <= 1
    diff = out - base
    assert np.abs(diff).max() <= 0.1
    assert diff.std() == pytest.approx(0.1 / math.sqrt(3), rel=0.02)  # U(-w, w) has std w/√3
    assert np.array_equal(out, M.uniform_noise(photo, 0.1, np.random.default_rng(1)))  # seeded


def test_salt_and_pepper_fractions(photo: np.ndarray) -> None:
    for p in (0.1, 0.5, 0.95):
        out = M.salt_and_pepper(photo, p, np.random.default_rng(2))
        n = out.size
        assert (out == 0).sum() / n == pytest.approx(p / 2, abs=0.01)
        assert (out == 1).sum() / n == pytest.approx(p / 2, abs=0.01)
    assert np.array_equal(M.salt_and_pepper(photo, 0.0, np.random.default_rng(0)), M.contrast(photo, 0.3))


def test_phase_noise_identity_and_quirk(photo: np.ndarray) -> None:
    g = M.rgb2gray(photo)
    z = M.phase_noise(photo, 0, np.random.default_rng(0), return_complex=True)
    np.testing.assert_allclose(z.real, g, atol=1e-12)
    ratios = {}
    for width in (90, 180):
        vals = []
        for seed in range(3):
            z = M.phase_noise(photo, width, np.random.default_rng(seed), return_complex=True)
            assert z.real.mean() == pytest.approx(g.mean(), abs=1e-12)  # mean preserved exactly
            vals.append(z.real.std() / g.std())
        ratios[width] = float(np.mean(vals))
    # The faithful quirk (non-Hermitian spectrum; .real discards energy): ×0.84 at 90°, ×0.71 at 180°.
    assert ratios[90] == pytest.approx(0.84, abs=0.03)
    assert ratios[180] == pytest.approx(0.71, abs=0.03)


@pytest.mark.parametrize("shape", [(224, 224), (64, 48), (33, 40)])
def test_phase_noise_corrected_is_hermitian(shape: tuple[int, int]) -> None:
    g = np.random.default_rng(0).random(shape)
    for width in (60, 180):
        z = M.phase_noise(g, width, np.random.default_rng(3), mode="corrected", return_complex=True)
        assert np.abs(z.imag).max() < 1e-10
        assert z.real.std() == pytest.approx(g.std(), rel=1e-9)  # RMS contrast kept (before clipping)
        assert not np.allclose(z.real, g)


def test_power_equalise_own_spectrum_is_identity(photo: np.ndarray) -> None:
    import scipy.fft

    g = M.rgb2gray(photo)
    own = np.abs(scipy.fft.fftshift(scipy.fft.fft2(g)))
    np.testing.assert_allclose(M.power_equalise(photo, own, return_unclipped=True), g, atol=1e-12)
    with pytest.raises(ValueError, match="224x224"):
        M.power_equalise(photo[:100], own)


def test_power_equalise_g18_spectrum_mean(photo: np.ndarray, g18_dir: Path) -> None:
    spectrum = DF.load_power_spectrum(g18_dir)
    assert spectrum.shape == (224, 224) and spectrum[112, 112] == pytest.approx(22803.9, abs=0.1)
    out = M.power_equalise(photo, spectrum, return_unclipped=True)
    assert out.mean() == pytest.approx(22803.9 / 224**2, abs=1e-5)  # 0.45448


def test_false_colour_flips_chromatic_axes(photo: np.ndarray, g18_dir: Path) -> None:
    table = DF.load_gamma_table(g18_dir)
    grey = np.full((4, 4, 3), 128 / 255)
    np.testing.assert_allclose(M.false_colour(grey, table), grey, atol=1.5 / 255)  # grey stays grey
    out = M.false_colour(photo, table)
    assert out.shape == photo.shape and np.all((out * 255) % 1 < 1e-9)  # 8-bit values

    def dkl(x: np.ndarray) -> np.ndarray:
        lin = table[np.rint(x * 255).astype(int)]
        return (lin @ M._RGB_TO_LMS.T - M._WHITE_LMS) @ M._LMS_TO_DKL.T

    a, b = dkl(photo).reshape(-1, 3), dkl(out).reshape(-1, 3)
    inside = (out > 2 / 255).all(-1).reshape(-1) & (out < 253 / 255).all(-1).reshape(-1)  # unclipped pixels
    assert inside.mean() > 0.5
    np.testing.assert_allclose(b[inside, 0], a[inside, 0], atol=0.05)  # luminance kept
    corr = [np.corrcoef(a[inside, k], b[inside, k])[0, 1] for k in (1, 2)]
    assert corr[0] < -0.95 and corr[1] < -0.95  # L-M and S-(L+M) negated
    with pytest.raises(ValueError, match="8-bit"):
        M.false_colour(photo + 0.001, table)


def test_rotation(photo: np.ndarray) -> None:
    g = M.rgb2gray(photo)
    assert np.array_equal(M.rotate(photo, 90)[..., 0], np.rot90(g, 1))
    assert np.array_equal(M.rotate(photo, 270)[..., 0], np.rot90(g, -1))
    assert np.array_equal(M.rotate(photo, 180)[..., 0], g[::-1, ::-1])
    assert np.array_equal(M.rotate(photo, 0)[..., 2], g)


def test_eidolon_reach_zero_is_blurred_input(photo: np.ndarray) -> None:
    out = E.eidolon(photo, 0, 1.0, np.random.default_rng(0), output_size="working")
    g = E.eidolon_prepare(photo)
    assert out.shape == (256, 256) and out.dtype == np.uint8 and g.shape == (256, 256)
    fat, dh, dw = E._fat_plane(g)
    assert fat.shape == (512, 512) and (dh, dw) == (128, 128)
    blurred = E._Blur(fat.shape, np.float64)(fat, 1 / math.sqrt(2))
    ref = np.clip(blurred[dh : dh + 256, dw : dw + 256], 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - ref).max() <= 1  # float32 pipeline: off by one at truncation edges
    assert 0.5 < np.abs(out.astype(float) - g).mean() < 5  # σ = 0.707 blur: a couple of grey levels


def test_eidolon_levels_and_displacement_statistics() -> None:
    sigmas = E.eidolon_sigmas()
    assert len(sigmas) == 12 and sigmas[0] == pytest.approx(0.7071, abs=1e-4) and sigmas[-1] == pytest.approx(32)
    rows, cols = E.eidolon_displacements((512, 512), 0.0, 10, np.random.default_rng(0))
    assert rows.shape == (12, 512, 512)
    # Upstream's c - mean/std amplitude: ≈ 0.78 px per unit reach for grain 10 on a 512² plane.
    assert rows.std(axis=(1, 2)).mean() == pytest.approx(0.78, abs=0.05)
    assert cols.std(axis=(1, 2)).mean() == pytest.approx(0.78, abs=0.05)
    rows, cols = E.eidolon_displacements((512, 512), 1.0, 10, np.random.default_rng(1))
    stds = np.concatenate([rows.std(axis=(1, 2)), cols.std(axis=(1, 2))]).reshape(2, 12).mean(0)
    assert stds[0] == pytest.approx(0.40, abs=0.06) and stds[-1] == pytest.approx(0.12, abs=0.04)
    assert np.all(np.diff(stds) < 0.01)  # coherent displacement shrinks towards coarse levels


def test_eidolon_disarray_grows_with_reach_and_incoherence(photo: np.ndarray) -> None:
    g = E.eidolon_prepare(photo).ravel()

    def corr(reach: float, coherence: float) -> float:
        out = E.eidolon(photo, reach, coherence, np.random.default_rng(0), output_size="working")
        return float(np.corrcoef(out.ravel(), g)[0, 1])

    iii = [corr(r, 0.0) for r in (1, 16, 64)]
    assert iii[0] > 0.95 and iii[0] > iii[1] > iii[2]
    assert corr(16, 1.0) > iii[1] + 0.05  # Eidolon I (coherent) keeps more structure than III
    out = E.eidolon(photo, 8, 0.3, np.random.default_rng(0))
    assert out.shape == (224, 224) and out.dtype == np.uint8  # resized back to the input size


def test_registry_and_conditions(photo: np.ndarray, monkeypatch: pytest.MonkeyPatch, g18_dir: Path) -> None:
    monkeypatch.setenv("TEXTUREBIAS_DATA", str(g18_dir.parent))
    assert len(D.list_distortions()) == 13
    for name, dist in D.DISTORTIONS.items():
        assert set(dist.excluded) <= set(dist.conditions), name
        if name.startswith("eidolon"):
            continue
        for cond in dist.conditions:
            out = dist.apply(photo, cond, np.random.default_rng(0))
            assert out.shape[:2] == (224, 224), (name, cond)
            assert out.dtype == np.uint8 or (0 <= out.min() and out.max() <= 1), (name, cond)
    assert D.get_distortion("greyscale").name == "colour"
    assert D.get_distortion("contrast").normalise_condition("0.5") == "c50"
    assert D.get_distortion("contrast").normalise_condition("c05") == "c05"
    assert D.get_distortion("high-pass").normalise_condition("3") == "3.0"
    assert D.get_distortion("uniform-noise").normalise_condition("0") == "0.0"
    assert D.get_distortion("false-colour").normalise_condition("false") == "False"
    assert D.get_distortion("eidolonII").normalise_condition("8") == "8-3-10"
    assert [D.condition_x("eidolonII", c) for c in D.DISTORTIONS["eidolonII"].conditions] == list(range(8))
    with pytest.raises(DataError, match="not a level"):
        D.get_distortion("rotation").normalise_condition("45")
    with pytest.raises(DataError, match="unknown distortion"):
        D.get_distortion("blur")
    faithful = D.distort_image(photo, "phase-noise", "90", np.random.default_rng(0))
    corrected = D.get_distortion("phase", phase_mode="corrected").apply(photo, "90", np.random.default_rng(0))
    assert not np.array_equal(faithful, corrected)


def test_data_file_by_path_env_and_file_url(tmp_path: Path, g18_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "x_gamma_function.npy"
    assert DF.g18_data_file(name, g18_dir) == g18_dir / name
    assert DF.g18_data_file(name, g18_dir / name) == g18_dir / name
    monkeypatch.setenv("TEXTUREBIAS_DATA", str(g18_dir.parent))
    assert DF.g18_data_file(name) == g18_dir / name
    monkeypatch.delenv("TEXTUREBIAS_DATA")
    # A download (file:// URL) lands in the cache after the sha256 check.
    record = DF.G18_DATA_FILES[name]
    monkeypatch.setitem(DF.G18_DATA_FILES, name, DF.DataFile(name, (g18_dir / name).as_uri(), record.sha256, ""))
    cached = DF.g18_data_file(name)
    assert cached.is_file() and "generalisation-humans-DNNs" in str(cached)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == record.sha256
    # A corrupt local copy is refused, and so is a download with the wrong content.
    bad = tmp_path / name
    bad.write_bytes(b"not the table")
    with pytest.raises(DataError, match="sha256"):
        DF.g18_data_file(name, bad)
    cached.unlink()
    monkeypatch.setitem(DF.G18_DATA_FILES, name, DF.DataFile(name, bad.as_uri(), record.sha256, ""))
    with pytest.raises(DownloadError):
        DF.g18_data_file(name)
    assert not cached.exists()
    with pytest.raises(DataError, match="not found"):
        DF.g18_data_file(name, tmp_path / "missing.npy")


def test_save_image_truncates(tmp_path: Path) -> None:
    from PIL import Image

    M.save_image(np.full((4, 4), 0.999), tmp_path / "a.png")
    M.save_image(np.full((4, 4, 3), 0.5), tmp_path / "b.png")
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.mode == "L" and np.asarray(a)[0, 0] == 254
    assert b.mode == "RGB" and np.asarray(b)[0, 0, 0] == 127


def test_distort_folder_mvh_layout_and_resume(tmp_path: Path, shared_data: Path) -> None:
    from texturebias.cli import main
    from texturebias.robustness.benchmark import index_dataset

    src = tmp_path / "in"
    for cat, name in (("cat", "cat1.png"), ("dog", "dog1.png")):
        (src / cat).mkdir(parents=True)
        (src / cat / name).write_bytes((shared_data / "texture-vs-shape/stimuli/edges" / cat / name).read_bytes())
    (src / "dog" / "broken.png").write_bytes(b"junk")
    out = tmp_path / "out"
    argv = ["distort", str(src), str(out), "--distortion", "uniform-noise", "--levels", "0", "0.35", "--seed", "1"]
    assert main(argv) == 0  # the corrupt image is recorded in failed.csv (exit 0, one rule), the others written
    files = sorted(p.name for p in (out / "dnn" / "session-1").iterdir())
    assert files == [
        "0001_nse_dnn_0.0_cat_00_cat1.png", "0002_nse_dnn_0.35_cat_00_cat1.png",
        "0005_nse_dnn_0.0_dog_00_dog1.png", "0006_nse_dnn_0.35_dog_00_dog1.png",
    ]  # fmt: skip
    assert "broken.png" in (out / "failed.csv").read_text()
    first = (out / "dnn/session-1/0002_nse_dnn_0.35_cat_00_cat1.png").read_bytes()
    # The output is exactly the library recipe with the item's seed, truncated to uint8.
    from PIL import Image

    from texturebias.data.folder_job import JobItem
    from texturebias.data.images import image_to_array, load_image

    item = JobItem(0, src / "cat" / "cat1.png", "cat/cat1.png", 1)
    expected = M.to_uint8(
        M.uniform_noise(image_to_array(load_image(item.path)), 0.35, item.rng("uniform-noise", "0.35"))
    )
    assert np.array_equal(np.asarray(Image.open(out / "dnn/session-1/0002_nse_dnn_0.35_cat_00_cat1.png")), expected)
    # Rerun: done outputs are skipped and unchanged; the index reads the tree as a model-vs-human release.
    (src / "dog" / "broken.png").write_bytes((src / "dog" / "dog1.png").read_bytes())  # fixed: retried
    assert main(argv) == 0
    assert (out / "dnn/session-1/0003_nse_dnn_0.0_dog_00_broken.png").is_file()
    assert (out / "dnn/session-1/0002_nse_dnn_0.35_cat_00_cat1.png").read_bytes() == first
    images = index_dataset(out, "uniform-noise")
    assert [(d.condition, d.category) for d in images][:2] == [("0.0", "cat"), ("0.35", "cat")]
    with pytest.raises(DataError, match="not a level"):
        D.distort_folder(src, tmp_path / "x", "uniform-noise", levels=["0.4"])
    # Other levels into the same folder add their outputs (they have names of their own) ...
    assert main([*argv[:-4], "0.6", "0.6", "--seed", "1"]) == 0
    added = sorted(p.name for p in (out / "dnn" / "session-1").glob("*_0.6_*"))
    assert added == [
        "0001_nse_dnn_0.6_cat_00_cat1.png",
        "0002_nse_dnn_0.6_dog_00_broken.png",
        "0003_nse_dnn_0.6_dog_00_dog1.png",
    ]  # fmt: skip  (--levels 0.6 0.6 counts once)
    # ... while a setting that changes the pixels of existing names is refused, naming it, and nothing is written.
    before = sorted(p.name for p in (out / "dnn" / "session-1").iterdir())
    with pytest.raises(DataError, match=r"other settings \(seed: 1 -> 2\)"):
        D.distort_folder(src, out, "uniform-noise", levels=["0", "0.35"], seed=2)
    assert sorted(p.name for p in (out / "dnn" / "session-1").iterdir()) == before


def test_distort_keeps_jpg_and_png_of_the_same_stem(tmp_path: Path) -> None:
    """x.jpg and x.png in one class never collide in distort's numbered output names: both are written."""
    from PIL import Image

    (tmp_path / "in" / "cat").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "in" / "cat" / "x.png")
    Image.new("RGB", (32, 32), (10, 200, 10)).save(tmp_path / "in" / "cat" / "x.jpg")
    summary = D.distort_folder(tmp_path / "in", tmp_path / "out", "contrast", levels=["c100"], size=0)
    assert not summary.failed
    assert len(list((tmp_path / "out" / "dnn" / "session-1").glob("*.png"))) == 2


def test_analyze_accuracy_cli(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from texturebias.cli import main

    raw = shared_data / "model-vs-human/raw-data/uniform-noise"
    assert main(["analyze", "--accuracy", "--json", str(raw)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["humans"]["0.35"] == {"accuracy": pytest.approx(255 / 640), "n": 640}
    assert list(payload["humans"]) == ["0.0", "0.03", "0.05", "0.1", "0.2", "0.35", "0.6", "0.9"]
    assert main(["analyze", "--accuracy", "--per-subject", str(raw / "uniform-noise_subject-01_session_1.csv")]) == 0
    assert "subject-01" in capsys.readouterr().out
    assert main(["benchmark", "--data", str(raw), "--out", "unused"]) == 1  # no dataset folders there
    assert "contains none" in capsys.readouterr().err
