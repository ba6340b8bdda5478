"""Tiny random models of the LLaMA family's members, with tokenizers of each kind (imported by name by tests).

* ``llama3``: LLaMA-3 style: grouped-query attention (4 query heads, 2 key/value heads), rope theta 500,000 with
  LLaMA-3.1's ``llama3`` rope scaling, untied embeddings, a byte-level BPE ``tokenizer.json`` with
  ``<|begin_of_text|>`` put in front of every text;
* ``qwen2``: Qwen2 style: q/k/v biases, tied embeddings, rope theta 1,000,000, a byte-level BPE without BOS;
* ``mistral``: Mistral style: sliding-window attention, rope theta 1,000,000, an explicit head_dim, and a
  sentencepiece byte-fallback BPE (tokenizer.model + the tokenizer.json made from it), as Mistral ships.
"""
from __future__ import annotations

import json
from pathlib import Path

COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, hidden_act="silu")
FAMILIES = {
    "llama3": dict(COMMON, model_type="llama", rope_theta=500000.0, tie_word_embeddings=False,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    "qwen2": dict(COMMON, model_type="qwen2", rope_theta=1000000.0, tie_word_embeddings=True),
    "mistral": dict(COMMON, model_type="mistral", rope_theta=1000000.0, sliding_window=16, head_dim=8,
                    tie_word_embeddings=False),
}
TOKENIZER_KIND = {"llama3": "llama3 byte-level BPE", "qwen2": "qwen2 byte-level BPE", "mistral": "sentencepiece"}


def write_model_config(family: str, path: Path) -> Path:
    """The family's config JSON, as ``chatflow train --model_config`` reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FAMILIES[family], indent=2) + "\n", encoding="utf-8")
    return path


def tiny_family_model(out: Path, family: str, tokenizer, seed: int = 0) -> Path:
    """A random model of ``family`` saved with ``tokenizer``'s HF files (a path or a Tokenizer)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from chatflow_plugin.tokenizer import as_tokenizer

    tok = as_tokenizer(tokenizer)
    raw = dict(FAMILIES[family])
    config = AutoConfig.for_model(raw.pop("model_type"), **raw, vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                                  eos_token_id=tok.eos_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    files, mismatches = tok.hf_files(config.max_position_embeddings)
    assert not mismatches, mismatches
    files.write(out)
    return out
