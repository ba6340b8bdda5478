"""The model a command starts from, under faults: a pickle holding code, weights of another shape, missing weights,
impossible or huge sizes are one clean line before anything is allocated, never a traceback, a random start or the
kernel's OOM killer (issue 21, "Tracebacks where a clean error is promised", "Accepted although wrong")."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import torch

from fault_support import TINY_HF_CONFIG, assert_clean_error, cli, write_json
from test_hf_train import _options, make_dataset

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.hosts.hf.train import train

pytest.importorskip("transformers")


class Payload:
    """What a malicious checkpoint pickles: unpickling it would run code."""

    def __reduce__(self):
        return (print, ("code from the checkpoint ran",))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, spm_model) -> Path:
    return make_dataset(tmp_path_factory.mktemp("models_data"), spm_model)


def _train(dataset: Path, out: Path, *start) -> list:
    return ["train", "--dataset_dir", dataset, "--output_dir", out, *start, "--train_steps", "1",
            "--micro_batch_size", "1", "--threads", "1", "--quiet"]


def _refused(dataset: Path, out: Path, *fragments: str, **start) -> str:
    """``chatflow train`` from ``start`` (model_path=... or model_config=...) is refused in one line holding every
    fragment (the command line prints it as ``chatflow train: error: <line>``), before any output is written."""
    start.setdefault("model_config", "")
    with pytest.raises(ChatflowError) as caught:
        train(_options(dataset, out, train_steps=1, **start))
    line = str(caught.value)
    assert "\n" not in line and all(fragment in line for fragment in fragments), (fragments, line)
    assert not (out / "final").exists() and not (out / "checkpoint-1").exists()
    return line


def _hf_model(folder: Path, **sizes) -> Path:
    """A tiny LLaMA for the 600-piece test tokenizer, as ``save_pretrained`` writes it (safetensors)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = dict(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=128, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(LlamaConfig(**{**config, **sizes})).save_pretrained(folder)
    return folder


def _pickled(folder: Path, legacy: bool) -> Path:
    """``folder``'s model as one ``pytorch_model.bin`` that also pickles :class:`Payload`."""
    from safetensors.torch import load_file

    state = collections.OrderedDict(load_file(str(folder / "model.safetensors")))
    state["payload"] = Payload()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=not legacy)
    return folder / "pytorch_model.bin"


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pickled_weight_file_torch_refuses_is_one_line_naming_it(dataset, spm_model, tmp_path, legacy):
    weights = _pickled(_hf_model(tmp_path / "hf"), legacy)
    proc = cli(*_train(dataset, tmp_path / "run", "--model_path", weights.parent))
    line = assert_clean_error(proc, "train", f"{weights}: cannot be loaded: it holds a pickled",
                              "nothing in it ran")
    assert "code from the checkpoint ran" not in proc.stdout + proc.stderr, line
    if legacy:     # the lazy reader of convert and expand-vocab reads zip files without unpickling objects
        (tmp_path / "pieces.txt").write_text("龘\n")
        assert_clean_error(cli("convert", "hf2tp", weights.parent, tmp_path / "tp", "--tokenizer", spm_model,
                               "--quiet"), "convert", f"{weights}: cannot be loaded: it holds a pickled")
        assert_clean_error(cli("expand-vocab", "--base_model", spm_model, "--pieces", tmp_path / "pieces.txt",
                               "--output_model", tmp_path / "x.model", "--checkpoint", weights.parent,
                               "--output_checkpoint", tmp_path / "x", "--quiet"),
                           "expand-vocab", f"{weights}: cannot be loaded: it holds a pickled")


def test_weights_that_do_not_fit_the_config_are_refused(dataset, tmp_path):
    hf = _hf_model(tmp_path / "hf")
    config = json.loads((hf / "config.json").read_text())
    write_json(hf / "config.json", dict(config, intermediate_size=256))
    _refused(dataset, tmp_path / "run", "tensor(s) do not fit its config.json",
             "model.layers.0.mlp.down_proj.weight: (64, 128) where the model has (64, 256)", model_path=str(hf))


def test_missing_weights_are_refused_by_name_unless_allowed(dataset, tmp_path):
    from safetensors.torch import load_file, save_file

    hf = _hf_model(tmp_path / "hf")
    state = load_file(str(hf / "model.safetensors"))
    gone = [name for name in state if name.startswith("model.layers.1.")]
    state = {name: tensor for name, tensor in state.items() if name not in gone}
    state["model.layers.7.extra.weight"] = torch.zeros(2)
    save_file(state, str(hf / "model.safetensors"), metadata={"format": "pt"})
    _refused(dataset, tmp_path / "run", f"lacks {len(gone)} weight(s) the model has, which would start at random",
             "model.layers.1.", "holds 1 the model has no place for", "model.layers.7.extra.weight",
             "--allow_missing_weights", model_path=str(hf))
    train(_options(dataset, tmp_path / "run", model_config="", model_path=str(hf), train_steps=1,
                   allow_missing_weights=True))
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


def test_a_negative_size_is_a_clean_error(dataset, tmp_path):
    negative = write_json(tmp_path / "config.json", dict(json.loads(TINY_HF_CONFIG.read_text()), hidden_size=-64))
    _refused(dataset, tmp_path / "run", f"{negative}: hidden_size must be a positive integer, got -64",
             model_config=str(negative))
    hf = _hf_model(tmp_path / "hf")
    write_json(hf / "config.json", dict(json.loads((hf / "config.json").read_text()), num_hidden_layers=-2))
    _refused(dataset, tmp_path / "run", "config.json: num_hidden_layers must be a positive integer, got -2",
             model_path=str(hf))


def test_a_config_too_big_for_the_memory_is_refused_with_the_estimate(dataset, tmp_path):
    from chatflow_plugin.hosts.hf.models import memory_available

    huge = write_json(tmp_path / "huge.json", dict(json.loads(TINY_HF_CONFIG.read_text()), intermediate_size=2 ** 40,
                                                    num_hidden_layers=4))
    _refused(dataset, tmp_path / "run", f"{huge}: a model of at least", "B parameters needs about at least",
             "16 bytes each", "GiB of memory is available", model_config=str(huge))
    # just over what is available (exactly counted on the meta device): refused too, naming both figures
    available = memory_available()
    if available is not None:
        inner = int(available / 16 / (3 * 64 * 100)) + 1               # 101 layers' MLP matrices alone exceed it
        bigger = write_json(tmp_path / "bigger.json", dict(json.loads(TINY_HF_CONFIG.read_text()),
                                                           intermediate_size=inner, num_hidden_layers=101))
        line = _refused(dataset, tmp_path / "run", "B parameters needs about", "GiB of memory is available",
                        model_config=str(bigger))
        assert "at least" not in line
