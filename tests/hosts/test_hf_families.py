"""``chatflow preprocess`` + ``chatflow train`` beyond LLaMA-2: a LLaMA-3-style model with a byte-level BPE
``tokenizer.json`` from the command line, and continued training of tiny Qwen2 and Mistral models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.data.shards import ShardSet
from chatflow_plugin.files import sha256_file
from chatflow_plugin.hosts.hf.train import TrainOptions, train
from chatflow_plugin.tokenizer import write_hf_tokenizer_files
from model_families import FAMILIES, tiny_family_model, write_model_config
from test_eval_models import torch_single_thread  # noqa: F401 (autouse fixture)
from test_preprocess import EN_DOCS, make_mixture


def test_preprocess_and_train_a_byte_level_llama3_from_the_command_line(tmp_path, byte_bpe_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mixture = make_mixture(tmp_path / "data", seq_length=32)
    data, run = tmp_path / "shards", tmp_path / "run"
    assert chatflow_main(["preprocess", "--mixture", str(mixture), "--tokenizer", str(byte_bpe_dir),
                          "--output_dir", str(data), "--workers", "2", "--quiet"]) == 0
    manifest = json.loads((data / "manifest.json").read_text())
    hf = AutoTokenizer.from_pretrained(byte_bpe_dir)
    assert manifest["tokenizer"]["kind"] == "hf" and manifest["tokenizer"]["bos_id"] == hf.bos_token_id
    assert manifest["tokenizer"]["sha256"] == sha256_file(byte_bpe_dir / "tokenizer.json")
    expected = [i for doc in EN_DOCS for i in hf(doc)["input_ids"] + [hf.eos_token_id]]
    assert ShardSet(data).token_stream("en").tolist() == expected

    config = write_model_config("llama3", tmp_path / "llama3.json")
    assert chatflow_main(["train", "--dataset_dir", str(data), "--output_dir", str(run), "--model_config",
                          str(config), "--tokenizer", str(byte_bpe_dir), "--train_steps", "4", "--micro_batch_size",
                          "2", "--save_every", "2", "--log_every", "1", "--learning_rate", "3e-3", "--warmup_steps", "0",
                          "--quiet"]) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == 4 and np.isfinite(summary["train_loss"])
    final = run / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    assert model.config.num_key_value_heads == 2 and model.config.num_attention_heads == 4
    rope = model.config.rope_parameters
    assert rope["rope_type"] == "llama3" and rope["rope_theta"] == 500000.0
    assert model.get_input_embeddings().num_embeddings == len(hf) and model.config.bos_token_id == hf.bos_token_id
    for folder in (final, run / "checkpoint-2"):      # the tokenizer travels with every save, byte for byte
        assert (folder / "tokenizer.json").read_bytes() == (byte_bpe_dir / "tokenizer.json").read_bytes()
        assert AutoTokenizer.from_pretrained(folder)("中文 and English")["input_ids"] == hf("中文 and English")["input_ids"]


@pytest.fixture(scope="module")
def mistral_tokenizer(tmp_path_factory, spm_model):
    """Mistral ships a sentencepiece model with the tokenizer.json made from it."""
    out = tmp_path_factory.mktemp("mistral_tokenizer")
    assert write_hf_tokenizer_files(spm_model, out) == []
    return out


@pytest.mark.parametrize("family", ["qwen2", "mistral"])
def test_continued_training_of_qwen2_and_mistral(tmp_path, family, qwen2_bpe_dir, mistral_tokenizer):
    """The start model's directory is the tokenizer; Qwen2's tied embeddings stay tied, Mistral's sliding window
    and head_dim survive, and the run continues from the given weights."""
    from transformers import AutoModelForCausalLM

    tokenizer = qwen2_bpe_dir if family == "qwen2" else mistral_tokenizer
    start = tiny_family_model(tmp_path / "start", family, tokenizer)
    data = tmp_path / "shards"
    assert chatflow_main(["preprocess", "--mixture", str(make_mixture(tmp_path / "data", seq_length=32)),
                          "--tokenizer", str(start), "--output_dir", str(data), "--workers", "1", "--quiet"]) == 0
    summary = train(TrainOptions(dataset_dir=str(data), output_dir=str(tmp_path / "run"), model_path=str(start),
                                 train_steps=3, micro_batch_size=2, log_every=1, learning_rate=3e-3, warmup_steps=0,
                                 quiet=True))
    assert np.isfinite(summary["train_loss"])
    before = AutoModelForCausalLM.from_pretrained(start)
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")
    assert type(after) is type(before) and after.config.model_type == FAMILIES[family]["model_type"]
    assert not torch.equal(before.model.embed_tokens.weight, after.model.embed_tokens.weight)
    if family == "qwen2":
        assert after.config.tie_word_embeddings and after.lm_head.weight.data_ptr() == after.model.embed_tokens.weight.data_ptr()
        assert after.model.layers[0].self_attn.q_proj.bias is not None
        assert ShardSet(data).tokenizer["bos_id"] is None
    else:
        assert after.config.sliding_window == 16 and after.config.head_dim == 8
    assert (tmp_path / "run" / "final" / "tokenizer.json").read_bytes() == (start / "tokenizer.json").read_bytes()


def test_a_model_config_of_another_kind_is_refused(tmp_path, byte_bpe_dir):
    from chatflow_plugin.errors import ChatflowError

    data = tmp_path / "shards"
    assert chatflow_main(["preprocess", "--mixture", str(make_mixture(tmp_path / "data", seq_length=32)),
                          "--tokenizer", str(byte_bpe_dir), "--output_dir", str(data), "--workers", "1", "--quiet"]) == 0
    for config, message in (({"model_type": "t5"}, "model_type 't5' is not a causal LM"),
                            (dict(FAMILIES["llama3"], num_attention_heads=5), "not a valid llama config .*hidden size .32. is not a multiple")):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(config))
        with pytest.raises(ChatflowError, match=message):
            train(TrainOptions(dataset_dir=str(data), output_dir=str(tmp_path / "run"), model_config=str(bad),
                               train_steps=1, quiet=True))
