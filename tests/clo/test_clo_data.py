"""clo-data: exactly two triples per pair, bad pairs reported and skipped, three input modes."""
from __future__ import annotations

import json
import shutil

import pytest

from chatflow_plugin.clo.triples import (BUILD_FILE, TRIPLES_FILE, CLODataOptions, InstructionPair, SkipLog,
                                      build_clo_data, build_triples, checked_pairs, instruction_text,
                                      load_triples, read_records, translate_texts)
from chatflow_plugin.errors import ChatflowError, DataError
from test_clo_support import aligned_files, write_jsonl


def test_build_triples_gives_exactly_the_two_triples_per_pair():
    pairs = [InstructionPair("q1", "a1", "问1", "答1", "x:1"), InstructionPair("q2", "a2", "问2", "答2", "x:2")]
    triples = build_triples(pairs, "en", "zh")
    assert triples == [
        {"pair": 0, "prompt_lang": "en", "prompt": "q1", "chosen": "a1", "rejected": "答1", "origin": "x:1"},
        {"pair": 0, "prompt_lang": "zh", "prompt": "问1", "chosen": "答1", "rejected": "a1", "origin": "x:1"},
        {"pair": 1, "prompt_lang": "en", "prompt": "q2", "chosen": "a2", "rejected": "答2", "origin": "x:2"},
        {"pair": 1, "prompt_lang": "zh", "prompt": "问2", "chosen": "答2", "rejected": "a2", "origin": "x:2"},
    ]


def test_instruction_text_formats():
    assert instruction_text({"instruction": "Do", "input": "this", "output": "ok"}) == ("Do\nthis", "ok")
    assert instruction_text({"instruction": "Do", "input": " ", "output": "ok"}) == ("Do", "ok")
    assert instruction_text({"instruction": "Do", "output": "ok"}) == ("Do", "ok")
    assert instruction_text({"prompt": "P", "response": "R"}) == ("P", "R")
    for bad, message in (({"instruction": "x"}, "missing field 'output'"), ([1], "JSON object"),
                         ({"conversations": []}, "multi-turn"), ({"text": "x"}, "instruction/input/output"),
                         ({"prompt": "P", "response": 3}, "must be a string")):
        with pytest.raises(DataError, match=message):
            instruction_text(bad)


def test_aligned_files_with_bad_pairs_reported_and_skipped(tmp_path, capsys):
    en = [{"instruction": "say hi", "output": "hi there"},                # good
          {"instruction": "say yes", "output": "yes"},                    # empty target response
          {"instruction": "count", "output": "1 2 3"},                    # identical response
          "not json",                                                      # unreadable
          {"instruction": "repeat the word", "output": "the word is here"},   # untranslated target
          {"instruction": "name a river", "output": "the long river"},    # good
          {"instruction": "surplus", "output": "no partner"}]             # misaligned count
    zh = [{"instruction": "打个招呼", "output": "你好"},
          {"instruction": "说是", "output": " "},
          {"instruction": "数数", "output": "1 2 3"},
          {"instruction": "坏的", "output": "记录"},
          {"instruction": "重复这个词", "output": "the word is here and there"},
          {"instruction": "说一条河", "output": "长江"}]
    en_path = tmp_path / "en.jsonl"
    en_path.write_text("".join((json.dumps(r, ensure_ascii=False) if isinstance(r, dict) else r) + "\n" for r in en),
                       encoding="utf-8")
    zh_path = write_jsonl(tmp_path / "zh.jsonl", zh)
    out = tmp_path / "triples"
    info = build_clo_data(CLODataOptions(output_dir=str(out), english=str(en_path), target=str(zh_path)))
    assert info["pairs"] == 2 and info["triples"] == 4
    assert info["skipped"] == {"empty_side": 1, "identical_response": 1, "bad_record": 1, "untranslated": 1,
                               "misaligned_count": 1}
    err = capsys.readouterr().err
    assert f"{en_path}:4: skipped (bad_record" in err and f"{en_path}:7: skipped (misaligned_count" in err
    triples = load_triples(out)
    assert [(p.source_prompt, p.target_response) for p in triples.pairs] == [("say hi", "你好"), ("name a river", "长江")]
    assert (triples.source_lang, triples.target_lang) == ("en", "zh")
    lines = (out / TRIPLES_FILE).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and json.loads(lines[3])["rejected"] == "the long river"
    # the language check can be switched off; --on_bad_record fail stops at the first bad pair
    info = build_clo_data(CLODataOptions(output_dir=str(out), english=str(en_path), target=str(zh_path),
                                         no_language_check=True, force=True))
    assert info["pairs"] == 3
    with pytest.raises(DataError, match=r"zh.jsonl:2: empty_side"):
        build_clo_data(CLODataOptions(output_dir=str(tmp_path / "t2"), english=str(en_path), target=str(zh_path),
                                      on_bad_record="fail"))
    assert not (tmp_path / "t2").exists()


def test_parallel_file_and_json_array_and_max_pairs(tmp_path):
    records = [{"en": {"instruction": f"say {i}", "output": f"number {i} here"},
                "zh": {"instruction": f"说{i}", "output": f"数字{i}在这里"}} for i in range(5)]
    records.insert(2, {"en": {"instruction": "x", "output": "y"}})   # no zh side
    path = write_jsonl(tmp_path / "par.jsonl", records)
    info = build_clo_data(CLODataOptions(output_dir=str(tmp_path / "a"), parallel=str(path)))
    assert info["pairs"] == 5 and info["skipped"] == {"bad_record": 1}
    info = build_clo_data(CLODataOptions(output_dir=str(tmp_path / "b"), parallel=str(path), max_pairs=3))
    assert info["pairs"] == 3 and len(load_triples(tmp_path / "b")) == 3
    array = tmp_path / "en.json"
    array.write_text(json.dumps([{"instruction": "a", "output": "b"}]), encoding="utf-8")
    assert [r for _, r in read_records(array)] == [{"instruction": "a", "output": "b"}]


