"""Vocabulary expansion: sentencepiece proto edits, mining, mean initialisation, checkpoint rows, CLI."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from sentencepiece import sentencepiece_model_pb2 as pb

from chatflow_plugin.files import sha256_file
from chatflow_plugin.checkpoints.tensor_io import open_state_dict
from chatflow_plugin.errors import ChatflowError, DataError
from chatflow_plugin.checkpoints.vocab import (expand_checkpoint_rows, expand_rows, expand_sentencepiece, is_symbol,
                                              mean_init_ids, mine_pieces, mine_symbols, read_piece_file)

# CJK characters absent from the fixtures' training text (conftest.ZH_CHARS), so they are new pieces.
NEW_CHARS = list("龘龍鑫犇淼焱垚燚骉羴")
MIXED = ["Hello world, the model learns 语言 from data.", "中文和English混合的句子。", "the teacher 说 good night",
         "数字 12345 and a question 问题"]
SHARED = Path("/work/shared/data")


def _sp(path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(path))


def _proto(path) -> pb.ModelProto:
    proto = pb.ModelProto()
    proto.ParseFromString(Path(path).read_bytes())
    return proto


def _old_pieces_unchanged(base, expanded) -> None:
    a, b = _proto(base), _proto(expanded)
    assert len(b.pieces) > len(a.pieces)
    for old, new in zip(a.pieces, b.pieces):
        assert (old.piece, old.score, old.type) == (new.piece, new.score, new.type)


@pytest.mark.parametrize("fixture", ["spm_model", "unigram_spm_model"])
def test_expanded_tokenizer_keeps_old_ids_adds_single_tokens_and_round_trips(fixture, request, tmp_path):
    base = request.getfixturevalue(fixture)
    new = NEW_CHARS + ["中文", "模型"]
    result = expand_sentencepiece(base, new, tmp_path / "x.model")
    _old_pieces_unchanged(base, tmp_path / "x.model")
    old_sp, new_sp = _sp(base), _sp(tmp_path / "x.model")
    assert result.base_size == old_sp.get_piece_size()
    assert result.size == new_sp.get_piece_size() == result.base_size + len(result.added)
    assert set(NEW_CHARS) <= set(result.added)
    for offset, piece in enumerate(result.added):
        assert new_sp.piece_to_id(piece) == result.base_size + offset
        ids = new_sp.encode(piece)
        assert new_sp.piece_to_id(piece) in ids and len([i for i in ids if new_sp.id_to_piece(i) != "▁"]) == 1
    # Text without new pieces tokenizes exactly as before.
    for line in MIXED + [l for l in Path(base).with_name(Path(base).stem + "_train.txt").read_text().splitlines()[:200]]:
        if not any(p in line for p in result.added):
            assert new_sp.encode(line) == old_sp.encode(line)
    # Text with new pieces: each new char one token, decode round-trips.
    text = "Hello 龘 world, 中文模型 and 龍鑫 in a sentence 犇淼."
    ids = new_sp.encode(text)
    assert new_sp.decode(ids) == text
    for ch in "龘龍鑫犇淼":
        assert new_sp.piece_to_id(ch) in ids
    assert len(ids) < len(old_sp.encode(text))


def test_expansion_is_deterministic_and_reports_skips(spm_model, tmp_path):
    present = _sp(spm_model).id_to_piece(300)
    new = ["龘", "", "   ", "龘", present, "你好世界", "龍"]
    a = expand_sentencepiece(spm_model, new, tmp_path / "a.model")
    expand_sentencepiece(spm_model, new, tmp_path / "b.model")
    assert sha256_file(tmp_path / "a.model") == sha256_file(tmp_path / "b.model")
    assert a.added == ["龘", "龍"]
    assert a.skipped["empty or whitespace-only"] == ["", "   "]
    assert a.skipped["duplicates"] == ["龘"]
    assert a.skipped["already in the model"] == [present]
    assert a.skipped["that would not tokenize as one token"] == ["你好世界"]   # BPE: no merge path to it
    assert "skipped 1 duplicates" in a.summary()


def test_bpe_new_pieces_get_top_merge_score_and_unigram_the_lowest(spm_model, unigram_spm_model, tmp_path):
    expand_sentencepiece(spm_model, ["龘"], tmp_path / "b.model")
    assert _proto(tmp_path / "b.model").pieces[-1].score == 0.0
    expand_sentencepiece(unigram_spm_model, ["龘"], tmp_path / "u.model")
    normal = [p.score for p in _proto(unigram_spm_model).pieces if p.type == 1]
    assert _proto(tmp_path / "u.model").pieces[-1].score == pytest.approx(min(normal))
    expand_sentencepiece(spm_model, ["龘"], tmp_path / "s.model", new_piece_score=-3.5)
    assert _proto(tmp_path / "s.model").pieces[-1].score == -3.5


def test_padding_adds_unused_reserved_pieces(spm_model, tmp_path):
    result = expand_sentencepiece(spm_model, NEW_CHARS, tmp_path / "p.model", pad_to_multiple=64)
    sp = _sp(tmp_path / "p.model")
    assert sp.get_piece_size() % 64 == 0 and result.reserved == sp.get_piece_size() - result.base_size - len(result.added)
    reserved = [p for p in _proto(tmp_path / "p.model").pieces[-result.reserved:]]
    assert all(p.type == pb.ModelProto.SentencePiece.UNUSED and p.piece.startswith("<reserved_") for p in reserved)
    reserved_ids = set(range(sp.get_piece_size() - result.reserved, sp.get_piece_size()))
    assert not reserved_ids & set(sp.encode("<reserved_0> <reserved_1> " + " ".join(MIXED)))
    with pytest.raises(ChatflowError, match="positive"):
        expand_sentencepiece(spm_model, NEW_CHARS, tmp_path / "q.model", pad_to_multiple=-2)


def test_read_piece_file(tmp_path):
    path = tmp_path / "pieces.txt"
    path.write_text("\ufeff龘\t123\n\n  \n# a comment\n#\nnew word\n龍\n", encoding="utf-8")
    assert read_piece_file(path) == ["龘", "", "", "new▁word", "龍"]
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="bad.txt"):
        read_piece_file(tmp_path / "bad.txt")
    with pytest.raises(ChatflowError, match="not found"):
        read_piece_file(tmp_path / "missing.txt")


def test_mine_pieces_ranks_new_characters_of_the_script(spm_model, tmp_path):
    (tmp_path / "a.txt").write_text("龘龘龘龍龍鑫 的的的的 hello ，，\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "鑫犇", "meta": {"x": ["龍"]}}, ensure_ascii=False) + "\n\n",
                                      encoding="utf-8")
    mined = mine_pieces([tmp_path / "a.txt", tmp_path / "b.jsonl"], spm_model)
    assert mined == [("龍", 3), ("龘", 3), ("鑫", 2), ("犇", 1)]   # ties by code point; 的 is already a piece
    assert mine_pieces([tmp_path / "a.txt", tmp_path / "b.jsonl"], spm_model, min_count=2, max_new_pieces=2) == \
        [("龍", 3), ("龘", 3)]
    punct = mine_pieces([tmp_path / "a.txt"], spm_model, scripts=("cjk_punct",))
    assert punct == [("，", 2)]
    with pytest.raises(ChatflowError, match="unknown script"):
        mine_pieces([tmp_path / "a.txt"], spm_model, scripts=("klingon",))
    (tmp_path / "c.json").write_text(json.dumps([{"instruction": "犇"}, "龘"], ensure_ascii=False), encoding="utf-8")
    assert mine_pieces([tmp_path / "c.json"], spm_model) == [("犇", 1), ("龘", 1)]
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:2"):
        mine_pieces([tmp_path / "bad.jsonl"], spm_model)
    import bz2
    import gzip
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress((tmp_path / "a.txt").read_bytes()))     # compressed: by content
    (tmp_path / "b.jsonl.bz2").write_bytes(bz2.compress((tmp_path / "b.jsonl").read_bytes()))
    assert mine_pieces([tmp_path / "a.txt.gz", tmp_path / "b.jsonl.bz2"], spm_model) == mined


def test_mean_init_ids_follow_the_original_tokenizer(spm_model, tmp_path):
    result = expand_sentencepiece(spm_model, ["龘", "中文"], tmp_path / "x.model",
                                  pad_to_multiple=8)
    old = _sp(spm_model)
    lists = mean_init_ids(spm_model, tmp_path / "x.model")
    assert len(lists) == len(result.added) + result.reserved
    space = old.piece_to_id("▁")
    for piece, ids in zip(result.added, lists):
        expected = old.encode(piece)
        assert expected[0] == space            # the dummy prefix's lone "▁" ...
        assert ids == expected[1:]              # ... is excluded, byte-fallback ids kept
    assert all(old.id_to_piece(i).startswith("<0x") for i in lists[result.added.index("龘")])
    assert lists[len(result.added):] == [[]] * result.reserved   # reserved pieces: fallback
    with pytest.raises(ChatflowError, match="not an expansion"):
        mean_init_ids(tmp_path / "x.model", spm_model)


def test_expand_rows_means_and_fallback():
    matrix = torch.tensor([[0.0, 2.0], [4.0, 6.0], [8.0, 10.0]], dtype=torch.bfloat16)
    out = expand_rows(matrix, [[0, 2], [1], []])
    assert out.dtype == torch.bfloat16 and out.shape == (6, 2)
    assert torch.equal(out[:3], matrix)
    assert out[3:].float().tolist() == [[4.0, 6.0], [4.0, 6.0], [4.0, 6.0]]
    # many lists, repeated ids count twice (a piece "的的" averages the same row twice), float32 means
    torch.manual_seed(1)
    big = torch.randn(50, 7)
    lists = [[int(i) for i in torch.randint(0, 50, (k % 5 + 1,))] for k in range(40)] + [[3, 3, 9], []]
    out = expand_rows(big, lists)
    for k, ids in enumerate(lists):
        want = big[ids].mean(0) if ids else big.mean(0)
        torch.testing.assert_close(out[50 + k], want, rtol=0, atol=1e-6)
    assert torch.equal(expand_rows(big, []), big)
    with pytest.raises(ChatflowError, match="outside"):
        expand_rows(big, [[50]])


def _tiny_hf(path: Path, vocab: int, tied: bool = False) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=tied)
    LlamaForCausalLM(cfg).save_pretrained(path)
    (path / "generation_config.json").write_text('{"bos_token_id": 1, "eos_token_id": 2}')


def _check_rows(old: torch.Tensor, new: torch.Tensor, lists) -> None:
    n = old.shape[0]
    assert torch.equal(new[:n], old)
    for k, ids in enumerate(lists):
        want = old[ids].float().mean(0) if ids else old.float().mean(0)
        torch.testing.assert_close(new[n + k].float(), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tied", [False, True])
def test_expand_hf_checkpoint_rows(spm_model, tmp_path, tied):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    base_size = _sp(spm_model).get_piece_size()
    _tiny_hf(tmp_path / "hf", base_size, tied)
    expand_sentencepiece(spm_model, NEW_CHARS, tmp_path / "x.model", pad_to_multiple=16)
    result = expand_checkpoint_rows(tmp_path / "hf", tmp_path / "out", spm_model, tmp_path / "x.model")
    new_size = _sp(tmp_path / "x.model").get_piece_size()
    assert (result.layout, result.old_vocab, result.new_vocab) == ("hf", base_size, new_size)
    old, new = open_state_dict(tmp_path / "hf"), open_state_dict(tmp_path / "out")
    lists = mean_init_ids(spm_model, tmp_path / "x.model")
    _check_rows(old["model.embed_tokens.weight"].read(), new["model.embed_tokens.weight"].read(), lists)
    if tied:
        assert "lm_head.weight" not in new
    else:
        _check_rows(old["lm_head.weight"].read(), new["lm_head.weight"].read(), lists)
    for name in old:
        if name not in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(old[name].read(), new[name].read())
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vocab_size"] == new_size
    assert (tmp_path / "out" / "generation_config.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.get_input_embeddings().weight.shape[0] == new_size
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    sp = _sp(tmp_path / "x.model")
    for text in MIXED + ["新字 龘龍 in text 鑫"]:
        assert tokenizer(text)["input_ids"] == [1] + sp.encode(text)
    with pytest.raises(ChatflowError, match="already exists"):
        expand_checkpoint_rows(tmp_path / "hf", tmp_path / "out", spm_model, tmp_path / "x.model")


def test_expand_tencentpretrain_rows_file_and_directory(spm_model, tmp_path):
    from chatflow_plugin.checkpoints.convert import convert_hf_to_tp
    base_size = _sp(spm_model).get_piece_size()
    _tiny_hf(tmp_path / "hf", base_size)
    convert_hf_to_tp(tmp_path / "hf", tmp_path / "tp", tokenizer=spm_model)
    expand_sentencepiece(spm_model, NEW_CHARS, tmp_path / "x.model")
    lists = mean_init_ids(spm_model, tmp_path / "x.model")
    old = open_state_dict(tmp_path / "tp")
    # a bare state-dict file -> a file
    expand_checkpoint_rows(tmp_path / "tp" / "tencentpretrain_model.bin", tmp_path / "x.bin", spm_model,
                           tmp_path / "x.model", dtype="bfloat16")
    new = torch.load(tmp_path / "x.bin", weights_only=True)
    assert new["embedding.word.embedding.weight"].dtype == torch.bfloat16
    # a converted directory -> a directory with config and the expanded tokenizer
    result = expand_checkpoint_rows(tmp_path / "tp", tmp_path / "tp2", spm_model, tmp_path / "x.model")
    assert result.matrices == ["embedding.word.embedding.weight", "target.lm.output_layer.weight"]
    new = open_state_dict(tmp_path / "tp2")
    for name in result.matrices:
        _check_rows(old[name].read(), new[name].read(), lists)
    assert (tmp_path / "tp2" / "config.json").read_text() == (tmp_path / "tp" / "config.json").read_text()
    assert sha256_file(tmp_path / "tp2" / "tokenizer.model") == sha256_file(tmp_path / "x.model")


def test_expand_rows_refuses_a_checkpoint_of_another_vocabulary(spm_model, tmp_path):
    _tiny_hf(tmp_path / "hf", 123)
    expand_sentencepiece(spm_model, NEW_CHARS, tmp_path / "x.model")
    with pytest.raises(ChatflowError, match="123 rows but the base tokenizer"):
        expand_checkpoint_rows(tmp_path / "hf", tmp_path / "out", spm_model, tmp_path / "x.model")
    assert not (tmp_path / "out").exists()


def test_cli_expands_tokenizer_and_checkpoint_in_one_run(spm_model, tmp_path, capsys):
    from chatflow_plugin.cli import main
    _tiny_hf(tmp_path / "hf", _sp(spm_model).get_piece_size())
    (tmp_path / "pieces.txt").write_text("中文\n龘\n\n", encoding="utf-8")
    (tmp_path / "corpus.txt").write_text("龍龍鑫 的 龘\n", encoding="utf-8")
    code = main(["expand-vocab", "--base_model", str(spm_model), "--output_model", str(tmp_path / "x.model"),
                 "--pieces", str(tmp_path / "pieces.txt"), "--corpus", str(tmp_path / "corpus.txt"),
                 "--pad_to_multiple", "8", "--checkpoint", str(tmp_path / "hf"),
                 "--output_checkpoint", str(tmp_path / "out"), "--report", str(tmp_path / "report.json"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "added" in out and "skipped 1 empty or whitespace-only" in out and "skipped 1 duplicates" in out
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["added"][:2] == ["中文", "龘"] and report["added"][2:] == ["龍", "鑫"]
    assert report["mined_counts"] == {"龍": 2, "鑫": 1, "龘": 1}
    assert report["size"] % 8 == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vocab_size"] == report["size"]
    assert main(["expand-vocab", "--base_model", str(spm_model), "--output_model", str(tmp_path / "y.model")]) == 2
    assert "--pieces" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "zh_corpus").is_dir(), reason="needs /work/shared/data (real data samples)")
def test_mining_real_chinese_corpus(spm_model, tmp_path):
    corpora = sorted((SHARED / "zh_corpus").glob("*.jsonl"))[:1]
    mined = mine_pieces(corpora, spm_model, max_new_pieces=300, min_count=2)
    assert len(mined) == 300 and all(n >= 2 for _, n in mined)
    result = expand_sentencepiece(spm_model, [ch for ch, _ in mined], tmp_path / "x.model")
    assert len(result.added) == 300          # single CJK characters are always reachable in byte-fallback BPE
    old, new = _sp(spm_model), _sp(tmp_path / "x.model")
    lines = [json.loads(l)["text"] for l in corpora[0].read_text(encoding="utf-8").splitlines()[:50]]
    for line in lines:
        assert new.decode(new.encode(line)) == old.decode(old.encode(line))
    assert sum(len(new.encode(l)) for l in lines) < sum(len(old.encode(l)) for l in lines)


@pytest.mark.skipif(shutil.which("chatflow") is None or shutil.which("bash") is None,
                    reason="needs the chatflow console script (pip install -e .) and bash")
def test_expand_vocab_script(spm_model, tmp_path):
    import subprocess
    _tiny_hf(tmp_path / "hf", _sp(spm_model).get_piece_size())
    shutil.copyfile(spm_model, tmp_path / "hf" / "tokenizer.model")
    (tmp_path / "zh.jsonl").write_text(json.dumps({"text": "龘龘龍鑫 的"}, ensure_ascii=False) + "\n", encoding="utf-8")
    (tmp_path / "symbols.txt").write_text("中文\n", encoding="utf-8")
    script = Path(__file__).resolve().parents[2] / "scripts" / "expand_vocab.sh"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(script), "--checkpoint", str(tmp_path / "hf"), "--output_dir", str(tmp_path / "out"),
                           "--max_new_pieces", "2", "--symbols", str(tmp_path / "symbols.txt"), "--pad_to_multiple", "4",
                           str(tmp_path / "zh.jsonl")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.expand_report.json").read_text(encoding="utf-8"))
    assert report["added"] == ["中文", "龘", "鑫"] and report["size"] % 4 == 0   # 鑫 < 龍: ties by code point
    sp = _sp(tmp_path / "out.tokenizer.model")
    assert sp.get_piece_size() == json.loads((tmp_path / "out" / "config.json").read_text())["vocab_size"]
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: scripts/expand_vocab.sh" in usage.stderr


def test_llama_style_identity_model_takes_full_width_symbols(tmp_path):
    """With LLaMA's identity normalizer (no NFKC) full-width punctuation can be added: the paper's symbols."""
    from conftest import _training_text
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_text().splitlines()), model_prefix=str(tmp_path / "llama"), vocab_size=700,
        model_type="bpe", byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        minloglevel=2)
    base = tmp_path / "llama.model"
    present = {p.piece for p in _proto(base).pieces}
    symbols = [s for s in "，！？：；“”《》、（）" if s not in present]
    result = expand_sentencepiece(base, symbols + NEW_CHARS, tmp_path / "x.model")
    assert result.added == symbols + NEW_CHARS and not result.skipped["that would not tokenize as one token"]
    old, new = _sp(base), _sp(tmp_path / "x.model")
    text = "  他说：“你好！”  龘龍\n下一行（括号）"
    assert new.decode(new.encode(text)) == text == old.decode(old.encode(text))
    assert len(new.encode(text)) < len(old.encode(text))


def test_mine_symbols_ranks_missing_non_letters_by_documents(spm_model, tmp_path):
    docs = ["温度２３℃，湿度８０％。"] * 3 + ["◆" * 50 + "要点"] + ["第一章〈序〉😊 アイ Ⅱ ％", "ｌ ｏ ％"]
    (tmp_path / "zh.jsonl").write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs),
                                       encoding="utf-8")
    mined = dict(mine_symbols([tmp_path / "zh.jsonl"], spm_model))
    # documents, not occurrences: ％ (5 documents) outranks ◆ (50 times in one); 。 is a piece of the base model;
    # letters (katakana, full-width Latin), ideographs and characters outside the BMP (emoji) are not symbols
    assert mined["％"] == 5 and mined["◆"] == 1 and mined["℃"] == mined["２"] == 3
    assert list(mined)[0] == "％" and "。" not in mined and "，" in mined
    assert not set(mined) & set("アイｌｏ😊温度要点章序第一 ")
    assert mine_symbols([tmp_path / "zh.jsonl"], spm_model, max_new_pieces=2, min_documents=3) == [("％", 5), ("℃", 3)]  # ties by code point
    assert all(is_symbol(ch) for ch in "％〈〉℃①Ⅱ︰﹑") and not any(is_symbol(ch) for ch in "中ア ａ😊")


def test_the_shipped_62_symbols_follow_their_rule():
    import unicodedata
    path = Path(__file__).resolve().parents[2] / "models" / "vocab" / "chatflow_62_symbols.txt"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ChatFlow's 62 symbols: OUR RECONSTRUCTION")
    pieces = read_piece_file(path)
    assert len(pieces) == len(set(pieces)) == 62 and all(is_symbol(p) for p in pieces)
    rows = [line.split("\t") for line in text.splitlines() if not line.startswith("#")]
    counts = [int(n) for _, n, _ in rows]
    assert counts == sorted(counts, reverse=True) and all(unicodedata.name(ch) == name for ch, _, name in rows)
    # LLaMA-2 already has these; the file's rule leaves them out
    assert not set(pieces) & set("，。、：；！？（）《》「」『』【】“”…")


def test_expect_vocab_size_refuses_another_size_and_writes_nothing(spm_model, tmp_path, capsys):
    from chatflow_plugin.cli import main
    (tmp_path / "pieces.txt").write_text("龘\n龍\n", encoding="utf-8")
    size = _sp(spm_model).get_piece_size()
    args = ["expand-vocab", "--base_model", str(spm_model), "--output_model", str(tmp_path / "x.model"),
            "--pieces", str(tmp_path / "pieces.txt")]
    assert main(args + ["--expect_vocab_size", str(size + 3)]) == 2
    err = capsys.readouterr().err
    assert f"has {size + 2} pieces, not the {size + 3} asked for" in err and not (tmp_path / "x.model").exists()
    assert main(args + ["--expect_vocab_size", str(size + 2)]) == 0 and _sp(tmp_path / "x.model").get_piece_size() == size + 2
