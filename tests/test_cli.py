"""CLI smoke tests on tiny phantom data: run, resume, refusal to clobber, eval, recon, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from punmri.cli.main import main
from punmri.errors import InputError

from .conftest import TINY


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", "--out", str(out), "--no-progress", *TINY]) == 0
    return out


def test_run_writes_contract(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for method in ("dense", "zero-filled", "cs-l1"):
        entry = metrics["methods"][method]["suites"]["id"]
        assert {"psnr", "ssim", "nmse", "n"} <= set(entry) and entry["n"] == 2
    assert (trained_run / "report.md").read_text().startswith("# punmri report")
    assert "<img" in (trained_run / "report.html").read_text()
    assert (trained_run / "eval" / "slices.csv").is_file()


def _snapshot(directory):
    """Every file below ``directory`` with its bytes and modification time."""
    return {
        p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_rerun_of_a_complete_run_changes_nothing(trained_run, monkeypatch):
    import punmri.pipeline

    def no_data(*args, **kwargs):
        raise AssertionError("a complete run must not load data or evaluate again")

    before = _snapshot(trained_run)
    monkeypatch.setattr(punmri.pipeline, "load_run_data", no_data)
    assert main(["run", "--out", str(trained_run), "--no-progress", *TINY]) == 0
    assert _snapshot(trained_run) == before


def test_changed_evaluation_settings_reevaluate_and_keep_the_recorded_cost(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--no-progress", *TINY]) == 0
    first = json.loads((out / "metrics.json").read_text())
    weights = (out / "models/dense/seed0/train/best.pt").read_bytes()
    assert main(["run", "--out", str(out), "--no-progress", *TINY, "evaluate.cg_tol=0.5"]) == 0
    second = json.loads((out / "metrics.json").read_text())
    assert second["config"]["evaluate"]["cg_tol"] == 0.5
    assert (out / "models/dense/seed0/train/best.pt").read_bytes() == weights
    # an early CG exit at a loose tolerance changes the reconstructions, so this was re-evaluated
    assert (
        second["methods"]["dense"]["suites"]["id"]["psnr"]
        != (first["methods"]["dense"]["suites"]["id"]["psnr"])
    )
    assert second["wall_s"] > first["wall_s"]  # the first call's seconds are kept, not replaced


def test_rerun_resumes_and_different_config_is_refused(trained_run, capsys):
    before = (trained_run / "models/dense/seed0/train/done.json").read_text()
    assert main(["run", "--out", str(trained_run), "--no-progress", *TINY]) == 0
    assert (trained_run / "models/dense/seed0/train/done.json").read_text() == before
    code = main(["run", "--out", str(trained_run), "--no-progress", *TINY, "train.steps=9"])
    assert code == 2
    assert "different config" in capsys.readouterr().err
    assert json.loads((trained_run / "metrics.json").read_text())["config"]["train"]["steps"] == 6


def test_run_extended_with_another_method_reuses_trained_networks(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--no-progress", *TINY]) == 0
    before = (out / "models/dense/seed0/train/done.json").read_text()
    extended = [*TINY, "methods=[dense,random]", "evaluate.baselines=[]"]
    assert main(["run", "--out", str(out), "--no-progress", *extended]) == 0
    assert (out / "models/dense/seed0/train/done.json").read_text() == before
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"dense", "random"}


def test_eval_on_extra_source_and_recon(trained_run, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "extra.npy", rng.uniform(size=(2, 30, 30)).astype(np.float32))
    out = tmp_path / "eval"
    extra = tmp_path / "extra.npy"
    args = ["eval", "--run", str(trained_run), "--data", str(extra), "--out", str(out)]
    assert main([*args, "--no-progress", "physics.acceleration=6"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]["dense"]["suites"]) == {"id", "extra"}
    assert metrics["config"]["physics"]["acceleration"] == 6
    before = _snapshot(out)
    assert main([*args, "--no-progress", "physics.acceleration=6"]) == 0
    assert _snapshot(out) == before  # the same evaluation again: nothing to do
    np.save(extra, rng.uniform(size=(3, 30, 30)).astype(np.float32))  # the source changed
    assert main([*args, "--no-progress", "physics.acceleration=6"]) == 0
    assert json.loads((out / "metrics.json").read_text())["suites"]["extra"]["n_slices"] == 3
    rec = tmp_path / "recon.npy"
    recon = ["recon", "--run", str(trained_run), "--input", str(tmp_path / "extra.npy")]
    assert main([*recon, "--out", str(rec)]) == 0
    images = np.load(rec)
    assert images.shape == (3, 24, 20) and np.iscomplexobj(images)
    assert main([*recon, "--out", str(rec)]) == 2  # refuses to overwrite


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "x"), "train.bogus=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("punmri: error: unknown config key train.bogus") and "\n" not in err
    assert main(["eval", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "e")]) == 2
    assert "not a punmri run directory" in capsys.readouterr().err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert main(["run", "--out", str(tmp_path / "foreign"), *TINY]) == 2
    assert "is not a punmri run" in capsys.readouterr().err
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"


def test_prune_writes_exact_mask_and_refuses_clobber(tmp_path, capsys):
    out = tmp_path / "mask"
    args = [
        "prune",
        "--method",
        "snip",
        "--density",
        "0.25",
        "--out",
        str(out),
        *TINY,
        "prune.check_batches=1",
        "prune.check_shuffles=1",
    ]
    assert main(args) == 0
    summary = json.loads((out / "mask.json").read_text())
    assert summary["kept"] == round(0.25 * summary["total"])
    check = summary["metadata"]["check"]
    assert "loss_shuffled_mean" in check and check["loss_pruned"] > 0
    out = capsys.readouterr().out
    assert (
        "layer-shuffled control" in out and f"every weight pruned {check['loss_pruned']:.4f}" in out
    )
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert (
        main(["prune", "--method", "imp", "--density", "0.1", "--out", str(tmp_path / "x"), *TINY])
        == 2
    )
    assert "finds masks at initialisation" in capsys.readouterr().err


def test_prune_magnitude_keeps_the_output_layer_of_the_results_denoiser(tmp_path):
    # a bare global magnitude ranking at 3% keeps none of the ResNet's output-layer weights
    # (its fan-in is the largest, so its Kaiming weights the smallest); the default guard keeps
    # the largest weight of each of its two output channels, within the exact count
    wide = ["model.channels=32", "model.depth=5", "prune.check_batches=1", "prune.check_shuffles=1"]
    counts = {}
    for guard in ("channel-min", "none"):
        out = tmp_path / guard
        args = ["prune", "--method", "magnitude", "--density", "0.03", "--out", str(out)]
        assert main([*args, *TINY, *wide, f"prune.magnitude_guard={guard}"]) == 0
        summary = json.loads((out / "mask.json").read_text())
        assert summary["kept"] == round(0.03 * summary["total"])
        counts[guard] = summary["metadata"]["layer_counts"]["denoiser.body.8.weight"]
    assert counts == {"channel-min": 2, "none": 0}


def test_prune_finds_channel_masks(tmp_path, capsys):
    out = tmp_path / "channels"
    args = ["prune", "--method", "random-channel", "--density", "0.5", "--out", str(out), *TINY]
    checks = ["prune.check_batches=1", "prune.check_shuffles=1"]
    assert main([*args, *checks, "prune.exclude=[denoiser.body.0.weight]"]) == 0
    summary = json.loads((out / "channels.json").read_text())
    whole = {"denoiser:layer0"}  # written by the excluded layer: kept whole
    assert summary["metadata"]["whole_slots"] == sorted(whole)
    assert summary["widths"] == {
        s: n if s in whole else max(1, round(0.5 * n)) for s, n in summary["full_widths"].items()
    }
    params = summary["metadata"]["parameters"]
    assert 0 < params["compact"] < params["dense"]
    printed = capsys.readouterr().out
    assert "random channels of the same widths" in printed and "compact network" in printed
    assert main(args) == 2
    assert "channels.pt exists" in capsys.readouterr().err


def test_report_rewrites_from_slices(trained_run):
    (trained_run / "report.md").unlink()
    before = json.loads((trained_run / "metrics.json").read_text())
    assert main(["report", "--run", str(trained_run), "--no-progress"]) == 0
    after = json.loads((trained_run / "metrics.json").read_text())
    assert after["methods"] == before["methods"]
    assert (trained_run / "report.md").is_file()


def test_recon_fastmri_file_and_data_command(trained_run, tmp_path, capsys):
    from .test_kspace_sources import _write

    h5 = _write(tmp_path / "knee.h5", n_slices=2, coils=4)
    out = tmp_path / "knee.nii.gz"
    assert main(["recon", "--run", str(trained_run), "--input", str(h5), "--out", str(out)]) == 0
    import nibabel as nib

    volume = np.asarray(nib.load(out).dataobj)
    assert volume.ndim == 3 and volume.shape[-1] == 2 and np.isfinite(volume).all()
    np.save(tmp_path / "imgs.npy", np.random.default_rng(0).uniform(size=(3, 16, 16)))
    assert main(["data", str(tmp_path / "imgs.npy"), "--preview", str(tmp_path / "p.png")]) == 0
    text = capsys.readouterr().out
    assert "3 slices of 16x16" in text and (tmp_path / "p.png").is_file()


def test_bad_method_writes_nothing_and_failed_start_takes_new_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), *TINY, "methods=[lottery]"]) == 2
    assert "unknown method 'lottery'" in capsys.readouterr().err
    assert not out.exists()
    from punmri.config import load_config
    from punmri.rundir import prepare_run_dir

    prepare_run_dir(load_config(None, TINY), out)  # a run that died before any stage finished
    prepare_run_dir(load_config(None, [*TINY, "train.steps=9"]), out)
    assert load_config(out / "config.yaml").train.steps == 9


def test_resume_accepts_a_config_saved_before_a_setting_existed(tmp_path):
    # A run directory written by an older punmri lacks settings added since; with their
    # defaults they are the same run, while a changed training setting is still refused.
    import yaml

    from punmri.config import load_config
    from punmri.rundir import prepare_run_dir

    out = tmp_path / "run"
    prepare_run_dir(load_config(None, TINY), out)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["model"]["batchnorm"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    (out / "models").mkdir()  # a finished stage: the directory is no longer empty
    prepare_run_dir(load_config(None, TINY), out)
    with pytest.raises(InputError, match="different config"):
        prepare_run_dir(load_config(None, [*TINY, "model.batchnorm=true"]), out)


def test_lesion_suite_reports_roi_metrics(tmp_path):
    out = tmp_path / "run"
    suites = "evaluate.suites=[{name: id}, {name: lesions, lesions: true}]"
    assert main(["run", "--out", str(out), "--no-progress", *TINY, suites]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    lesion = metrics["methods"]["dense"]["suites"]["lesions"]
    assert {"roi_psnr", "roi_ssim", "lesion_contrast_error"} <= set(lesion)
    assert "roi_psnr" not in metrics["methods"]["dense"]["suites"]["id"]
    assert "## Lesion regions" in (out / "report.md").read_text()


def test_console_summary_is_one_table(trained_run, capsys):
    assert main(["report", "--run", str(trained_run), "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["method", "ID", "PSNR", "ID"]
    rows = {line.split()[0] for line in out[2:5]}
    assert rows == {"zero-filled", "cs-l1", "dense"}
    assert any(line.startswith("report: ") for line in out)


def test_eval_of_a_new_source_reuses_the_runs_suites(trained_run, tmp_path, monkeypatch):
    import punmri.evaluate.shared

    evaluated = []
    real = punmri.evaluate.shared.evaluate_methods

    def spy(recons, suites, *args, **kwargs):
        evaluated.extend(s.name for s in suites)
        return real(recons, suites, *args, **kwargs)

    monkeypatch.setattr(punmri.evaluate.shared, "evaluate_methods", spy)
    np.save(tmp_path / "more.npy", np.random.default_rng(1).uniform(size=(2, 30, 30)))
    out = tmp_path / "eval"
    args = ["eval", "--run", str(trained_run), "--data", str(tmp_path / "more.npy")]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0
    assert evaluated == ["more"]  # the run's own suite is taken from its slices.csv
    run = json.loads((trained_run / "metrics.json").read_text())["methods"]
    new = json.loads((out / "metrics.json").read_text())["methods"]
    for method in ("dense", "zero-filled", "cs-l1"):
        assert new[method]["suites"]["id"] == run[method]["suites"]["id"]
        assert new[method]["suites"]["more"]["n"] == 2
