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


# ---- one interface over both kinds ------------------------------------------------------------------------

TEXTS = MIXED + ["", "中", "  ", "émojis 😀 and ｆｕｌｌ-width！"]


@pytest.mark.parametrize("which", ["llama3", "qwen2", "sentencepiece_dir", "sentencepiece_file"])
def test_both_kinds_encode_as_autotokenizer_does(which, byte_bpe_dir, qwen2_bpe_dir, spm_model, tmp_path):
    """BOS (the tokenizer's own: LLaMA-3's <|begin_of_text|>, none for Qwen2, <s> for a converted sentencepiece
    model) + ids are AutoTokenizer's; batch, single and offset encodings agree; decode inverts."""
    from transformers import AutoTokenizer

    from chatflow_plugin.tokenizer import load_tokenizer

    if which.startswith("sentencepiece"):
        directory = tmp_path / "sp"
        directory.mkdir()
        assert write_hf_tokenizer_files(spm_model, directory) == []
    else:
        directory = {"llama3": byte_bpe_dir, "qwen2": qwen2_bpe_dir}[which]
    tok = load_tokenizer(spm_model if which == "sentencepiece_file" else directory)
    assert tok.kind == ("sentencepiece" if which == "sentencepiece_file" else "hf")
    hf = AutoTokenizer.from_pretrained(directory)
    assert (tok.bos_id, tok.eos_id, tok.vocab_size) == (hf.bos_token_id if which != "qwen2" else None,
                                                        hf.eos_token_id, len(hf))
    batch = tok.encode_batch(TEXTS)
    offsets = tok.encode_offsets_batch(TEXTS)
    for text, ids, (ids2, spans) in zip(TEXTS, batch, offsets):
        head = [tok.bos_id] if tok.bos_id is not None else []
        assert head + tok.encode(text) == hf(text)["input_ids"], text
        assert list(ids) == list(ids2) == tok.encode(text) and spans.shape == (len(ids), 2)
        assert all(0 <= a <= b <= len(text) for a, b in spans)
        if text.strip() and which != "sentencepiece_file":
            assert tok.decode(ids) == hf.decode(hf(text, add_special_tokens=False)["input_ids"])


def test_which_tokenizer_a_path_names(tmp_path, byte_bpe_dir, spm_model):
    import shutil

    from chatflow_plugin.files import sha256_file
    from chatflow_plugin.tokenizer import load_tokenizer, tokenizer_from_options

    both = tmp_path / "both"
    both.mkdir()
    write_hf_tokenizer_files(spm_model, both)            # a converted LLaMA-2: tokenizer.model + tokenizer.json
    assert load_tokenizer(both).file == both / "tokenizer.json"           # what AutoTokenizer runs
    assert load_tokenizer(both, "sentencepiece").file == both / "tokenizer.model"
    assert load_tokenizer(byte_bpe_dir / "tokenizer.json").path == byte_bpe_dir / "tokenizer.json"
    record = load_tokenizer(byte_bpe_dir).identity()
    assert record == {"kind": "hf", "path": str(byte_bpe_dir.resolve()),
                      "file": str((byte_bpe_dir / "tokenizer.json").resolve()),
                      "sha256": sha256_file(byte_bpe_dir / "tokenizer.json"), "vocab_size": record["vocab_size"],
                      "bos_id": record["bos_id"], "eos_id": record["eos_id"]}
    assert load_tokenizer(byte_bpe_dir / "tokenizer.json").differs_from(record) is None
    assert "sentencepiece" in load_tokenizer(spm_model).differs_from(record)
    assert load_tokenizer(spm_model).differs_from({"path": "old", "sha256": sha256_file(spm_model)}) is None  # no kind
    moved = dict(record, eos_id=record["bos_id"])
    assert "eos_id" in load_tokenizer(byte_bpe_dir).differs_from(moved)
    for path, kind, message in (
            (tmp_path / "nope", None, "nope: tokenizer not found"),
            (tmp_path, None, "no tokenizer in this directory .expected tokenizer.json or tokenizer.model"),
            (byte_bpe_dir, "sentencepiece", "expected tokenizer.model"),
            (byte_bpe_dir / "tokenizer.json", "sentencepiece", "a HuggingFace tokenizer.json, not a sentencepiece"),
            (spm_model, "hf", "expected a HuggingFace tokenizer.json")):
        with pytest.raises(ChatflowError, match=message):
            load_tokenizer(path, kind)
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ChatflowError, match="save it once with AutoTokenizer"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "bad" / "tokenizer.json"
    bad.parent.mkdir()
    bad.write_text('{"model": ')
    with pytest.raises(ChatflowError, match=r"bad/tokenizer.json: not a HuggingFace tokenizer.json"):
        load_tokenizer(bad.parent)
    shutil.copyfile(byte_bpe_dir / "tokenizer.json", bad)
    (bad.parent / "tokenizer_config.json").write_text('{"eos_token": "<|no such token|>"}')
    with pytest.raises(ChatflowError, match="eos_token '<.no such token.>' of tokenizer_config.json is not a token"):
        load_tokenizer(bad.parent)
    (bad.parent / "tokenizer_config.json").write_text('{"bos_token": "<|begin_of_text|>"}')
    with pytest.raises(ChatflowError, match="has no EOS token .* set eos_token"):
        load_tokenizer(bad.parent).require_eos()
    with pytest.raises(ChatflowError, match="give the tokenizer with --tokenizer PATH"):
        tokenizer_from_options("")
    assert tokenizer_from_options("", required=False) is None
    assert tokenizer_from_options(str(spm_model)).kind == "sentencepiece"
