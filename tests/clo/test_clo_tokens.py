"""Prompt/response encoding: exact template, response mask, truncation, tokenizer directory round trip."""
from __future__ import annotations

import numpy as np
import pytest
import sentencepiece as spm

from chatflow_plugin.clo.tokens import encode_prompt_response, pad_sequences
from chatflow_plugin.tokenizer import load_tokenizer
from chatflow_plugin.errors import ChatflowError
from test_clo_support import tiny_llama_dir

TEXTS = ["the model learns language from data.", "模型从数据中学习语言。", "mixed 中文 and English, 123!",
         "  two  spaces\nand a newline"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, spm_model):
    return tiny_llama_dir(tmp_path_factory.mktemp("clo_tokens"), spm_model)


def test_model_directory_tokenizer_round_trips_against_sentencepiece(model_dir, spm_model):
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    hf = AutoTokenizer.from_pretrained(model_dir)
    encoder = load_tokenizer(model_dir)
    for text in TEXTS[:3]:
        assert hf(text, add_special_tokens=False)["input_ids"] == sp.encode(text) == encoder.encode(text)
        assert encoder.decode(encoder.encode(text)) == text
    assert (encoder.bos_id, encoder.eos_id) == (sp.bos_id(), sp.eos_id())


def test_encode_prompt_response_layout(model_dir, spm_model):
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    encoder = load_tokenizer(model_dir)
    seq = encode_prompt_response(encoder, "说一条河", "长江很长。", max_length=256)
    full = "### Instruction:\n说一条河### Response: 长江很长。"
    assert seq.ids.tolist() == [sp.bos_id()] + sp.encode(full) + [sp.eos_id()] and not seq.truncated
    assert not seq.response[0] and seq.response[-1]                       # BOS prompt, EOS response
    first = int(np.argmax(seq.response))
    assert seq.response[first:].all()                                     # one contiguous response span
    assert sp.decode(seq.ids[first:-1].tolist()).strip() == "长江很长。"
    assert "Response:" in sp.decode(seq.ids[1:first].tolist())


def test_truncation_keeps_prompt_end_and_response_start(model_dir):
    encoder = load_tokenizer(model_dir)
    long_prompt = " ".join(["the model learns"] * 40)
    long_response = " ".join(["people read books"] * 40)
    seq = encode_prompt_response(encoder, long_prompt, long_response, max_length=32)
    assert len(seq.ids) == 32 and seq.truncated and seq.ids[0] == encoder.bos_id
    assert seq.response.sum() == 16 and not seq.response[:16].any()      # half the budget for the response
    short_prompt = encode_prompt_response(encoder, "q", long_response, max_length=32)
    n_prompt = int(np.argmax(short_prompt.response))
    assert len(short_prompt.ids) == 32 and short_prompt.response.sum() == 32 - n_prompt
    with pytest.raises(ChatflowError, match="at least 4"):
        encode_prompt_response(encoder, "q", "a", max_length=2)


def test_pad_sequences(model_dir):
    encoder = load_tokenizer(model_dir)
    a = encode_prompt_response(encoder, "q", "a b c d e f", 64)
    b = encode_prompt_response(encoder, "q", "a", 64)
    batch = pad_sequences([a, b], encoder.padding_id)
    width = len(a.ids)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"][1].tolist() == [1] * len(b.ids) + [0] * (width - len(b.ids))
    assert not batch["response_mask"][1, len(b.ids):].any()
    assert batch["input_ids"][1, len(b.ids):].eq(encoder.padding_id).all()


def test_encoder_errors(tmp_path):
    with pytest.raises(ChatflowError, match="no tokenizer in this directory"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(ChatflowError, match="not a sentencepiece model"):
        load_tokenizer(tmp_path)
