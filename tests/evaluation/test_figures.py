"""Figure 1 / Figure 2 from run logs, host logs and eval results: points, CSVs, errors."""
from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("matplotlib")

from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.evaluation.figures import figure1, figure2, training_curve, write_csv  # noqa: E402


def _run_folder(path, losses, tokens_per_log=1000):
    path.mkdir(parents=True)
    records = [{"kind": "heldout", "step": 0, "tokens": 0, "heldout_en": 6.0}]
    records += [{"kind": "train", "step": i, "tokens": i * tokens_per_log, "loss": v} for i, v in enumerate(losses, 1)]
    records.append({"kind": "train", "step": 99, "tokens": 99, "loss": None})     # a line without a loss
    (path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_training_curve_reads_runs_and_host_logs(tmp_path):
    run = _run_folder(tmp_path / "run", [5.0, 4.0])
    assert training_curve(run) == [(1000, 5.0), (2000, 4.0)]
    log = tmp_path / "host.log"
    log.write_text("|      100/    1000 steps|  99.00 tokens/s| loss  3.5e+00| p: en 1.0\n", encoding="utf-8")
    assert training_curve(log, tokens_per_step=4096) == [(409600, 3.5)]
    (tmp_path / "empty").mkdir()
    (tmp_path / "noise.log").write_text("nothing to see\n", encoding="utf-8")
    for source, kwargs, message in ((tmp_path / "empty", {}, "no log.jsonl"), (tmp_path / "nope", {}, "not found"),
                                    (log, {}, "tokens_per_step"),
                                    (tmp_path / "noise.log", {"tokens_per_step": 1}, "no training-loss lines")):
        with pytest.raises(ChatflowError, match=message):
            training_curve(source, **kwargs)


def test_figure1_and_figure2_write_a_png_and_its_points(tmp_path):
    a = _run_folder(tmp_path / "a", [5.0, 4.0], tokens_per_log=2_000_000_000)   # billions: a B axis
    b = _run_folder(tmp_path / "b", [5.5, 4.5], tokens_per_log=2_000_000_000)
    png = figure1([("dynamic", str(a)), ("static", str(b))], tmp_path / "fig1.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "fig1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["run"], r["tokens"], r["loss"]) for r in rows][-1] == ("static", "4000000000", "4.5")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"models": {"m": {"benchmarks": {"ceval": {"acc": 0.5}}}}}))
    figure2(results, [("m", "1e6")], tmp_path / "fig2.png")
    assert (tmp_path / "fig2.csv").read_text().splitlines() == ["model,tokens,benchmark,accuracy",
                                                                 "m,1000000,ceval,0.5"]
    with pytest.raises(ChatflowError, match="no evaluated model"):
        figure2(results, [], tmp_path / "fig3.png")
    assert not (tmp_path / "fig3.png").exists()


def test_write_csv_takes_columns_in_order_of_appearance(tmp_path):
    write_csv(tmp_path / "t.csv", [{"a": 1, "b": None}, {"c": "x", "a": 2}])
    assert (tmp_path / "t.csv").read_text() == "a,b,c\n1,,\n2,,x\n"
