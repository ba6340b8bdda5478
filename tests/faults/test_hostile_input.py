"""Hostile records, numbers and names: a located error or a reported skip, never a traceback (issue 12,
"Hangs and tracebacks" and "Silently wrong")."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from fault_support import ROOT, assert_clean_error, assert_ok, cli, write_json
from test_preprocess import make_mixture

HOSTILE_RECORDS = [
    ('{"text": "a lone \\ud800 surrogate"}', "lone surrogate U+D800 at character 7"),
    ('{"text": ' + "[" * 200_000 + "]" * 200_000 + "}", "invalid JSON (nested too deeply)"),
    ('{"text": "x", "n": ' + "9" * 5000 + "}", "invalid JSON (Exceeds the limit (4300 digits)"),
    ('{"text": "bad \xff bytes"}', None),      # written as raw bytes below: invalid UTF-8
]


def _hostile_mixture(root: Path, record: str) -> tuple[Path, Path]:
    mixture = make_mixture(root)
    code = root / "code.jsonl"
    raw = record.encode("utf-8", "surrogateescape") if "\xff" not in record else record.encode("latin-1")
    with open(code, "ab") as handle:
        handle.write(raw + b"\n")
    lines = code.read_bytes().count(b"\n")
    return mixture, Path(f"{code}:{lines}")


@pytest.mark.parametrize("record, reason", HOSTILE_RECORDS, ids=["surrogate", "deep", "digits", "bytes"])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_hostile_records_are_located_and_skipped_or_fatal(tmp_path, spm_model, record, reason, workers):
    mixture, where = _hostile_mixture(tmp_path / "data", record)
    reason = reason or "invalid UTF-8"
    args = ["preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--workers", workers]
    done = assert_ok(cli(*args, "--output_dir", tmp_path / "skip"))
    assert f"skipped {where}: {reason}" in done.stdout
    sources = {s["name"]: s for s in json.loads((tmp_path / "skip" / "manifest.json").read_text())["sources"]}
    assert sources["code"]["skipped"] == 1
    assert_clean_error(cli(*args, "--output_dir", tmp_path / "fail", "--on_bad_record", "fail"), "preprocess",
                       f"{where}: {reason}")
    assert not (tmp_path / "fail").exists()


@pytest.mark.parametrize("change, message", [
    (lambda m: m["groups"][0]["sources"][0].update(name="a\u0000b"), "control characters are not allowed"),
    (lambda m: m["groups"][0]["sources"][0].update(name="x" * 300), "at most 100 characters"),
    (lambda m: m["groups"][1].update(name="..\\up"), "without '/' or '\\'"),
    (lambda m: m.update(T_grow="__1e400__"), "T_grow: expected a finite number, got inf"),
    (lambda m: [g.update(alpha=1e308, beta=1e308) for g in m["groups"]], "cannot be computed in floating point"),
    (lambda m: m.update(seed="__9" * 1 + "9" * 4999 + "__"), "invalid JSON: Exceeds the limit"),
])
def test_hostile_mixture_numbers_and_names_are_clean_errors(tmp_path, spm_model, change, message):
    mixture = make_mixture(tmp_path / "data")
    spec = json.loads(mixture.read_text())
    change(spec)
    text = json.dumps(spec).replace('"__1e400__"', "1e400").replace('"__', "").replace('__"', "")
    mixture.write_text(text, encoding="utf-8")
    assert_clean_error(cli("mixture", mixture), "mixture", message)
    assert_clean_error(cli("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir",
                           tmp_path / "out"), "preprocess", message)


def test_a_file_name_with_glob_characters_is_that_file(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    (tmp_path / "data" / "br[1].jsonl").write_bytes((tmp_path / "data" / "code.jsonl").read_bytes())
    spec = json.loads(mixture.read_text())
    spec["groups"][4]["sources"][0]["paths"] = ["br[1].jsonl"]
    mixture.write_text(json.dumps(spec))
    assert_ok(cli("preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir", tmp_path / "o",
                  "--quiet"))
    sources = {s["name"]: s for s in json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"]}
    files = sources["code"]["files"]
    assert [Path(f["path"]).name for f in files] == ["br[1].jsonl"]


def test_bad_worker_and_chunk_counts(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    args = ["preprocess", "--mixture", mixture, "--tokenizer", spm_model, "--output_dir", tmp_path / "o"]
    assert_clean_error(cli(*args, "--workers", "-1"), "preprocess", "--workers must be 0")
    assert_clean_error(cli(*args, "--chunk_mb", "0"), "preprocess", "--chunk_mb must be positive")


def _tiny_hf_model(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_random_bytes_in_a_safetensors_payload_are_refused(tmp_path, spm_model):
    hf = _tiny_hf_model(tmp_path / "hf")
    weights = hf / "model.safetensors"
    data = bytearray(weights.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    begin, end = header["model.embed_tokens.weight"]["data_offsets"]
    import random
    rng = random.Random(0)
    start = 8 + length + begin
    data[start:start + 4096] = bytes(rng.randrange(256) for _ in range(4096))   # the header is intact
    weights.write_bytes(bytes(data))
    proc = cli("convert", "hf2tp", hf, tmp_path / "tp", "--tokenizer", spm_model, "--quiet")
    assert_clean_error(proc, "convert", "tensor model.embed_tokens.weight holds", "damaged")
    assert not (tmp_path / "tp").exists() and [p.name for p in tmp_path.iterdir()] == ["hf"]


def test_a_deepspeed_latest_leading_outside_its_folder_is_refused(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (tmp_path / "elsewhere" / "9").mkdir(parents=True)
    (ckpt / "latest").write_text("../elsewhere/9")
    write_json(ckpt / "config.json", {})
    proc = cli("convert", "tp2hf", ckpt, tmp_path / "hf", "--tp_config", ROOT / "models" / "llama2" / "tiny_config.json")
    assert_clean_error(proc, "convert", "checkpoint tag '../elsewhere/9' does not name a folder inside")
    from chatflow_plugin.errors import ChatflowError
    from chatflow_plugin.hosts.tencentpretrain.progress import resume_tag
    with pytest.raises(ChatflowError, match="does not name a folder inside"):
        resume_tag(ckpt)
    (ckpt / "latest").write_text("/abs/9")
    with pytest.raises(ChatflowError, match="does not name a folder inside"):
        resume_tag(ckpt)


def test_gaokao_items_without_a_numeric_score_are_reported_not_counted_as_one_point(tmp_path):
    from chatflow_plugin.evaluation.benchmarks import read_gaokao

    root = tmp_path / "gaokao"
    (root / "Objective_Questions").mkdir(parents=True)
    write_json(root / "Obj_Prompt.json", {"examples": [{"type": "single_choice", "keyword": "2010-2022_Math_I_MCQs",
                                                         "prefix_prompt": "请回答"}]})
    items = [{"question": f"题{i} A. 1 B. 2 C. 3 D. 4", "answer": ["A"], "score": score, "index": i}
             for i, score in enumerate([5, None, "five", -1, float("nan"), True, "5"])]
    items[1].pop("score")
    (root / "Objective_Questions" / "2010-2022_Math_I_MCQs.json").write_text(
        json.dumps({"keywords": "2010-2022_Math_I_MCQs", "example": items}).replace("NaN", "NaN"), encoding="utf-8")
    bench = read_gaokao(root, num_fewshot=0)
    points = [q.points for s in bench.subjects for q in s.questions]
    assert points == [5.0, 5.0]                                            # 5 and "5"
    reasons = [s.reason for s in bench.skipped]
    assert len(reasons) == 5 and all("score" in r for r in reasons), reasons
    assert all("#example[" in s.location for s in bench.skipped)


def test_a_sequence_length_no_model_uses_or_longer_than_the_data_is_refused(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    args = ["preprocess", "--mixture", mixture, "--spm_model_path", spm_model, "--output_dir", tmp_path / "out"]
    assert_clean_error(cli(*args, "--seq_length", "1000000000"), "preprocess",
                       "--seq_length must be a positive integer up to 1,048,576", "got 1,000,000,000")
    spec = json.loads(mixture.read_text())
    mixture.write_text(json.dumps(dict(spec, seq_length=10 ** 9)))
    assert_clean_error(cli("mixture", mixture), "mixture", "seq_length: expected a positive integer up to 1,048,576")
    mixture.write_text(json.dumps(spec))
    line = assert_clean_error(cli(*args, "--seq_length", "100000"), "preprocess",
                              "seq_length 100000 is longer than any source", "every window would be mostly padding")
    assert [p.name for p in tmp_path.iterdir()] == ["data"], line              # no padding written, nothing left