def test_option_errors(tmp_path):
    en, zh = aligned_files(tmp_path, 3)
    cases = [(dict(english=str(en)), "exactly one of"),
             (dict(target=str(zh)), "needs --english"),
             (dict(english=str(en), target=str(zh), parallel=str(zh)), "exactly one of"),
             (dict(english=str(en), target=str(zh), target_lang="en"), "must differ"),
             (dict(english=str(tmp_path / "missing.jsonl"), target=str(zh)), "no such file")]
    for kwargs, message in cases:
        with pytest.raises(ChatflowError, match=message):
            build_clo_data(CLODataOptions(output_dir=str(tmp_path / "out"), **kwargs))
    build_clo_data(CLODataOptions(output_dir=str(tmp_path / "out"), english=str(en), target=str(zh)))
    with pytest.raises(ChatflowError, match="already exists"):
        build_clo_data(CLODataOptions(output_dir=str(tmp_path / "out"), english=str(en), target=str(zh)))
    empty = write_jsonl(tmp_path / "e.jsonl", [{"instruction": "q", "output": "a"}])
    with pytest.raises(ChatflowError, match="no usable pairs"):
        build_clo_data(CLODataOptions(output_dir=str(tmp_path / "o2"), english=str(empty), target=str(empty)))


def test_load_triples_validates(tmp_path):
    en, zh = aligned_files(tmp_path / "in", 3)
    out = tmp_path / "t"
    build_clo_data(CLODataOptions(output_dir=str(out), english=str(en), target=str(zh)))
    lines = (out / TRIPLES_FILE).read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken"
    for name, content, message in (
            ("swap", [lines[0], lines[2]], "expected pair 0 with prompt_lang 'zh'"),
            ("odd", lines[:3], "only one triple"),
            ("json", lines[:1] + ["{oops"], "not a triple"),
            ("mismatch", [lines[0], lines[1].replace('"rejected": "', '"rejected": "X')], "swap chosen and rejected")):
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(out, broken)
        (broken / TRIPLES_FILE).write_text("\n".join(content) + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=message):
            load_triples(broken)
    with pytest.raises(ChatflowError, match="not a clo-data directory"):
        load_triples(tmp_path)


def test_checked_pairs_keeps_same_script_pairs():
    log = SkipLog(stream=None)
    pair = InstructionPair("say hello", "hello friend", "di hola", "hola amigo y the end")
    assert list(checked_pairs([pair], log, "en", "es")) == [pair]   # same script: never dropped on detection


def test_cli_main(tmp_path, capsys):
    en, zh = aligned_files(tmp_path, 4)
    from chatflow_plugin.cli import main as chatflow_main

    assert chatflow_main(["clo-data", "--output_dir", str(tmp_path / "o"), "--english", str(en), "--target", str(zh)]) == 0
    assert "4 pairs -> 8 triples (en->zh)" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / BUILD_FILE).read_text())["triples_sha256"]


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory, spm_model):
    """A random MarianMT model with sentencepiece vocabularies: output is noise, plumbing is real."""
    import sentencepiece as spm
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    d = tmp_path_factory.mktemp("marian")
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    for name in ("source.spm", "target.spm"):
        shutil.copy(spm_model, d / name)
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    MarianTokenizer(str(d / "source.spm"), str(d / "target.spm"), str(d / "vocab.json")).save_pretrained(d)
    config = MarianConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                          encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                          decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=vocab["<pad>"],
                          eos_token_id=sp.eos_id(), decoder_start_token_id=vocab["<pad>"])
    MarianMTModel(config).save_pretrained(d)
    return d


def test_translate_texts_line_by_line(tiny_marian):
    texts = ["the model learns", "first line\n\nsecond line", "the model learns"]
    out = translate_texts(texts, tiny_marian, batch_size=2, num_beams=1, max_new_tokens=6, progress=False)
    assert len(out) == 3 and out[0] == out[2]              # the same line translates the same way
    assert out[1].count("\n") == 2 and out[1].split("\n")[1] == ""   # line structure kept
    with pytest.raises(ChatflowError, match="no language codes"):
        translate_texts(["x"], tiny_marian, source_code="en", progress=False)
    with pytest.raises(ChatflowError, match="not a HuggingFace model"):
        translate_texts(["x"], tiny_marian / "nowhere", progress=False)


def test_translation_mode_builds_triples(tmp_path, tiny_marian):
    en = write_jsonl(tmp_path / "en.jsonl", [{"instruction": f"say the word {w}", "output": f"{w} is a word"}
                                             for w in ("water", "city", "river", "music")])
    out = tmp_path / "t"
    info = build_clo_data(CLODataOptions(output_dir=str(out), english=str(en), translation_model=str(tiny_marian),
                                         num_beams=1, max_new_tokens=8, no_language_check=True, quiet=True))
    triples = load_triples(out)
    assert info["pairs"] + sum(info["skipped"].values()) == 4 and len(triples) == info["pairs"]
    assert info["inputs"]["translation_model"] == str(tiny_marian)
    for pair in triples.pairs:
        assert pair.source_prompt.startswith("say the word") and pair.target_response != pair.source_response
