"""Every script in scripts/ has a --tiny mode that runs on a CPU with nothing downloaded, from any working
directory, with a relative output directory (as a user runs them); --help documents it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "scripts").glob("*.sh") if not p.name.startswith("_"))

# script -> files its --tiny run must leave under the relative output directory
TINY_OUTPUTS = {
    "table1_schedule.sh": ["table1.txt", "table1.json", "table1_schedule.png"],
    "figure1_loss_curves.sh": ["figure1_training_loss.png", "figure1_training_loss.csv", "demo/report/report.md"],
    "figure2_metrics_over_tokens.sh": ["figure2.png", "figure2.csv"],
    "table2_benchmarks.sh": ["table2.json", "table2.md", "predictions.jsonl"],
    "table3_elo.sh": ["table3.md", "table3.json", "table3_win_rates.png", "table3_non_tie_win_rates.png",
                      "votes.jsonl", "models/tiny-chat-a/config.json"],
    "chatflow_full_run.sh": ["release/config.json", "report/report.md"],
    "clo_vs_sft.sh": ["report.md", "report.json"],
    "expand_vocab.sh": ["expanded/config.json", "expanded.tokenizer.model", "expanded.expand_report.json"],
    "adapt_language.sh": ["demo/report/report.md", "demo/release/config.json", "fidelity.json"],
    "fault_injection.sh": ["faults.xml", "faults.txt"],
}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """The foundation cache the --tiny modes share (scripts/_common.sh), one for the session: nothing in ~/.cache."""
    return tmp_path_factory.mktemp("chatflow_cache")


def _run(script: str, *args: str, cwd: Path, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if cache is not None:
        env["CHATFLOW_CACHE_DIR"] = str(cache)
    return subprocess.run(["bash", str(ROOT / "scripts" / script), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=1800)


def test_every_script_has_a_tiny_test():
    assert set(SCRIPTS) == set(TINY_OUTPUTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_documents_tiny_and_unknown_flags_are_refused(script, tmp_path):
    shown = _run(script, "--help", cwd=tmp_path)
    assert shown.returncode == 0 and "--tiny" in shown.stdout, shown.stderr
    refused = _run(script, "--no_such_flag", cwd=tmp_path)
    assert refused.returncode == 2 and "unknown argument --no_such_flag" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_tiny_runs_from_another_directory_with_a_relative_output(script, tmp_path, cache_dir):
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    done = _run(script, "--tiny", "--output_dir", "out/tiny", cwd=elsewhere, cache=cache_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    out = elsewhere / "out" / "tiny"
    for name in TINY_OUTPUTS[script]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, f"{script} --tiny left no {name}"
    assert not (ROOT / "out").exists() and not (ROOT / "runs" / "tiny").exists()   # nothing written into the checkout
    if script == "table3_elo.sh":   # every vote cast through the arena is rated by `chatflow elo`
        votes = (out / "votes.jsonl").read_text(encoding="utf-8").splitlines()
        rated = json.loads((out / "table3.json").read_text())
        assert len(votes) == 12 and rated["votes"] == 12
        assert {m["model"] for m in rated["models"]} == {"tiny-chat-a", "tiny-chat-b"}


def test_gpu_check_documents_its_modes_and_refuses_what_it_cannot_do(tmp_path):
    """benchmarks/gpu_check.sh (its --tiny run is CI's, .ci/run): --help shows both modes, an unknown flag is refused,
    and without a GPU the full check says to use --tiny instead of failing half-way."""
    script = ROOT / "benchmarks" / "gpu_check.sh"
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")

    def run(*args):
        return subprocess.run(["bash", str(script), *args], cwd=tmp_path, env=env, text=True, capture_output=True,
                              timeout=300)

    shown = run("--help")
    assert shown.returncode == 0 and "--tiny" in shown.stdout and "--time_limit" in shown.stdout
    refused = run("--no_such_flag")
    assert refused.returncode == 2 and "unknown argument --no_such_flag" in refused.stderr
    no_gpu = run("--output", "x.json")
    assert no_gpu.returncode == 2 and "use --tiny" in no_gpu.stderr and not (tmp_path / "x.json").exists()
