"""ONNX export: every method's graph scores as PyTorch does; real films through the CLI; no torch
needed to score with an exported model."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from ppad.export.onnx import PARITY_TOLERANCE, ExportError, Parity, export_onnx
from ppad.export.runtime import OnnxScorer, segmenter_path, sidecar_path
from ppad.methods import METHODS, get_method
from ppad.scoring import DetectorScorer
from tests.conftest import run_ppad as ppad

pytest.importorskip("onnxruntime", reason="onnxruntime is in the [test] extra")


def trained(name: str, backbone, rng: np.random.Generator, region_set: str | None = None):
    """A method's model with prompts moved off their initialisation and its memory filled."""
    torch.manual_seed(0)
    method = get_method(name)
    model = method.build(backbone, method.config(region_set=region_set))
    with torch.no_grad():
        for prompt in model.learned_state_dict().values():
            prompt.add_(torch.randn_like(prompt) * 0.5)
    films = rng.random((12, 224, 224), dtype=np.float32)
    model.prepare(films[:6])
    model.calibrate(films[6:], np.array([0, 0, 0, 1, 1, 1]))
    return model


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_exports_and_scores_as_pytorch_does(backbone, rng, tmp_path, name):
    model = trained(name, backbone, rng)
    films = rng.random((9, 224, 224), dtype=np.float32)
    out = tmp_path / "model.onnx"
    parity = export_onnx(model, name, out, {"test": True}, films)
    assert parity.holds and parity.films == 9 and parity.same_decisions
    assert set(parity.max_probability_difference) == {1, 8}
    assert max(parity.max_probability_difference.values()) <= PARITY_TOLERANCE

    scorer = OnnxScorer(out, batch_size=4)
    views, scores = scorer.score(films)
    expected_views, expected_scores = DetectorScorer(model).score(films)
    assert scorer.view_names == model.view_names and views.shape == expected_views.shape
    np.testing.assert_allclose(views, expected_views, atol=PARITY_TOLERANCE, rtol=0)
    np.testing.assert_allclose(scores, expected_scores, atol=PARITY_TOLERANCE, rtol=0)
    sidecar = json.loads(sidecar_path(out).read_text())
    assert sidecar["method"] == name and sidecar["eta"] == 0.8 and sidecar["parity"]["same_decisions"]
    assert sidecar["preprocessing"]["image_size"] == 224 and sidecar["preprocessing"]["resize_mode"] == "pad"


def test_an_export_that_fails_or_disagrees_is_refused_and_leaves_the_earlier_one(backbone, rng, tmp_path, monkeypatch):
    model = trained("ppad", backbone, rng)
    out = tmp_path / "model.onnx"
    export_onnx(model, "ppad", out, {"first": True})
    earlier = out.read_bytes(), sidecar_path(out).read_bytes()

    def exporter_fails(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::something\nlong trace")

    with monkeypatch.context() as patch:
        patch.setattr(torch.onnx, "export", exporter_fails)
        with pytest.raises(ExportError, match="PPADModel cannot be exported to ONNX: Unsupported operator"):
            export_onnx(model, "ppad", out, {})
    assert (out.read_bytes(), sidecar_path(out).read_bytes()) == earlier

    with monkeypatch.context() as patch:  # a graph that drifts from PyTorch is refused too
        patch.setattr("ppad.export.onnx.PARITY_TOLERANCE", -1.0)
        with pytest.raises(ExportError, match="does not score as PyTorch does"):
            export_onnx(model, "ppad", out, {})
    assert (out.read_bytes(), sidecar_path(out).read_bytes()) == earlier
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]  # no staging left
    nan = Parity(8, True, {1: float("nan"), 8: 0.0}, {1: 0.0, 8: 0.0}, True)
    assert not nan.holds and nan.worst == float("inf")  # a NaN from either runtime never passes


@pytest.mark.parametrize("method, region_set", [("ppad+knn", "ppad"), ("ppad+knn", "lungs"), ("patch-knn", "whole")])
def test_scoring_with_an_export_needs_no_torch(backbone, rng, tmp_path, method, region_set):
    model = trained(method, backbone, rng, region_set)
    out = tmp_path / "model.onnx"
    export_onnx(model, method, out, {})
    assert segmenter_path(out).is_file() == (region_set == "lungs")  # lung fields: the segmenter goes along
    films = []
    for index in range(3):
        path = tmp_path / f"film{index}.png"
        write_film(rng.random((300, 260)), path)
        films.append(path)
    script = textwrap.dedent(
        f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "timm", "open_clip", "transformers"):
                    raise ImportError("torch is not installed here: " + name)
        sys.meta_path.insert(0, NoTorch())
        from pathlib import Path
        from ppad.export.runtime import OnnxScorer
        from ppad.scoring.archive import Provenance, score_archive
        from ppad.scoring.rows import csv_columns
        scorer = OnnxScorer(Path({str(out)!r}))
        provenance = Provenance.of(Path({str(out)!r}), Path({str(out)!r}), "onnx", csv_columns(scorer.view_names, scorer.lung_fields is not None))
        paths = [Path(p) for p in {[str(f) for f in films]!r}]
        score_archive(scorer, paths, Path({str(tmp_path / "no-torch.csv")!r}), provenance, progress=False)
        assert "torch" not in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(tmp_path / "no-torch.csv")))
    assert [Path(row["path"]).name for row in rows] == ["film0.png", "film1.png", "film2.png"]
    from ppad.data import load_images

    images = load_images(films, model.preprocessing, progress=False).images
    _, expected = DetectorScorer(model).score(images)
    np.testing.assert_allclose([float(row["score"]) for row in rows], expected, atol=PARITY_TOLERANCE)


