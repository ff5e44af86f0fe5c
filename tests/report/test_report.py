"""The report of ``neural-kernels demo``: sections, plots, ``index.html``, ``results.json``."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest

from neural_kernels.cli import main

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

SECTIONS = (
    "infinite_width",
    "finite_vs_infinite",
    "gaussian_picture",
    "kernel_movement",
    "applications",
)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> Path:
    """One ``demo --quick`` run, shared by the tests of this module."""
    out = tmp_path_factory.mktemp("quick") / "report"
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def results(quick_report) -> dict:
    return json.loads((quick_report / "results.json").read_text())


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.headings = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "h2":
            self.headings += 1


def test_results_keys(results):
    for key in ("config", "data", "results", "timings", *SECTIONS):
        assert key in results
    assert results["config"]["quick"] is True


def test_infinite_width_accuracies(results):
    sec = results["infinite_width"]
    chance = sec["chance_test_accuracy"]
    assert set(sec) >= {"fc", "cnn"}
    for net in ("fc", "cnn"):
        for g in ("nngp", "ntk"):
            d = sec[net][g]
            accs = [d["posterior_test_accuracy"], *d["gd_test_accuracy"]]
            assert all(0.0 <= a <= 1.0 for a in accs)
            assert d["posterior_test_accuracy"] > chance + 0.3
            assert d["gd_test_accuracy"][-1] > chance + 0.3
            assert len(d["gd_test_accuracy"]) == len(d["times"]) == len(d["gd_test_mse"])
            assert all(math.isfinite(v) and v >= 0 for v in d["gd_test_mse"])
            ev = d["eigenvalues"]
            assert len(ev) == sec[net]["n_train"] and ev == sorted(ev, reverse=True)
            # Long training reaches the posterior mean (t = infinity).
            assert d["gd_test_mse"][-1] == pytest.approx(d["posterior_test_mse"], rel=1e-2)


def test_finite_approaches_infinite(results):
    sec = results["finite_vs_infinite"]
    widths = sec["widths"]
    assert widths == sorted(widths) and len(widths) >= 3
    for param in ("ntk", "standard"):
        gaps = [sec[param][str(w)]["rms_difference"] for w in widths]
        assert all(math.isfinite(g) and g >= 0 for g in gaps)
        assert gaps[-1] < gaps[0]
        for w in widths:
            assert 0.0 <= sec[param][str(w)]["finite_test_accuracy"] <= 1.0
    moves = results["kernel_movement"]
    for param in ("ntk", "standard"):
        assert moves[param][-1] < moves[param][0]


def test_gaussian_picture(results):
    sec = results["gaussian_picture"]
    assert sec["nngp_variance"] > 0
    widest = str(sec["widths"][-1])
    assert len(sec["samples"][widest]) == sec["seeds"]
    stats = sec["stats"]
    # The widest network is closer to the NNGP Gaussian than the narrowest.
    assert (
        stats[widest]["ks_distance_to_nngp"] < stats[str(sec["widths"][0])]["ks_distance_to_nngp"]
    )
    assert stats[widest]["variance"] == pytest.approx(sec["nngp_variance"], rel=0.35)


def test_index_html_images(quick_report):
    parser = _Images()
    parser.feed((quick_report / "index.html").read_text())
    assert parser.headings >= len(SECTIONS)
    assert len(parser.images) >= 6
    for img in parser.images:
        src = img.get("src")
        assert src and not src.startswith(("/", "http")), src
        path = quick_report / src
        assert path.is_file(), src
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (img.get("alt") or "").strip()
    names = {p.name for p in quick_report.iterdir()}
    assert {"index.html", "results.json"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temporary files


def test_bad_input_writes_nothing(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--quick", "--out", str(out), "--n-train", "0"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1
    assert not out.exists()
