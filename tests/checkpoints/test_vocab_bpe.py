"""Vocabulary expansion of byte-level BPE tokenizers (LLaMA-3 / Qwen2 style tokenizer.json), checked independently
of the code under test: encodings with the ``tokenizers`` library and ``AutoTokenizer``, rows with plain torch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from chatflow_plugin.checkpoints.tensor_io import open_state_dict
from chatflow_plugin.checkpoints.vocab import (expand_byte_bpe, expand_checkpoint_rows, expand_tokenizer,
                                               mean_init_ids, mine_pieces)
from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.tokenizer import load_tokenizer, write_hf_tokenizer_files
from model_families import tiny_family_model

# Chinese text with characters the fixtures' tokenizers never saw (conftest.ZH_CHARS is their Chinese)
CORPUS = ["龘龍鑫犇淼焱垚燚骉羴，龍在天上飞。", "鑫和淼是名字：龘龘龘。", "一个新的句子里有犇和骉。"]
UNSEEN = list("龘龍鑫犇淼焱垚燚骉羴")
PLAIN = ["the model learns language from data.", "学生问老师问题。", "the teacher 说 good night 12345",
         "  two  spaces\tand\nlines"]


def _backend(path: Path):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(path / "tokenizer.json"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "zh.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in CORPUS), encoding="utf-8")
    return path


@pytest.mark.parametrize("strategy", ["added_tokens", "merges"])
def test_cli_expands_a_llama3_tokenizer_and_model_with_chinese_characters(tmp_path, byte_bpe_dir, corpus, strategy):
    """The issue's check: new Chinese characters are produced as single tokens, inside text too; every new row is the
    mean of the ORIGINAL model's rows of the ids the ORIGINAL tokenizer splits the character into; old ids, old rows
    and the encoding of text without new characters are unchanged."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = tiny_family_model(tmp_path / "llama3", "llama3", byte_bpe_dir)
    out_tok, out_model = tmp_path / "tokenizer", tmp_path / "expanded"
    argv = ["expand-vocab", "--tokenizer", str(model), "--output_tokenizer", str(out_tok), "--corpus", str(corpus),
            "--language", "zh", "--strategy", strategy, "--model_path", str(model), "--output_model_path",
            str(out_model), "--report", str(tmp_path / "report.json"), "--quiet"]
    assert chatflow_main(argv) == 0
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    added = report["added"]
    assert report["tokenizer_kind"] == "hf" and report["strategy"] == strategy
    assert set(UNSEEN) <= set(report["mined_counts"])
    # added tokens take every mined character; one merge reaches those this tokenizer splits into two tokens (焱)
    assert set(UNSEEN) <= set(added) if strategy == "added_tokens" else "焱" in added

    old, new = _backend(byte_bpe_dir), _backend(out_model)
    base_size = old.get_vocab_size(with_added_tokens=True)
    assert new.get_vocab_size(with_added_tokens=True) == base_size + len(added)
    assert all(new.token_to_id(token) == index for token, index in old.get_vocab(with_added_tokens=True).items())
    hf = AutoTokenizer.from_pretrained(out_model)
    for offset, piece in enumerate(added):
        assert new.encode(piece, add_special_tokens=False).ids == [base_size + offset]
        assert hf(piece, add_special_tokens=False)["input_ids"] == [base_size + offset]
    for text in CORPUS:                         # produced inside running text, and decoded back exactly
        ids = hf(text)["input_ids"]
        assert {base_size + added.index(ch) for ch in set(text) & set(added)} <= set(ids)
        assert hf.decode(ids, skip_special_tokens=True) == text
    for text in PLAIN:                          # no new characters: the same ids as before
        assert new.encode(text).ids == old.encode(text).ids

    before, after = open_state_dict(model), open_state_dict(out_model)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        a, b = before[name].read(), after[name].read()
        assert b.shape[0] == base_size + len(added) and torch.equal(b[:base_size], a)
        for offset, piece in enumerate(added):
            original = old.encode(piece, add_special_tokens=False).ids     # byte tokens included
            torch.testing.assert_close(b[base_size + offset], a[original].mean(0), rtol=0, atol=1e-6)
    assert json.loads((out_model / "config.json").read_text())["vocab_size"] == base_size + len(added)
    loaded = AutoModelForCausalLM.from_pretrained(out_model)
    assert loaded.get_input_embeddings().num_embeddings == len(hf)
    assert not (out_model / "tokenizer.model").exists() and (out_model / "tokenizer.json").read_bytes() == \
        (out_tok / "tokenizer.json").read_bytes()


