"""The TencentPretrain host's scripts under the same faults: bad arguments are one-line errors before any model
is built, a resume never silently ignores its checkpoint or changes the run's meaning, an incomplete newest
DeepSpeed checkpoint is skipped, ``latest`` never leads outside its folder (issue 12). Needs TencentPretrain."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fault_support import ROOT, env
from test_host_tencentpretrain import CPU_DS, TINY, _free_port, corpus, dataset, home  # noqa: F401 (fixtures)

pytestmark = pytest.mark.host


def _script(script: str, args: list, cwd: Path, home: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / f"{script}.py"), *map(str, args)], cwd=cwd,
                          env=dict(env(), TENCENTPRETRAIN_HOME=str(home)), capture_output=True, text=True,
                          timeout=timeout)


def _clean(proc, script: str, fragment: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{script}.py: error: ") and fragment in line, line


def _base(dataset: Path, corpus: Path, out: Path, steps: int = 4) -> list:
    return ["--dataset_path", dataset, "--spm_model_path", corpus / "spm.model", "--config_path", TINY,
            "--output_model_path", out, "--data_processor", "dynamic_mixture", "--target", "chatflow_instruction",
            "--total_steps", steps, "--batch_size", 2, "--learning_rate", "3e-3", "--warmup_steps", 0, "--seed", 7]


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a + ["--batch_size", "0"], "--batch_size must be positive, got 0"),
    (lambda a: a + ["--total_steps", "0"], "--total_steps must be positive"),
    (lambda a: a + ["--resume_from_checkpoint", "/nonexistent"], "needs --deepspeed (without DeepSpeed the host ignores"),
    (lambda a: a + ["--start_step", "-3"], "--start_step must be 0 or more, got -3"),
    (lambda a: a + ["--start_step", "4"], "--start_step 4 continues a checkpoint: give it as --pretrained_model_path"),
    (lambda a: a + ["--pipeline_model_parallel_size", "2"], "needs --deepspeed"),
    (lambda a: a + ["--deepspeed", "--pipeline_model_parallel_size", "2"], "does not support pipeline parallelism"),
    (lambda a: [x if x != str(TINY) else "/nonexistent.json" for x in map(str, a)], "--config_path /nonexistent.json"),
    (lambda a: [x for i, x in enumerate(map(str, a)) if x != "--config_path" and (i == 0 or str(a[i - 1]) != "--config_path")],
     "models/bert/base_config.json: no such file (the host's default"),
    (lambda a: [x if x != "dynamic_mixture" else "lm" for x in map(str, a)], "is a chatflow dataset: train on it with"),
    (lambda a: a + ["--deepspeed", "--resume_from_checkpoint", "/nonexistent"], "no such directory"),
])
def test_pretrain_arguments_are_checked_before_the_model_is_built(dataset, corpus, home, tmp_path, change, fragment):
    proc = _script("pretrain", change(_base(dataset, corpus, tmp_path / "m")), corpus / "cwd", home)
    _clean(proc, "pretrain", fragment)
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def test_preprocess_processes_num_zero(corpus, home, tmp_path):
    proc = _script("preprocess", ["--mixture_config", corpus / "mixture.json", "--spm_model_path", corpus / "spm.model",
                                  "--dataset_path", tmp_path / "ds", "--data_processor", "dynamic_mixture",
                                  "--processes_num", "0"], corpus / "cwd", home)
    _clean(proc, "preprocess", "--processes_num must be positive, got 0")


def test_a_plain_restart_refuses_a_changed_learning_rate_unless_allowed(dataset, corpus, home, tmp_path):
    out = tmp_path / "m"
    done = _script("pretrain", _base(dataset, corpus, out, 4) + ["--save_checkpoint_steps", "2"], corpus / "cwd", home)
    assert done.returncode == 0, done.stderr[-3000:]
    restart = _base(dataset, corpus, out, 4) + ["--pretrained_model_path", f"{out}-2", "--start_step", "2",
                                                "--learning_rate", "1e-3"]
    _clean(_script("pretrain", restart, corpus / "cwd", home), "pretrain",
           "would change the run's meaning (learning_rate: 0.003 -> 0.001); pass --allow_change learning_rate")
    done = _script("pretrain", restart + ["--allow_change", "learning_rate"], corpus / "cwd", home)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(Path(f"{out}-4.chatflow.json").read_text())
    assert state["settings"]["learning_rate"] == 1e-3
    [entry] = state["history"]
    assert (entry["step"], entry["what"], entry["old"], entry["new"]) == (2, "learning_rate", 0.003, 0.001)


def test_a_second_pretrain_into_one_output_is_refused(dataset, corpus, home, tmp_path):
    from chatflow_plugin.outputs import output_lock

    out = tmp_path / "m"
    with output_lock(out):
        proc = _script("pretrain", _base(dataset, corpus, out), corpus / "cwd", home)
    _clean(proc, "pretrain", "is being written by process")


def _torchrun(args: list, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port",
                           str(_free_port()), str(ROOT / "pretrain.py"), *map(str, args)], cwd=cwd,
                          env=dict(env(), TENCENTPRETRAIN_HOME=str(home)), capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_deepspeed_resume_skips_an_incomplete_newest_tag_and_refuses_a_latest_outside(dataset, corpus, home, tmp_path):
    pytest.importorskip("deepspeed")
    from chatflow_plugin.hosts.tencentpretrain.batches import read_sample_log

    ds = ["--deepspeed", "--deepspeed_config", CPU_DS, "--report_steps", "4", "--save_checkpoint_steps", "4"]
    full = tmp_path / "full"
    done = _torchrun(_base(dataset, corpus, full, 12) + ds + ["--sample_log", tmp_path / "full.jsonl"], corpus / "cwd",
                     home)
    assert done.returncode == 0, done.stderr[-4000:]
    run = tmp_path / "resumed"
    run.mkdir()
    for tag in ("4", "8"):
        shutil.copytree(full / tag, run / tag)
    (run / "8" / "chatflow_state.json").unlink()                     # killed while saving step 8
    states = run / "8" / "mp_rank_00_model_states.pt"
    states.write_bytes(states.read_bytes()[:1000])
    (run / "latest").write_text("8")
    done = _torchrun(_base(dataset, corpus, run, 12) + ds + ["--resume_from_checkpoint", run,
                                                             "--sample_log", tmp_path / "resumed.jsonl"],
                     corpus / "cwd", home)
    assert done.returncode == 0, done.stderr[-4000:]
    text = done.stderr + done.stdout
    assert "tag 8 is incomplete" in text and "resuming from the complete checkpoint 4" in text
    assert "starting at step 5 = global sample 8" in text
    whole, rest = read_sample_log(tmp_path / "full.jsonl"), read_sample_log(tmp_path / "resumed.jsonl")
    assert sorted(rest) == list(range(5, 13)) and all(rest[s] == whole[s] for s in rest)
    (run / "latest").write_text("../full/12")
    refused = _torchrun(_base(dataset, corpus, run, 12) + ds + ["--resume_from_checkpoint", run], corpus / "cwd", home)
    assert refused.returncode != 0 and "does not name a folder inside" in refused.stderr
    assert "Traceback" not in refused.stderr.split("does not name")[0][-2000:]
