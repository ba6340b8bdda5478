"""Numerical equivalence with the host: an HF LLaMA converted to TencentPretrain and run by the host's own model.

Runs only with a TencentPretrain work tree (TENCENTPRETRAIN_HOME). The model is built exactly as the
host's ``scripts/generate_lm.py`` does (its ``GenerateLm``: word embedding, transformer encoder, LM output
layer, config merged by ``load_hyperparam``) and loaded with the host's ``load_model``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys

import pytest
import sentencepiece as spm
import torch

from chatflow_plugin.checkpoints.convert import convert_hf_to_tp, convert_tp_to_hf

pytestmark = pytest.mark.host


def _host_model(home, tp_dir, monkeypatch):
    # The host reads models/special_tokens_map.json relative to the working directory at import time.
    monkeypatch.chdir(home)
    monkeypatch.syspath_prepend(str(home))
    from scripts.generate_lm import GenerateLm
    from tencentpretrain.model_loader import load_model
    from tencentpretrain.opts import infer_opts, tokenizer_opts
    from tencentpretrain.utils import str2tokenizer
    from tencentpretrain.utils.config import load_hyperparam

    parser = argparse.ArgumentParser()
    infer_opts(parser)
    tokenizer_opts(parser)
    argv = ["--config_path", str(tp_dir / "config.json"), "--load_model_path", str(tp_dir / "tencentpretrain_model.bin"),
            "--spm_model_path", str(tp_dir / "tokenizer.model"), "--test_path", "unused", "--prediction_path", "unused"]
    args = parser.parse_args(argv)
    monkeypatch.setattr(sys, "argv", ["generate_lm.py"] + argv)   # load_hyperparam gives sys.argv priority
    args = load_hyperparam(args)
    args.target, args.batch_size = "lm", 1
    args.tokenizer = str2tokenizer["bert"](args)
    model = GenerateLm(args)
    state = torch.load(tp_dir / "tencentpretrain_model.bin", map_location="cpu", weights_only=True)
    assert set(state) == set(model.state_dict()), set(state) ^ set(model.state_dict())   # load_model is strict=False
    return load_model(model, str(tp_dir / "tencentpretrain_model.bin")).eval()


@pytest.mark.parametrize("kv_heads,head_dim", [(4, 8), (2, 12)])
def test_host_model_matches_hf_logits(spm_model, tmp_path, tencentpretrain_home, monkeypatch, kv_heads, head_dim):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    vocab = spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    heads = 4
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=heads * head_dim, intermediate_size=72, num_hidden_layers=3,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=64,
                      rms_norm_eps=1e-5)
    torch.manual_seed(0)
    hf = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    hf.save_pretrained(tmp_path / "hf")
    shutil.copyfile(spm_model, tmp_path / "hf" / "tokenizer.model")
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp")
    assert json.loads((tmp_path / "tp" / "config.json").read_text())["layernorm_eps"] == 1e-5
    host = _host_model(tencentpretrain_home, tmp_path / "tp", monkeypatch)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    ids = torch.tensor([[1] + sp.encode("Hello world, the model learns 语言 from data. 中文和English混合。")])
    with torch.no_grad():
        want = hf(ids).logits
        got = host(ids, torch.ones_like(ids))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    # and back: the host's weights released to HF give the same logits again
    convert_tp_to_hf(tmp_path / "tp", tmp_path / "hf2")
    with torch.no_grad():
        again = AutoModelForCausalLM.from_pretrained(tmp_path / "hf2").eval()(ids).logits
    torch.testing.assert_close(again, want, rtol=0, atol=0)