def test_merges_keep_the_bpe_model_and_skip_what_one_merge_cannot_reach(tmp_path, byte_bpe_dir):
    """Merges: a new piece is one vocabulary entry with one merge of two old tokens, placed before the old merges; a
    word becomes reachable through a new character in a second round; a character the tokenizer splits into three
    single bytes is reported, not added half-way (an intermediate merge would change other characters)."""
    old = _backend(byte_bpe_dir)
    assert [len(old.encode(p, add_special_tokens=False).ids) for p in ("焱", "的学", "焱的", "龘")] == [2, 2, 3, 3]
    result = expand_byte_bpe(byte_bpe_dir, ["焱", "的学", "焱的", "龘"], tmp_path / "m", strategy="merges")
    assert result.added == ["焱", "的学", "焱的"] and result.skipped["that would not tokenize as one token"] == ["龘"]
    data = json.loads((tmp_path / "m" / "tokenizer.json").read_text(encoding="utf-8"))
    vocab, merges = data["model"]["vocab"], data["model"]["merges"]
    old_merges = json.loads((byte_bpe_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    assert merges[3:] == old_merges
    base_size = old.get_vocab_size(with_added_tokens=True)
    new = _backend(tmp_path / "m")
    for offset, piece in enumerate(result.added):
        assert vocab["".join(merges[offset])] == base_size + offset
        assert new.encode(piece, add_special_tokens=False).ids == [base_size + offset]
    assert merges[2] == [new.id_to_token(base_size), old.encode("的", add_special_tokens=False).tokens[0]]
    for text in PLAIN:
        assert new.encode(text).ids == old.encode(text).ids
    special = old.token_to_id("<|begin_of_text|>")       # kept although the BPE vocabulary grew past it
    assert new.token_to_id("<|begin_of_text|>") == special and new.encode("a").ids[0] == special


def test_qwen2_tied_and_padded_embeddings(tmp_path, qwen2_bpe_dir):
    """Qwen2 pads its embedding beyond the tokenizer and ties it to the output: new ids take the unused rows first,
    the matrix grows only past its end, and there is one matrix to grow."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = load_tokenizer(qwen2_bpe_dir)
    config = AutoConfig.for_model("qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=tok.vocab_size + 4,
                                  tie_word_embeddings=True, eos_token_id=tok.eos_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "qwen")
    tok.hf_files(256)[0].write(tmp_path / "qwen")
    expanded = expand_tokenizer(tmp_path / "qwen", UNSEEN, tmp_path / "tok")
    rows = expand_checkpoint_rows(tmp_path / "qwen", tmp_path / "out", tmp_path / "qwen", tmp_path / "tok")
    assert rows.matrices == ["model.embed_tokens.weight"] and rows.reused_rows == 4
    assert rows.new_vocab == tok.vocab_size + len(expanded.added) > tok.vocab_size + 4
    a = open_state_dict(tmp_path / "qwen")["model.embed_tokens.weight"].read()
    b = open_state_dict(tmp_path / "out")["model.embed_tokens.weight"].read()
    assert "lm_head.weight" not in open_state_dict(tmp_path / "out")
    assert torch.equal(b[:tok.vocab_size], a[:tok.vocab_size])
    for offset, ids in enumerate(mean_init_ids(tmp_path / "qwen", tmp_path / "tok")):
        torch.testing.assert_close(b[tok.vocab_size + offset], a[ids].mean(0), rtol=0, atol=1e-6)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_mining_padding_and_clear_errors(tmp_path, byte_bpe_dir, spm_model, corpus):
    mined = dict(mine_pieces([corpus], byte_bpe_dir, scripts=("cjk",)))
    old = _backend(byte_bpe_dir)
    assert set(UNSEEN) <= set(mined)
    assert all(len(old.encode(ch, add_special_tokens=False).ids) > 1 for ch in mined)   # single tokens are not mined
    padded = expand_tokenizer(byte_bpe_dir, UNSEEN, tmp_path / "pad", pad_to_multiple=64)
    assert padded.size % 64 == 0 and padded.reserved == padded.size - padded.base_size - len(padded.added)
    assert mean_init_ids(byte_bpe_dir, tmp_path / "pad")[len(padded.added):] == [[]] * padded.reserved
    with pytest.raises(ChatflowError, match="already exists"):
        expand_tokenizer(byte_bpe_dir, UNSEEN, tmp_path / "pad")
    sp_dir = tmp_path / "llama2"
    sp_dir.mkdir()
    write_hf_tokenizer_files(spm_model, sp_dir)
    (sp_dir / "tokenizer.model").unlink()
    with pytest.raises(ChatflowError, match="byte-level BPE .* without a ByteLevel pre-tokenizer"):
        expand_tokenizer(sp_dir, UNSEEN, tmp_path / "x")
    write_hf_tokenizer_files(spm_model, sp_dir)
    with pytest.raises(ChatflowError, match="expand that one .--tokenizer .*tokenizer.model"):
        expand_tokenizer(sp_dir, UNSEEN, tmp_path / "x")
    with pytest.raises(ChatflowError, match="--strategy .* is a sentencepiece model"):
        expand_tokenizer(spm_model, UNSEEN, tmp_path / "x.model", strategy="merges")
    with pytest.raises(ChatflowError, match="is not an expansion"):
        mean_init_ids(tmp_path / "pad", byte_bpe_dir)
