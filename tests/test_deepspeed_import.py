"""Commands run without ``--deepspeed`` never import DeepSpeed (accelerate would, as every Trainer is built, and
DeepSpeed prints its accelerator warning on import): checked from ``sys.modules`` of a fresh process per
command, as ``chatflow`` runs it, and on its output."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_clo_support import tiny_llama_dir, triples_dir
from test_hf_train import TINY_CONFIG, make_dataset

ROOT = Path(__file__).resolve().parents[1]
# the command as `chatflow` runs it, then what it left in sys.modules
PROBE = ("import json, sys\n"
         "from chatflow_plugin.cli import main\n"
         "code = main(sys.argv[1:])\n"
         "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'deepspeed' and sys.modules[m] is not None)\n"
         "print('PROBE ' + json.dumps({'code': code, 'deepspeed': loaded}))\n")
# what DeepSpeed prints: its accelerator warning, its name, its logger's "[time] [LEVEL] [file.py:line:function]"
DEEPSPEED_OUTPUT = re.compile(r"real_accelerator|get_accelerator|DeepSpeed|\] \[(?:INFO|WARNING)\] \[\w+\.py:\d+")

pytestmark = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                reason="DeepSpeed is not installed: nothing could import it")


def _probe(argv: list[str], cwd: Path) -> tuple[dict, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("ACCELERATE_USE_DEEPSPEED", None)
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("PROBE "):]), proc.stdout + proc.stderr


def _assert_no_deepspeed(argv: list[str], cwd: Path) -> None:
    result, output = _probe(argv, cwd)
    assert result["code"] == 0, output[-3000:]
    assert result["deepspeed"] == [], f"{argv[0]} imported {result['deepspeed'][:5]}"
    printed = DEEPSPEED_OUTPUT.search(output)
    assert printed is None, f"{argv[0]} printed {printed.group(0)!r}:\n{output[-2000:]}"


def test_train_with_heldout_passes_imports_no_deepspeed(tmp_path, spm_model):
    data = make_dataset(tmp_path, spm_model, n_docs=40)
    held = make_dataset(tmp_path, spm_model, n_docs=20, seed=5, name="held")
    _assert_no_deepspeed(["train", "--dataset_dir", str(data), "--heldout_dir", str(held), "--model_config",
                          str(TINY_CONFIG), "--output_dir", str(tmp_path / "run"), "--train_steps", "2",
                          "--micro_batch_size", "2", "--log_every", "1", "--save_every", "1", "--threads", "1"],
                         tmp_path)


def test_clo_train_imports_no_deepspeed(tmp_path, spm_model):
    model = tiny_llama_dir(tmp_path / "model", spm_model)
    data = triples_dir(tmp_path, n=6)
    _assert_no_deepspeed(["clo-train", "--model", str(model), "--data", str(data), "--output_dir", str(tmp_path / "clo"),
                          "--train_steps", "1", "--micro_batch_size", "2", "--max_length", "48", "--use_cpu",
                          "--quiet", "--warmup_ratio", "0"], tmp_path)


def test_eval_imports_no_deepspeed(tmp_path, spm_model):
    model = tiny_llama_dir(tmp_path / "model", spm_model)
    _assert_no_deepspeed(["eval", "--model", str(model), "--data_dir", str(ROOT / "corpora" / "benchmarks"),
                          "--tasks", "mmlu,ceval", "--limit", "1", "--device", "cpu", "--quiet",
                          "--output", str(tmp_path / "eval" / "results.json")], tmp_path)


@pytest.mark.slow
def test_demo_imports_no_deepspeed(tmp_path):
    """The demo's every stage: the foundation, vocabulary expansion, the five runs, the release and generation."""
    _assert_no_deepspeed(["demo", "--quick", "--foundation_steps", "2", "--train_steps", "4",
                          "--output_dir", str(tmp_path / "demo")], tmp_path)


def test_deepspeed_stays_importable_when_asked_for(monkeypatch):
    """The guard hides DeepSpeed only from commands that do not ask for it, and puts it back afterwards."""
    from chatflow_plugin.hosts.zero import deepspeed_hidden

    monkeypatch.delitem(sys.modules, "deepspeed", raising=False)
    with deepspeed_hidden(None):
        assert importlib.util.find_spec("deepspeed") is None
        with pytest.raises(ImportError):
            import deepspeed  # noqa: F401
    assert importlib.util.find_spec("deepspeed") is not None
    with deepspeed_hidden("ds_config.json"):
        assert importlib.util.find_spec("deepspeed") is not None
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")       # accelerate launch --use_deepspeed
    with deepspeed_hidden(None):
        assert importlib.util.find_spec("deepspeed") is not None
