"""Kills at random moments of preprocess, train, convert and expand-vocab, then a re-run or resume: the result
equals an uninterrupted run's, nothing half-written ever loads, and what the kill left is cleaned up (issue 12,
"A fault-injection suite"). One seeded kill per command in CI; the campaign (``-m faults``) runs
CHATFLOW_FAULT_ROUNDS (20) rounds each."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import torch

from fault_support import (TINY_HF_CONFIG, assert_ok, cli, dataset_tree, hidden_leftovers, kill_after,
                           kill_points, round_params, start, tree)
from test_hf_train import make_dataset
from test_preprocess import make_mixture

from chatflow_plugin.outputs import lock_path

ROUNDS = round_params(20)


def _no_loadable_partial(parent: Path, name: str, loadable_file: str) -> None:
    """A temporary folder a kill left never holds the file that would make it load (a kill during start-up, before
    the run made its folder, left none)."""
    if not parent.is_dir():
        return
    for leftover in hidden_leftovers(parent, name):
        if leftover.endswith(".partial"):
            assert not (parent / leftover / loadable_file).exists(), f"{leftover} holds {loadable_file}"


def _kill_then(args: list, moment: float) -> tuple[bool, str]:
    return kill_after(start(*args), moment, signal.SIGKILL)


# -- preprocess ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kill_data")
    mixture = make_mixture(root)
    with open(root / "zh.txt", "a", encoding="utf-8") as handle:
        for i in range(6000):
            handle.write(f"第{i}篇文章说的是中国的学生和老师在学校里学习和生活。\n")
    return mixture


@pytest.mark.parametrize("round_", ROUNDS)
def test_preprocess_killed_anywhere_then_rerun_equals_an_uninterrupted_run(corpus, spm_model, tmp_path, round_):
    reference = tmp_path / "reference"
    args = lambda out: ["preprocess", "--mixture", corpus, "--tokenizer", spm_model, "--output_dir", out,  # noqa
                        "--workers", "2", "--chunk_mb", "0.05", "--quiet"]
    started = time.time()
    assert_ok(cli(*args(reference)))
    duration = time.time() - started
    out = tmp_path / "shards"
    [moment] = kill_points(round_, duration, 1)
    cut, err = _kill_then(args(out), moment)
    assert "Traceback" not in err, (moment, err)
    _no_loadable_partial(tmp_path, "shards", "manifest.json")
    if out.exists():                                   # the kill came after the rename: complete
        assert dataset_tree(out) == dataset_tree(reference), moment
    else:
        assert_ok(cli(*args(out)))
    assert dataset_tree(out) == dataset_tree(reference), moment
    assert hidden_leftovers(tmp_path, "shards") == [] or not cut, hidden_leftovers(tmp_path, "shards")
    assert not lock_path(out).exists() or not cut


# -- train -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory, spm_model) -> Path:
    return make_dataset(tmp_path_factory.mktemp("kill_train"), spm_model)


def _train_args(dataset: Path, out: Path) -> list:
    return ["train", "--dataset_dir", dataset, "--output_dir", out, "--model_config", TINY_HF_CONFIG,
            "--train_steps", "6", "--save_every", "1", "--save_total_limit", "2", "--micro_batch_size", "2",
            "--learning_rate", "3e-3", "--warmup_steps", "0", "--log_every", "1", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("kill_straight") / "run"
    started = time.time()
    assert_ok(cli(*_train_args(dataset, out)))
    return out, time.time() - started


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(run / "final" / "model.safetensors"))


@pytest.mark.parametrize("round_", ROUNDS)
def test_train_killed_anywhere_then_resumed_equals_an_uninterrupted_run(dataset, straight, tmp_path, round_):
    reference, duration = straight
    out = tmp_path / "run"
    moments = kill_points(1000 + round_, duration, 1 if round_ == 0 else 2)
    for moment in moments:                               # killed, resumed and killed again
        _, err = _kill_then(_train_args(dataset, out), moment)
        assert "Traceback" not in err, (moment, err[-2000:])
        _no_loadable_partial(out, "final", "model.safetensors")
    assert_ok(cli(*_train_args(dataset, out)))
    expected, got = _weights(reference), _weights(out)
    assert all(torch.equal(expected[k], got[k]) for k in expected), moments
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "train"]
    assert steps == [1, 2, 3, 4, 5, 6], (moments, steps)                # one history, no step twice


# -- convert and expand-vocab -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, spm_model) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM
    from chatflow_plugin.tokenizer import write_hf_tokenizer_files

    root = tmp_path_factory.mktemp("kill_convert")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=600, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(root / "hf")
    write_hf_tokenizer_files(spm_model, root / "hf", 128)
    assert_ok(cli("convert", "hf2tp", root / "hf", root / "tp", "--quiet"))
    (root / "pieces.txt").write_text("".join(ch + "\n" for ch in "龘靐齉爩鱻麤"), encoding="utf-8")
    return root


@pytest.mark.parametrize("round_", ROUNDS)
def test_convert_killed_anywhere_never_leaves_a_loadable_partial_and_reruns_equal(checkpoints, tmp_path, round_):
    args = lambda out, *more: ["convert", "tp2hf", checkpoints / "tp", out, "--max_shard_size", "200KB",  # noqa
                               "--quiet", *more]
    started = time.time()
    assert_ok(cli(*args(tmp_path / "reference")))
    duration = time.time() - started
    out = tmp_path / "hf"
    [moment] = kill_points(2000 + round_, duration, 1)
    cut, err = _kill_then(args(out), moment)
    assert "Traceback" not in err
    _no_loadable_partial(tmp_path, "hf", "config.json")
    assert_ok(cli(*args(out, "--force")))                 # exists complete or not at all: --force is safe either way
    assert tree(out) == tree(tmp_path / "reference"), moment
    assert hidden_leftovers(tmp_path, "hf") == []


@pytest.mark.parametrize("round_", ROUNDS)
def test_convert_interrupted_with_ctrl_c_anywhere_says_so_in_one_line(checkpoints, tmp_path, round_):
    [moment] = kill_points(3000 + round_, 4.0, 1)
    proc = start("convert", "tp2hf", checkpoints / "tp", tmp_path / "hf", "--quiet")
    _, err = kill_after(proc, moment, signal.SIGINT)
    assert "Traceback" not in err, (moment, err[-3000:])
    assert proc.returncode in (0, 130, -signal.SIGINT), (moment, proc.returncode, err[-2000:])
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1] == "chatflow convert: interrupted"
        assert not (tmp_path / "hf").exists() and hidden_leftovers(tmp_path, "hf") == []


@pytest.mark.parametrize("round_", ROUNDS)
def test_expand_vocab_killed_anywhere_then_rerun_with_force_equals_an_uninterrupted_run(checkpoints, spm_model,
                                                                                         tmp_path, round_):
    def args(prefix: str, *more):
        return ["expand-vocab", "--tokenizer", spm_model, "--pieces", checkpoints / "pieces.txt",
                "--output_tokenizer", tmp_path / f"{prefix}.model", "--model_path", checkpoints / "hf",
                "--output_model_path", tmp_path / prefix, "--report", tmp_path / f"{prefix}.json", "--quiet", *more]
    started = time.time()
    assert_ok(cli(*args("reference")))
    duration = time.time() - started
    [moment] = kill_points(4000 + round_, duration, 1)
    _, err = _kill_then(args("expanded"), moment)
    assert "Traceback" not in err
    _no_loadable_partial(tmp_path, "expanded", "config.json")
    assert_ok(cli(*args("expanded", "--force")))
    assert tree(tmp_path / "expanded") == tree(tmp_path / "reference")
    assert (tmp_path / "expanded.model").read_bytes() == (tmp_path / "reference.model").read_bytes()
    report, expected = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("expanded", "reference"))
    assert report["added"] == expected["added"] and hidden_leftovers(tmp_path, "expanded") == []
