"""scripts/plot.py and scripts/summarize.py given awkward inputs: seeds of different lengths, a misspelt metric,
corrupt or half-written files, an output path matplotlib cannot write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_helpers import load_script

HEADER = "step,eval/return_mean,train/loss"


def write_csv(run_dir: Path, text: str | bytes) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def drawn_figures(monkeypatch) -> list:
    """The figures plot.main saves, collected as it saves them."""
    from matplotlib.figure import Figure

    figures, savefig = [], Figure.savefig

    def save(self, *args, **kwargs):
        figures.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", save)
    return figures


# ------------------------------------------------------------------ plot: seeds of different lengths
def test_plot_marks_a_curve_cut_to_one_step_by_a_short_seed_and_names_that_seed(tmp_path, monkeypatch, capsys):
    group = tmp_path / "runs" / "x"
    write_csv(group / "seed1", "\n".join([HEADER, *(f"{s},{s / 100}," for s in range(100, 600, 100))]) + "\n")
    write_csv(group / "seed2", f"{HEADER}\n100,3,\n")
    figures = drawn_figures(monkeypatch)
    load_script("plot").main([str(group), "--metric", "eval/return_mean", "--out", str(tmp_path / "c.png")])
    ax = figures[0].axes[0]
    line = next(line for line in ax.get_lines() if line.get_label().endswith("(n=2)"))
    assert list(line.get_xdata()) == [100] and list(line.get_ydata()) == [2.0]
    assert len(ax.containers) == 1  # the spread over seeds as an error bar: a band one step wide is invisible
    assert line.get_marker() not in (None, "None", "", " ")  # a lone point without a marker draws nothing
    err = capsys.readouterr().err
    assert f"note: {group / 'seed2'} stops at step 100 of eval/return_mean" in err
    assert f"the curve of {group} ends there" in err


def test_plot_keeps_ss_orl_idm_curves_apart_from_the_runs_and_groups_them_over_seeds(tmp_path, monkeypatch, capsys):
    group = tmp_path / "runs" / "ssorl"
    for seed in (1, 2):
        write_csv(group / f"seed{seed}", f"{HEADER}\n100,{seed},\n200,{seed + 1},\n")
        write_csv(group / f"seed{seed}" / "idm", f"step,idm/val_nll\n20,{seed}\n40,{seed - 1}\n")
    figures = drawn_figures(monkeypatch)
    out = str(tmp_path / "c.png")
    load_script("plot").main([str(group), "--metric", "eval/return_mean", "--metric", "idm/val_nll", "--out", out])
    runs, idm = ([line.get_label() for line in ax.get_lines()] for ax in figures[0].axes)
    assert runs == [f"{group} (n=2)"] and idm == [f"{group}/idm (n=2)"]
    assert list(figures[0].axes[1].get_lines()[0].get_ydata()) == [1.5, 0.5]  # the mean over the two seeds
    assert "note" not in capsys.readouterr().err  # no "run ... has no eval/return_mean" for the IDM folders


def test_plot_curve_is_drawn_at_the_evaluation_steps_when_there_are_few(tmp_path):
    csvs = [
        write_csv(tmp_path / f"seed{seed}", f"{HEADER}\n100,{seed},\n200,{seed + 1},\n300,{seed + 2},\n")
        for seed in (1, 2)
    ]
    steps, mean, std, n = load_script("plot").curve(csvs, "eval/return_mean")
    np.testing.assert_allclose(steps, [100, 200, 300])
    np.testing.assert_allclose(mean, [1.5, 2.5, 3.5])
    assert n == 2


# ------------------------------------------------------------------ plot: corrupt metrics.csv
@pytest.mark.parametrize(
    "content, message",
    [
        (f"{HEADER}\n100,0.5,\n200,abc,\n300,0.7,\n", "line 3: eval/return_mean is 'abc', not a number"),
        (f"{HEADER}\n100,0.5,\n200,\n300,0.7,\n".encode(), "line 3 has 2 fields, the header 3"),
        (f"{HEADER}\n100,0.5,\n".encode() + b"200,\xff\xfe,\n", "not UTF-8 text"),
        ("eval/return_mean\n0.5\n", "no step column"),
    ],
    ids=["non-numeric", "short-row", "non-utf8", "no-step"],
)
def test_plot_reports_a_corrupt_metrics_csv_as_one_error_naming_it(tmp_path, content, message):
    csv_path = write_csv(tmp_path / "runs" / "seed1", content)
    with pytest.raises(SystemExit) as exc:
        load_script("plot").main(
            [str(tmp_path / "runs"), "--metric", "eval/return_mean", "--out", str(tmp_path / "c.png")]
        )
    error = str(exc.value.code)
    assert error.startswith(f"error: {csv_path}: ") and message in error and "\n" not in error
    assert not (tmp_path / "c.png").exists()


def test_plot_skips_a_last_row_cut_short_by_a_run_being_written_with_a_warning(tmp_path, capsys):
    csv_path = write_csv(tmp_path / "seed1", f"{HEADER}\r\n100,0.5,1\r\n200,0.9,2")  # `200,0.9,2.5` cut short
    steps, mean, _, _ = load_script("plot").curve([csv_path], "train/loss")
    assert list(steps) == [100] and list(mean) == [1.0]
    assert f"warning: {csv_path}: skipping its last line '200,0.9,2'" in capsys.readouterr().err


# ------------------------------------------------------------------ plot: --out
def test_plot_rejects_an_output_format_matplotlib_cannot_write_before_reading_runs(tmp_path, capsys):
    out = tmp_path / "curves.xyz"
    with pytest.raises(SystemExit) as exc:
        load_script("plot").main([str(tmp_path / "no_such_runs"), "--out", str(out)])  # the runs are not read
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"--out {out}: matplotlib cannot write 'xyz' files; supported: " in err and "pdf, pgf, png" in err
    assert not out.exists()


def test_plot_adds_png_to_an_output_without_extension_and_prints_the_path_it_writes(tmp_path, capsys):
    write_csv(tmp_path / "runs" / "seed1", f"{HEADER}\n100,0.5,\n200,0.7,\n")
    out = load_script("plot").main(
        [str(tmp_path / "runs"), "--metric", "eval/return_mean", "--out", str(tmp_path / "new" / "curves")]
    )
    assert out == tmp_path / "new" / "curves.png" and out.exists()
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    into_folder = load_script("plot").main(
        [str(tmp_path / "runs"), "--metric", "eval/return_mean", "--out", str(out.parent)]
    )
    assert into_folder == out.parent / "curves.png" and into_folder.exists()


# ------------------------------------------------------------------ summarize
def write_run(run_dir: Path, results: str) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 1\n")
    (run_dir / "results.json").write_text(results)
    return run_dir / "results.json"


def test_summarize_rejects_an_unknown_metric_listing_the_known_ones(tmp_path):
    result = {"final": {"success_rate": 1.0, "return_mean": 5.0}, "best": None, "steps": 100}
    write_run(tmp_path / "runs" / "seed1", json.dumps(result))
    with pytest.raises(SystemExit) as exc:
        load_script("summarize").main([str(tmp_path / "runs"), "--metric", "sucess_rate"])
    error = str(exc.value.code)
    assert error == "error: no metric sucess_rate in results.json (final, best); available: return_mean, success_rate"


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"final": {"success_rate": 1.0}, "be', "not valid JSON"),
        ("[]", "holds a list, not an object"),
        ('{"final": [1.0], "best": null}', "final is a list, not an object"),
        ('{"final": {"success_rate": "high"}}', "final.success_rate is 'high', not a number"),
    ],
    ids=["truncated", "list", "final-list", "non-numeric"],
)
def test_summarize_reports_a_corrupt_results_json_as_one_error_naming_it(tmp_path, content, message):
    path = write_run(tmp_path / "runs" / "seed1", content)
    with pytest.raises(SystemExit) as exc:
        load_script("summarize").main([str(tmp_path / "runs")])
    error = str(exc.value.code)
    assert error.startswith(f"error: {path}: ") and message in error and "\n" not in error


def test_summarize_reports_a_results_json_that_is_not_utf8(tmp_path):
    path = write_run(tmp_path / "runs" / "seed1", "")
    path.write_bytes(b'{"final": {"success_rate": 1.0}, "task": "\xff"}')
    with pytest.raises(SystemExit) as exc:
        load_script("summarize").main([str(tmp_path / "runs")])
    assert str(exc.value.code).startswith(f"error: {path}: not UTF-8 text")
