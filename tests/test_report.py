"""The run report: the results table's orientation and the HTML's embedded figure previews."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from punmri.config import load_config
from punmri.pipeline import run
from punmri.report.figures import reconstruction_grid
from punmri.report.html import (
    EMBED_MAX_PIXELS,
    EMBED_MAX_WIDTH,
    embed_figure,
    markdown_to_html,
    preview_size,
)
from punmri.report.markdown import results_table

from .conftest import TINY


def _entry(psnr: float, ssim: float) -> dict:
    return {"psnr": psnr, "psnr_std": 0.5, "ssim": ssim, "n": 2}


def test_results_table_has_a_row_per_suite_and_a_column_per_method():
    metrics = {
        "methods": {
            "pun": {"suites": {"id": _entry(30.0, 0.9), "acc8": _entry(25.25, 0.8)}},
            "dense": {"suites": {"id": _entry(29.0, 0.85), "acc8": _entry(24.0, 0.75)}},
            "zero-filled": {"suites": {"id": _entry(20.0, 0.5)}},
        }
    }
    lines = results_table(metrics, ["id", "acc8", "snr20"]).splitlines()
    assert lines[0] == "| suite | zero-filled | dense | pun |"
    assert lines[1] == "|---|---|---|---|"
    assert lines[2] == (
        "| id | 20.00 ± 0.50 / 0.5000 | 29.00 ± 0.50 / 0.8500 | 30.00 ± 0.50 / 0.9000 |"
    )
    assert lines[3] == "| acc8 | - | 24.00 ± 0.50 / 0.7500 | 25.25 ± 0.50 / 0.8000 |"
    assert lines[4] == "| snr20 | - | - | - |"
    assert len(lines) == 5


@pytest.mark.parametrize(
    ("size", "expected_max"),
    [((300, 200), (300, 200)), ((2400, 360), (EMBED_MAX_WIDTH, 150)), ((900, 1000), None)],
)
def test_preview_size_caps_width_and_pixels_without_upscaling(size, expected_max):
    w, h = preview_size(*size)
    assert w <= EMBED_MAX_WIDTH and w * h <= EMBED_MAX_PIXELS
    assert w <= size[0] and h <= size[1]
    assert abs(w / h - size[0] / size[1]) < 0.01 * size[0] / size[1]
    if expected_max is not None:
        assert (w, h) == expected_max


def _decoded(uri: str) -> Image.Image:
    head, data = uri.split(",", 1)
    assert head in ("data:image/jpeg;base64", "data:image/png;base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_embed_figure_is_a_capped_preview_of_a_large_grid(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.uniform(size=(3, 48, 40))
    recons = {f"m{i}": targets + 0.1 * rng.standard_normal(targets.shape) for i in range(5)}
    path = reconstruction_grid(targets, recons, tmp_path / "grid.png")
    full = Image.open(path).size
    assert full[0] * full[1] > EMBED_MAX_PIXELS  # the case that matters: a bigger figure
    preview = _decoded(embed_figure(path))
    assert preview.size == preview_size(*full)
    assert preview.mode in ("RGB", "P")  # transparency flattened


def test_html_links_each_preview_to_its_full_resolution_figure(tmp_path):
    (tmp_path / "figures").mkdir()
    Image.new("RGBA", (50, 40), (255, 0, 0, 128)).save(tmp_path / "figures" / "a.png")
    text = "# t\n\n| suite | dense |\n|---|---|\n| id | 1 |\n\n![alt](figures/a.png)\n"
    page = markdown_to_html(text, tmp_path)
    assert '<div class="table"><table>' in page and "white-space:nowrap" in page
    match = re.search(r'<a href="figures/a.png"[^>]*><img alt="alt" src="(data:[^"]+)"></a>', page)
    assert match is not None
    assert _decoded(match.group(1)).size == (50, 40)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    suites = "evaluate.suites=[{name: id}, {name: acc8, physics: {acceleration: 8}}]"
    more = ["methods=[dense,random]", "prune.density=0.3", "evaluate.baselines=[zero-filled]"]
    figures = ["data.max_test_slices=3", "evaluate.figure_slices=3"]
    cfg = load_config(None, [*TINY, *more, *figures, suites])
    run(cfg, out, progress=False)
    return out


def test_report_results_table_runs_suites_down_and_methods_across(small_run):
    lines = (small_run / "report.md").read_text().splitlines()
    start = lines.index("| suite | zero-filled | dense | random |")
    assert [line.split(" | ")[0] for line in lines[start + 2 : start + 4]] == ["| id", "| acc8"]
    assert not lines[start + 4].startswith("|")


def test_report_html_embeds_capped_previews_linked_to_figures(small_run):
    page = (small_run / "report.html").read_text()
    figures = re.findall(
        r'<a href="(figures/[^"]+)"[^>]*><img alt="[^"]*" src="(data:[^"]+)">', page
    )
    assert len(figures) == page.count("<img") >= 3
    grids = 0
    for name, uri in figures:
        full = Image.open(small_run / name).size
        preview = _decoded(uri).size
        assert preview == preview_size(*full), name
        assert preview[0] <= EMBED_MAX_WIDTH and preview[0] * preview[1] <= EMBED_MAX_PIXELS
        grids += full[0] * full[1] > EMBED_MAX_PIXELS
    assert grids >= 1  # the reconstruction grids of three slices are above the cap
    # Bounded by the number of figures: at most ~100 KB per preview beyond the text.
    text = len((small_run / "report.md").read_bytes())
    assert len(page.encode()) < 2 * text + 100_000 * len(figures)
