"""chatflow_plugin.tokenizer: sentencepiece loading with errors that name the file; HF tokenizer files."""
from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece as spm

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.tokenizer import load_sentencepiece, read_sentencepiece_proto, write_hf_tokenizer_files

from conftest import _training_text

MIXED = ["Hello world, the model learns 语言 from data.", "中文和English混合的句子。", "the teacher 说 good night",
         "数字 12345 and a question 问题", "  two  spaces\tand\nlines 😀 ｆｕｌｌ，width！"]


def test_load_sentencepiece_and_its_proto_agree(spm_model):
    sp = load_sentencepiece(spm_model)
    proto = read_sentencepiece_proto(str(spm_model))
    assert sp.get_piece_size() == len(proto.pieces) == spm.SentencePieceProcessor(model_file=str(spm_model)).get_piece_size()
    assert [p.piece for p in proto.pieces[:5]] == [sp.id_to_piece(i) for i in range(5)]


@pytest.mark.parametrize("load", [load_sentencepiece, read_sentencepiece_proto])
def test_bad_model_files_are_named(tmp_path, load):
    with pytest.raises(ChatflowError, match=rf"^{tmp_path / 'nope.model'}: sentencepiece model not found$"):
        load(tmp_path / "nope.model")
    with pytest.raises(ChatflowError, match=rf"^{tmp_path}: not a sentencepiece model \(a directory\)$"):
        load(tmp_path)
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\x00\x01 not a model \xff" * 10)
    with pytest.raises(ChatflowError, match=rf"^{junk}: not a sentencepiece model \(.+\)$"):
        load(junk)


def test_a_model_without_pieces_is_refused(tmp_path):
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(ChatflowError, match="sentencepiece model without pieces"):
        read_sentencepiece_proto(empty)


def _llama_like_spm(tmp_path: Path) -> Path:
    """Trained like LLaMA's: identity normalization, whitespace kept, byte fallback, digits split."""
    text = _training_text()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text.splitlines()), model_prefix=str(tmp_path / "llama"), vocab_size=700,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2)
    return tmp_path / "llama.model"


@pytest.mark.parametrize("kind", ["fixture_nfkc", "llama_like"])
def test_hf_tokenizer_files_match_sentencepiece(spm_model, tmp_path, kind):
    from transformers import AutoTokenizer
    model = spm_model if kind == "fixture_nfkc" else _llama_like_spm(tmp_path)
    out = tmp_path / "tok"
    out.mkdir()
    assert write_hf_tokenizer_files(model, out) == []
    assert (out / "tokenizer.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(out)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    for text in MIXED:
        ids = tokenizer(text)["input_ids"]
        assert ids == [1] + sp.encode(text), text
        assert tokenizer.decode(ids, skip_special_tokens=True) == sp.decode(sp.encode(text))
    assert tokenizer.bos_token == "<s>" and tokenizer.eos_token == "</s>"


def test_hf_tokenizer_mismatches_are_returned_and_warned(spm_model, tmp_path, monkeypatch, capsys):
    """A pipeline that disagrees with sentencepiece is reported, never silently written."""
    import chatflow_plugin.tokenizer as tokenizer

    from tokenizers import normalizers
    monkeypatch.setattr(tokenizer, "_hf_normalizer", lambda spec: normalizers.Sequence([normalizers.Lowercase()]))
    out = tmp_path / "tok"
    out.mkdir()
    mismatches = write_hf_tokenizer_files(spm_model, out, warn=True)
    assert mismatches and mismatches[0].startswith("  Hello world")
    err = capsys.readouterr().err
    assert f"warning: the HF tokenizer differs from sentencepiece on {len(mismatches)} probe text(s)" in err
    assert write_hf_tokenizer_files(spm_model, out) == mismatches and capsys.readouterr().err == ""


def test_hf_tokenizer_files_carry_the_models_context_length(spm_model, tmp_path):
    """model_max_length = the config's max_position_embeddings (transformers warns past it), 2048 without one."""
    import json

    from transformers import AutoTokenizer

    from chatflow_plugin.tokenizer import write_hf_tokenizer_files

    for name, config, explicit, expected in (("with_config", {"max_position_embeddings": 512}, None, 512),
                                             ("explicit", {"max_position_embeddings": 512}, 4096, 4096),
                                             ("no_config", None, None, 2048)):
        out = tmp_path / name
        out.mkdir()
        if config:
            (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
        write_hf_tokenizer_files(spm_model, out, explicit)
        assert AutoTokenizer.from_pretrained(out).model_max_length == expected, name
