"""Full and read-only disks: a clean error naming what could not be written, nothing half-written left, and a
run that can go on once there is room (issue 12, "Hangs and tracebacks"). Needs a small tmpfs (root, and a
machine that allows mounts); skipped, with the reason, elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from fault_support import (TINY_HF_CONFIG, assert_clean_error, assert_ok, cli, fill, remount, small_disk)
from test_hf_train import make_dataset
from test_preprocess import make_mixture


def _contents(mount: Path) -> list[str]:
    return sorted(p.name for p in mount.iterdir())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, spm_model) -> Path:
    return make_dataset(tmp_path_factory.mktemp("disk_data"), spm_model)


def test_preprocess_onto_a_full_disk(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    with small_disk(tmp_path / "disk", "1m") as disk:
        fill(disk, 16 << 10)
        proc = cli("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir",
                   disk / "shards", "--quiet")
        assert_clean_error(proc, "preprocess", "no space left on device (errno 28")
        assert _contents(disk) == ["filler"]                         # no partial folder, no lock
        (disk / "filler").unlink()
        assert_ok(cli("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir",
                      disk / "shards", "--quiet"))


def test_preprocess_onto_a_read_only_disk(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    with small_disk(tmp_path / "disk", "1m", readonly=True) as disk:
        proc = cli("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir",
                   disk / "shards", "--quiet")
        assert_clean_error(proc, "preprocess", "read-only file system (errno 30")


def _train_args(dataset: Path, out: Path) -> list:
    return ["train", "--dataset_dir", dataset, "--output_dir", out, "--model_config", TINY_HF_CONFIG,
            "--train_steps", "4", "--save_every", "2", "--micro_batch_size", "2", "--learning_rate", "3e-3",
            "--warmup_steps", "0", "--threads", "1", "--quiet"]


def _final(run: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(run / "final" / "model.safetensors"))


def test_a_disk_filling_up_during_training_stops_it_cleanly_and_it_resumes(tmp_path, dataset):
    straight = tmp_path / "straight"
    assert_ok(cli(*_train_args(dataset, straight)))
    checkpoint = sum(f.stat().st_size for f in (straight / "checkpoint-2").iterdir())
    with small_disk(tmp_path / "disk", str(int(checkpoint * 1.6))) as disk:    # room for one checkpoint only
        run = disk / "run"
        proc = cli(*_train_args(dataset, run))
        assert_clean_error(proc, "train", f"cannot write {run}: no space left on device")
        assert not (run / "final").exists() and not (run / "checkpoint-4" / "trainer_state.json").exists()
        remount(disk, f"size={checkpoint * 6}")
        resumed = assert_ok(cli(*_train_args(dataset, run)))
        assert "checkpoint-4 is incomplete" in resumed.stderr and "resuming from" in resumed.stderr
        expected, got = _final(straight), _final(run)
        assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_training_onto_a_read_only_disk(tmp_path, dataset):
    with small_disk(tmp_path / "disk", "1m", readonly=True) as disk:
        assert_clean_error(cli(*_train_args(dataset, disk / "run")), "train", "read-only file system")


def _hf_model(folder: Path, spm_model: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM
    from chatflow_plugin.tokenizer import write_hf_tokenizer_files

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(folder)
    write_hf_tokenizer_files(spm_model, folder, 128)
    return folder


def test_convert_and_expand_vocab_onto_a_full_disk(tmp_path, spm_model):
    hf = _hf_model(tmp_path / "hf", spm_model)
    pieces = tmp_path / "pieces.txt"
    pieces.write_text("龘\n靐\n")
    size = sum(f.stat().st_size for f in hf.iterdir())
    with small_disk(tmp_path / "disk", str(size // 2)) as disk:
        assert_clean_error(cli("convert", "hf2tp", hf, disk / "tp", "--quiet"), "convert", "no space left on device")
        assert _contents(disk) == []
        assert_clean_error(cli("expand-vocab", "--tokenizer", spm_model, "--pieces", pieces, "--output_tokenizer",
                               tmp_path / "expanded.model", "--model_path", hf, "--output_model_path",
                               disk / "expanded", "--quiet"), "expand-vocab", "no space left on device")
        assert _contents(disk) == []
        remount(disk, f"size={size * 4}")
        assert_ok(cli("convert", "hf2tp", hf, disk / "tp", "--quiet"))
        assert_ok(cli("convert", "tp2hf", disk / "tp", disk / "hf2", "--quiet"))
        assert sorted(os.listdir(disk)) == ["hf2", "tp"]
