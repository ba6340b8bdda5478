"""Figure 2: accuracy over training tokens from a checkpoint directory or a training-loop hook."""
from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
from test_eval_benchmarks import write_ceval, write_mmlu
from test_eval_models import OracleLM, torch_single_thread, write_tiny_llama  # noqa: F401 (fixture)

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.evaluation.benchmarks import LETTERS
from chatflow_plugin.evaluation.over_training import (Curve, CurveOptions, EvalHook, eval_curve, find_checkpoints,
                                                      hf_trainer_callback, tokens_of)
from chatflow_plugin.evaluation.registry import build_prompt, load_benchmark
from chatflow_plugin.evaluation.run import EvalSettings


def cli_main(argv: list[str]) -> int:
    """`chatflow eval-curve ARGV` without the CLI's error printing: errors raise, as the tests want."""
    from chatflow_plugin.options import parse_options

    eval_curve(parse_options(CurveOptions, argv, prog="chatflow eval-curve"))
    return 0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    write_mmlu(root / "mmlu", subjects=("algebra",), n_test=4)
    write_ceval(root / "ceval", subjects=("law",), n_val=4)
    return root


def test_checkpoint_walk_writes_csv_and_png_and_resumes(tmp_path, spm_model, data_dir):
    run = tmp_path / "run"
    for i, step in enumerate((200, 100)):
        write_tiny_llama(spm_model, run / f"checkpoint-{step}", seed=i, hidden=16, layers=1)
    (run / "checkpoint-200" / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": 123456}))
    (run / "checkpoint-300").mkdir()        # no config.json: not a checkpoint (e.g. still being written)
    (run / "logs").mkdir()
    assert [s for s, _ in find_checkpoints(run)] == [100, 200]
    out = tmp_path / "fig2"
    argv = ["--run", str(run), "--data_dir", str(data_dir), "--tokens_per_step", "1000",
            "--output_prefix", str(out), "--num_fewshot", "1", "--quiet", "--device", "cpu"]
    assert cli_main(argv) == 0
    rows = list(csv.DictReader(open(f"{out}.csv", encoding="utf-8")))
    assert [(r["step"], r["tokens"]) for r in rows] == [("100", "100000"), ("200", "123456")]
    assert all(0 <= float(r["mmlu"]) <= 1 and 0 <= float(r["ceval"]) <= 1 for r in rows)
    assert open(f"{out}.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    before = open(f"{out}.csv", encoding="utf-8").read()
    assert cli_main(argv) == 0                # every step already there: nothing re-evaluated
    assert open(f"{out}.csv", encoding="utf-8").read() == before


def test_curve_reads_a_chatflow_train_run_as_it_is(tmp_path, spm_model, data_dir):
    """`chatflow train`'s checkpoint-N/ folders hold their tokenizer and tokens seen: no copying, no
    --tokens_per_step."""
    from test_hf_train import _options, make_dataset

    from chatflow_plugin.hosts.hf.train import train

    run = tmp_path / "run"
    train(_options(make_dataset(tmp_path, spm_model, n_docs=40), run, train_steps=4, save_every=2))
    out = tmp_path / "fig2"
    assert cli_main(["--run", str(run), "--data_dir", str(data_dir), "--output_prefix", str(out),
                     "--num_fewshot", "1", "--quiet", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(f"{out}.csv", encoding="utf-8")))
    assert [(r["step"], r["tokens"], r["checkpoint"]) for r in rows] == [
        ("2", "256", str(run / "checkpoint-2")), ("4", "512", str(run / "checkpoint-4"))]   # 2 x 2 x 2 x 32
    assert all(0 <= float(r["mmlu"]) <= 1 and 0 <= float(r["ceval"]) <= 1 for r in rows)


def test_checkpoint_without_tokenizer_files_is_named(tmp_path, spm_model, data_dir):
    run = tmp_path / "run"
    write_tiny_llama(spm_model, run / "final", hidden=16, layers=1)
    checkpoint = write_tiny_llama(spm_model, run / "checkpoint-10", hidden=16, layers=1)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        (checkpoint / name).unlink()
    argv = ["--run", str(run), "--data_dir", str(data_dir), "--tokens_per_step", "8",
            "--output_prefix", str(tmp_path / "fig2"), "--num_fewshot", "1", "--quiet", "--device", "cpu"]
    with pytest.raises(ChatflowError) as error:
        cli_main(argv)
    message = str(error.value)
    assert message.startswith(f"{checkpoint}: no tokenizer files (none of tokenizer.json, tokenizer.model"), message
    assert message.endswith(f"copy them from {run / 'final'}, the final model of its run"), message
    assert "--model" not in message and "sentencepiece or tiktoken" not in message


def test_missing_tokens_and_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(ChatflowError, match="not found"):
        find_checkpoints(tmp_path / "none")
    with pytest.raises(ChatflowError, match="no checkpoints"):
        find_checkpoints(tmp_path)
    (tmp_path / "c").mkdir()
    with pytest.raises(ChatflowError, match="--tokens_per_step"):
        tokens_of(tmp_path / "c", 10, 0)
    assert tokens_of(tmp_path / "c", 10, 7) == 70
    (tmp_path / "x.csv").write_text("step,tokens,mmlu\n1,2,0.5\n")
    with pytest.raises(ChatflowError, match="lacks columns"):
        Curve(tmp_path / "x", ["mmlu", "ceval"])


def test_eval_hook_every_n_steps_with_oracle_scores_100(tmp_path, hf_tokenizer_dir_for_hook, data_dir):
    tok = hf_tokenizer_dir_for_hook
    benches = [load_benchmark(n, data_dir / n, 1) for n in ("mmlu", "ceval")]
    answers = {}
    for b in benches:
        for s in b.subjects:
            for q in s.questions:
                ctx, conts = build_prompt(b.name, s, q, 1)
                answers[ctx] = conts[LETTERS.index(q.answer)]
    oracle = OracleLM(tok, answers)
    oracle.train()
    hook = EvalHook(benches, EvalSettings(num_fewshot=1, progress=False), tmp_path / "curve", every=50,
                    tokens_per_step=2048)
    assert hook(25, oracle, tok) is None and oracle.calls == 0
    assert hook(50, oracle, tok) == {"mmlu": 1.0, "ceval": 1.0}
    assert oracle.training   # training mode restored
    callback = hf_trainer_callback(hook, tok)
    callback.on_step_end(None, SimpleNamespace(global_step=100, num_input_tokens_seen=999), None, model=oracle)
    callback.on_step_end(None, SimpleNamespace(global_step=101, num_input_tokens_seen=1000), None, model=oracle)
    rows = list(csv.DictReader(open(tmp_path / "curve.csv", encoding="utf-8")))
    assert [(r["step"], r["tokens"], r["mmlu"]) for r in rows] == [("50", "102400", "1.000000"),
                                                                  ("100", "999", "1.000000")]
    with pytest.raises(ChatflowError, match="interval"):
        EvalHook(benches, EvalSettings(), tmp_path / "c2", every=0)


@pytest.fixture(scope="module")
def hf_tokenizer_dir_for_hook(spm_model, tmp_path_factory):
    from test_eval_models import write_tokenizer_dir
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(write_tokenizer_dir(spm_model, tmp_path_factory.mktemp("tok"))))