def write_film(values: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray((values * 255).astype(np.uint8)).save(path)


def test_export_then_score_real_films_through_the_cli(zhanglab_fused_run, tmp_path):
    """On each film's lung fields (the segmenter exported beside the model), the path with most parts: the
    session's shared ``ppad+knn`` run on lung fields."""
    test, run = zhanglab_fused_run.test, zhanglab_fused_run.run
    regions = json.loads((run / "manifest.json").read_text())["regions"]
    assert regions["set"] == "lungs" and len(regions["segmenter"]["sha256"]) == 64

    model = tmp_path / "export" / "model.onnx"
    done = ppad("export", "--run", run, "--format", "onnx", "--out", model)
    assert done.returncode == 0, done.stderr
    assert "same decisions" in done.stdout and "of the run's films" in done.stdout
    assert "INFO" not in done.stderr  # the exporter's graph passes stay quiet under the CLI's logging
    sidecar = json.loads(sidecar_path(model).read_text())
    assert sidecar["source"]["backbone"] == "cxr-lite" and sidecar["parity"]["real_films"]
    assert sidecar["regions"]["segmenter"]["weights_sha256"] == regions["segmenter"]["sha256"]
    assert segmenter_path(model).is_file()

    films = [str(i.path) for i in test]
    done = ppad("score", "--run", run, *films, "--out", tmp_path / "torch.csv", "--quiet")
    assert done.returncode == 0, done.stderr
    reference = list(csv.DictReader(open(tmp_path / "torch.csv")))
    for batch_size in (1, 8):
        out = tmp_path / f"onnx{batch_size}.csv"
        done = ppad("score", "--onnx", model, *films, "--out", out, "--batch-size", batch_size, "--quiet")
        assert done.returncode == 0, done.stderr
        rows = list(csv.DictReader(open(out)))
        assert list(rows[0]) == list(reference[0]) and len(rows) == len(reference) == 20
        for row, expected in zip(rows, reference):
            assert row["path"] == expected["path"] and row["prediction"] == expected["prediction"]
            for column in (c for c in row if c == "score" or c.startswith("p_")):
                assert abs(float(row[column]) - float(expected[column])) <= PARITY_TOLERANCE, column


def test_score_needs_exactly_one_of_run_and_onnx(tmp_path):
    film = tmp_path / "film.png"
    write_film(np.zeros((8, 8)), film)
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not onnx")
    for args, message in [
        ((), "give either --run RUN or --onnx MODEL"),
        (("--onnx", fake, "--maps", tmp_path / "maps"), "--maps needs --run"),
        (("--onnx", fake), "model.onnx.json: missing: model.onnx was not written by `ppad export`"),
    ]:
        done = ppad("score", *args, film, "--quiet")
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    sidecar_path(fake).write_text('{"format": "ppad-onnx", ')
    done = ppad("score", "--onnx", fake, film, "--quiet")
    assert done.returncode == 2 and "model.onnx.json: unreadable" in done.stderr, done.stderr
    sidecar_path(fake).write_text(json.dumps({"format": "ppad-onnx", "format_version": 1}))
    done = ppad("score", "--onnx", fake, film, "--quiet")
    assert done.returncode == 2 and "missing or malformed field" in done.stderr
    description = {"method": "knn", "view_names": ["memory"], "eta": 0.8, "threshold": 0.5}
    preprocessing = {"image_size": 224, "resize_mode": "pad"}
    sidecar_path(fake).write_text(
        json.dumps({"format": "ppad-onnx", "format_version": 1, **description, "preprocessing": preprocessing})
    )
    done = ppad("score", "--onnx", fake, film, "--quiet")
    assert done.returncode == 2 and "model.onnx: onnxruntime cannot load it" in done.stderr, done.stderr


def test_the_readme_example_scores_without_ppad_or_torch(backbone, rng, tmp_path):
    """The example of the deployment page (docs/deployment.md), run with ppad and PyTorch blocked."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text()
    example = page.split("<!-- onnx-example -->\n```python\n", 1)[1].split("\n```", 1)[0]
    assert len(example.splitlines()) <= 30
    (tmp_path / "example.py").write_text(example)
    model = trained("ppad", backbone, rng)
    out = tmp_path / "model.onnx"
    export_onnx(model, "ppad", out, {})
    films = []
    for index, shape in enumerate([(300, 260), (224, 224), (180, 320)]):
        films.append(tmp_path / f"film{index}.png")
        write_film(rng.random(shape), films[-1])
    runner = textwrap.dedent(
        f"""
        import runpy, sys
        class NoPpadNoTorch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "ppad"):
                    raise ImportError("not installed here: " + name)
        sys.meta_path.insert(0, NoPpadNoTorch())
        sys.argv = ["example.py", {str(out)!r}, *{[str(f) for f in films]!r}]
        runpy.run_path({str(tmp_path / "example.py")!r}, run_name="__main__")
        """
    )
    done = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = [line.split("\t") for line in done.stdout.strip().splitlines()]
    from ppad.data import load_images

    _, expected = DetectorScorer(model).score(load_images(films, model.preprocessing, progress=False).images)
    assert [Path(row[0]).name for row in printed] == ["film0.png", "film1.png", "film2.png"]
    np.testing.assert_allclose([float(row[1]) for row in printed], expected, atol=PARITY_TOLERANCE)
    assert [row[2] for row in printed] == ["abnormal" if s > 0.5 else "normal" for s in expected]
