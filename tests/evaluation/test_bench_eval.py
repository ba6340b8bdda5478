"""benchmarks/bench_eval.py runs end to end on tiny files and a tiny ladder: both sides score the same questions with
the same predictions, every column is filled, the JSON is written. (Its timings are not checked: figures belong to
the benchmark's printout, never to a test.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval_benchmarks import write_ceval, write_gaokao_all_kinds, write_mmlu

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_eval.py"


def test_bench_eval_needs_a_data_dir(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH), "--data_dir", str(tmp_path / "absent")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0 and "--data_dir must hold mmlu" in out.stderr


@pytest.mark.slow
def test_bench_eval_runs_a_tiny_ladder(tmp_path):
    pytest.importorskip("lm_eval", reason="the benchmark's other side is lm-evaluation-harness")
    data = tmp_path / "benchmarks"
    write_mmlu(data / "mmlu", subjects=("astronomy",), n_test=3)
    write_ceval(data / "ceval", subjects=("law",), n_val=3)
    write_gaokao_all_kinds(data / "gaokao", n=5)
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(BENCH), "--data_dir", str(data), "--tasks", "mmlu,ceval,gaokao",
                          "--sizes", "1x32", "--limit", "2", "--repeats", "1", "--threads", "1", "--vocab", "600",
                          "--gen_questions", "3", "--gen_tokens", "4", "--output", str(out)],
                         capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ours q/s" in run.stdout and "lm-eval q/s" in run.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = report["sizes"][0]["benchmarks"]
    for name in ("mmlu", "ceval"):
        row = rows[name]
        assert row["questions"] == 2 and row["same_predictions"] and row["max_abs_diff"] < 1e-5, name
        assert row["end_to_end"]["ratio"] > 0 and row["vs_lm_eval"] > 0
        assert row["cache_never_agrees"]["same_predictions"] and row["cache_always_agrees"]["same_predictions"]
    gaokao = rows["gaokao"]
    assert gaokao["questions"] == 4 * 2 and "vs_lm_eval" not in gaokao
    assert gaokao["generation"]["same_outputs"]   # batched greedy answers = one at a time
