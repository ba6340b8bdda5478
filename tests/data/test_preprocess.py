import contextlib
import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from chatflow_plugin import cli
from chatflow_plugin.data.batches import MixtureDataset
from chatflow_plugin.errors import ChatflowError, DataError
from chatflow_plugin.data.formats import render
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.report import source_report
from chatflow_plugin.data.shards import MANIFEST, ShardSet

EN_DOCS = [f"Document {i} talks about the river and the mountain near the school." * (1 + i % 3) for i in range(40)]
ZH_DOCS = [f"第{i}篇文章说的是中国的学生和老师在学校里学习。" * (1 + i % 4) for i in range(40)]
PAIRS = [{"en": f"The student reads book {i}.", "zh": f"学生读第{i}本书。"} for i in range(30)]
ALPACA = [{"instruction": f"Give the number after {i}.", "input": "" if i % 2 else "digits only",
           "output": f"The answer is {i + 1}."} for i in range(20)]
CHATS = [{"conversations": [{"from": "human", "value": f"你好{i}"}, {"from": "gpt", "value": "你好，有什么可以帮你？"},
                            {"from": "human", "value": "说一个数字"}, {"from": "gpt", "value": f"{i}"}]} for i in range(10)]
CODE = [{"text": f"def f{i}(x):\n    return x + {i}\n"} for i in range(15)]


def write_jsonl(path: Path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def make_mixture(root: Path, seq_length=64, extra_sources=None):
    write_jsonl(root / "en.jsonl", [{"text": d} for d in EN_DOCS])
    (root / "zh.txt").write_text("\n".join(ZH_DOCS) + "\n", encoding="utf-8")
    write_jsonl(root / "pairs.jsonl", PAIRS[:20])
    (root / "pairs.tsv").write_text("".join(f"{p['en']}\t{p['zh']}\n" for p in PAIRS[20:]), encoding="utf-8")
    write_jsonl(root / "alpaca.jsonl", ALPACA)
    write_jsonl(root / "chats.jsonl", CHATS)
    write_jsonl(root / "code.jsonl", CODE)
    spec = {
        "name": "test", "seq_length": seq_length, "T_grow": 200, "seed": 3,
        "groups": [
            {"name": "en_corpus", "alpha": 0.6, "beta": 0.15, "sources": [{"name": "en", "kind": "corpus", "paths": ["en.jsonl"]}]},
            {"name": "zh_corpus", "alpha": 0.05, "beta": 0.5, "sources": [{"name": "zh", "kind": "corpus", "paths": ["zh.txt"]}]},
            {"name": "parallel", "alpha": 0.25, "beta": 0.0, "sources": [{"name": "pairs", "kind": "parallel", "paths": ["pairs.jsonl", "pairs.tsv"]}]},
            {"name": "inst", "alpha": 0.05, "beta": 0.3, "sources": [
                {"name": "alpaca", "kind": "instruction", "paths": ["alpaca.jsonl"]},
                {"name": "chats", "kind": "instruction", "paths": ["chats.jsonl"]}]},
            {"name": "code", "alpha": 0.05, "beta": 0.05, "sources": [{"name": "code", "kind": "code", "paths": ["code.jsonl"]}]},
        ],
    }
    for group, source in extra_sources or []:
        next(g for g in spec["groups"] if g["name"] == group)["sources"].append(source)
    path = root / "mixture.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def expected_stream(sp, kind, records, **kw):
    out = []
    for r in records:
        text, _ = render(kind, r, **kw)
        out += [sp.bos_id()] + sp.encode(text) + [sp.eos_id()]
    return np.array(out)


@pytest.fixture
def built(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    out = tmp_path / "shards"
    manifest = preprocess(load_mixture(mixture), spm_model, out, workers=1)
    return mixture, out, manifest


def test_windows_concatenate_to_each_sources_token_stream(built, spm_model):
    _, out, manifest = built
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    shards = ShardSet(out, tokenizer=spm_model)
    assert shards.dtype == np.uint16
    np.testing.assert_array_equal(shards.token_stream("en"), expected_stream(sp, "corpus", [{"text": d} for d in EN_DOCS]))
    np.testing.assert_array_equal(shards.token_stream("zh"), expected_stream(sp, "corpus", [{"text": d} for d in ZH_DOCS]))
    np.testing.assert_array_equal(shards.token_stream("pairs"), expected_stream(sp, "parallel", PAIRS))
    np.testing.assert_array_equal(shards.token_stream("alpaca"), expected_stream(sp, "instruction", ALPACA))
    np.testing.assert_array_equal(shards.token_stream("chats"), expected_stream(sp, "instruction", CHATS))
    for info in manifest["sources"]:
        shard = shards.by_name[info["name"]]
        assert shard.tokens.shape == (info["windows"], 65)
        assert info["windows"] * 65 - info["pad_tokens"] == info["tokens"]
        assert 0 <= info["pad_tokens"] < 65
        assert info["skipped"] == 0


def test_prompt_mask_marks_everything_but_responses(built, spm_model):
    _, out, _ = built
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    shards = ShardSet(out)
    shard = shards.by_name["alpaca"]
    stream = shards.token_stream("alpaca")
    prompt = np.asarray(shard.mask).reshape(-1)[: len(stream)] == 1
    # split the stream into documents at BOS and check the first few
    starts = np.flatnonzero(stream == sp.bos_id())
    for doc, (a, b) in enumerate(zip(starts[:5], starts[1:6])):
        ids, is_prompt = stream[a:b], prompt[a:b]
        response = [int(x) for x, p in zip(ids, is_prompt) if not p and x != sp.eos_id()]
        assert sp.decode(response).strip() == ALPACA[doc]["output"]
        assert ids[-1] == sp.eos_id() and not is_prompt[-1]          # EOS is learned
        assert is_prompt[0]                                         # BOS is context
    assert shards.by_name["en"].mask is None


def test_chats_mask_covers_every_bot_answer(built, spm_model):
    _, out, _ = built
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    shards = ShardSet(out)
    stream = shards.token_stream("chats")
    prompt = np.asarray(shards.by_name["chats"].mask).reshape(-1)[: len(stream)] == 1
    first_doc_end = int(np.flatnonzero(stream == sp.eos_id())[0]) + 1
    response = [int(x) for x, p in zip(stream[:first_doc_end], prompt[:first_doc_end]) if not p and x != sp.eos_id()]
    # the test tokenizer normalises with NFKC (full-width punctuation becomes ASCII)
    assert sp.decode(response).replace(" ", "") == unicodedata.normalize("NFKC", "你好，有什么可以帮你？0")


def test_output_is_identical_for_any_number_of_workers_and_chunks(tmp_path, spm_model, built):
    mixture, out1, _ = built
    out2 = tmp_path / "shards2"
    preprocess(load_mixture(mixture), spm_model, out2, workers=2, chunk_bytes=200)
    m1 = json.loads((out1 / MANIFEST).read_text())
    m2 = json.loads((out2 / MANIFEST).read_text())
    for a, b in zip(m1["sources"], m2["sources"]):
        assert a["tokens"] == b["tokens"] and a["windows"] == b["windows"]
        assert (out1 / a["tokens_file"]).read_bytes() == (out2 / b["tokens_file"]).read_bytes()


def test_another_tokenizer_is_refused(built, tmp_path):
    from conftest import train_spm

    _, out, _ = built
    other = train_spm(tmp_path / "other", vocab_size=650)
    with pytest.raises(ChatflowError, match="another tokenizer"):
        ShardSet(out, tokenizer=other)


def test_existing_output_needs_force(built, spm_model):
    mixture, out, _ = built
    with pytest.raises(ChatflowError, match="already exists"):
        preprocess(load_mixture(mixture), spm_model, out, workers=1)
    preprocess(load_mixture(mixture), spm_model, out, workers=1, force=True)
    ShardSet(out)


def test_incomplete_or_damaged_datasets_do_not_load(built, tmp_path):
    _, out, manifest = built
    tokens = out / manifest["sources"][0]["tokens_file"]
    data = tokens.read_bytes()
    tokens.write_bytes(data[:-2])
    with pytest.raises(ChatflowError, match="damaged"):
        ShardSet(out)
    (out / MANIFEST).unlink()
    with pytest.raises(ChatflowError, match="manifest.json is missing"):
        ShardSet(out)


BAD_LINES = [
    (b'{"text": "fine one"}\n', None),
    (b'{"text": "broken"\n', "invalid JSON"),
    (b'\n', "blank line"),
    (b'{"txt": "wrong field"}\n', "missing field 'text'"),
    (b'{"text": "bad \xff\xfe bytes"}\n', "invalid UTF-8"),
    (b'{"text": "fine two"}\n', None),
]


def bad_mixture(tmp_path):
    root = tmp_path / "data"
    mixture = make_mixture(root, extra_sources=[("en_corpus", {"name": "messy", "kind": "corpus",
                                                               "paths": ["messy.jsonl", "empty.jsonl"]})])
    (root / "messy.jsonl").write_bytes(b"".join(line for line, _ in BAD_LINES))
    (root / "empty.jsonl").write_bytes(b"")
    return mixture


def test_bad_records_are_skipped_counted_and_located(tmp_path, spm_model):
    mixture = bad_mixture(tmp_path)
    manifest = preprocess(load_mixture(mixture), spm_model, tmp_path / "out", workers=1)
    messy = next(s for s in manifest["sources"] if s["name"] == "messy")
    assert messy["records"] == 2 and messy["skipped"] == 4
    expected = [f"messy.jsonl:{i + 1}: {msg}" for i, (_, msg) in enumerate(BAD_LINES) if msg]
    for want, got in zip(expected, messy["first_errors"]):
        assert want in got
    assert messy["empty_files"] and messy["empty_files"][0].endswith("empty.jsonl")


@pytest.mark.parametrize("workers", [1, 2])
def test_fail_mode_stops_at_the_first_bad_record_and_writes_nothing(tmp_path, spm_model, workers):
    mixture = bad_mixture(tmp_path)
    (tmp_path / "data" / "empty.jsonl").write_text('{"text": "now not empty"}\n')
    with pytest.raises(DataError, match=r"messy.jsonl:2: invalid JSON"):
        preprocess(load_mixture(mixture), spm_model, tmp_path / "out", workers=workers, on_bad_record="fail",
                   chunk_bytes=16)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]   # no temporary left behind


def test_fail_mode_rejects_empty_files(tmp_path, spm_model):
    mixture = bad_mixture(tmp_path)
    (tmp_path / "data" / "messy.jsonl").write_text('{"text": "ok"}\n')
    with pytest.raises(ChatflowError, match="empty.jsonl: empty file"):
        preprocess(load_mixture(mixture), spm_model, tmp_path / "out", workers=1, on_bad_record="fail")


def test_a_source_without_usable_records_is_an_error(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data", extra_sources=[("code", {"name": "junk", "kind": "code", "paths": ["junk.jsonl"]})])
    (tmp_path / "data" / "junk.jsonl").write_text("not json\n\n")
    with pytest.raises(ChatflowError, match=r"source 'junk' has no usable records .*junk.jsonl:1: invalid JSON"):
        preprocess(load_mixture(mixture), spm_model, tmp_path / "out", workers=1)


def test_bad_tokenizer_path(tmp_path):
    mixture = make_mixture(tmp_path / "data")
    with pytest.raises(ChatflowError, match="nope.model: tokenizer not found"):
        preprocess(load_mixture(mixture), tmp_path / "nope.model", tmp_path / "out")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a model")
    with pytest.raises(ChatflowError, match="not a sentencepiece model"):
        preprocess(load_mixture(mixture), junk, tmp_path / "out")


def test_cli_preprocess_and_clean_errors(tmp_path, spm_model, capsys):
    mixture = make_mixture(tmp_path / "data")
    out = tmp_path / "cli_out"
    code = cli.main(["preprocess", "--mixture", str(mixture), "--tokenizer", str(spm_model),
                     "--output_dir", str(out), "--seq_length", "32", "--workers", "1", "--quiet"])
    assert code == 0
    assert ShardSet(out).seq_length == 32
    code = cli.main(["preprocess", "--mixture", str(mixture), "--spm_model_path", str(spm_model),
                     "--output_dir", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# batches


def test_batches_follow_the_sampler_and_mask_padding(built):
    _, out, manifest = built
    ds = MixtureDataset(ShardSet(out))
    batch = ds.batch(np.arange(64))
    assert batch["tokens"].shape == (64, 65) and batch["loss_mask"].shape == (64, 64)
    draw = ds.sampler.draw(np.arange(64))
    np.testing.assert_array_equal(batch["group"], draw.group)
    for i in range(64):
        shard = ds.source_shards[draw.source[i]]
        np.testing.assert_array_equal(batch["tokens"][i], shard.tokens[draw.row[i]])
        last = draw.row[i] == shard.windows - 1
        n_pad = shard.pad_tokens if last else 0
        assert batch["loss_mask"][i].sum() == 64 - n_pad
    # early samples are English-heavy per the schedule
    assert (batch["group"] == 0).mean() > 0.4


def test_response_only_loss_drops_prompts(built):
    _, out, _ = built
    shards = ShardSet(out)
    full = MixtureDataset(shards)
    resp = MixtureDataset(shards, response_only=True)
    t = np.arange(400)
    a, b = full.batch(t), resp.batch(t)
    inst = np.isin(a["source"], [full.source_names.index("alpaca"), full.source_names.index("chats")])
    assert inst.any()
    assert (b["loss_mask"][inst].sum() < a["loss_mask"][inst].sum())
    np.testing.assert_array_equal(a["loss_mask"][~inst], b["loss_mask"][~inst])


def test_dataset_accepts_a_compatible_mixture_override(built):
    mixture, out, _ = built
    spec = load_mixture(mixture)
    ds = MixtureDataset(ShardSet(out), spec=spec, seed=11)
    assert ds.spec.seed == 11
    data = json.loads(Path(mixture).read_text())
    data["groups"] = data["groups"][:-1]            # a subset of the dataset's sources, regrouped: allowed
    data["groups"][0]["alpha"] = 1
    data["groups"][0]["sources"] += data["groups"].pop(1)["sources"]
    other = Path(mixture).with_name("other.json")
    other.write_text(json.dumps(data))
    subset = MixtureDataset(ShardSet(out), spec=load_mixture(other))
    assert subset.group_names == [g["name"] for g in data["groups"]]
    drawn = subset.batch(np.arange(300))["source"]
    assert set(np.asarray(subset.source_names)[drawn]) == {s["name"] for g in data["groups"] for s in g["sources"]}
    data["groups"][0]["sources"][0]["name"] = "nope"
    other.write_text(json.dumps(data))
    with pytest.raises(ChatflowError, match=r"names sources the dataset .* does not have: \['nope'\]"):
        MixtureDataset(ShardSet(out), spec=load_mixture(other))
    data["groups"][0]["sources"][0].update(name=ds.source_names[0], kind="code")
    other.write_text(json.dumps(data))
    with pytest.raises(ChatflowError, match="is 'code' but the dataset"):
        MixtureDataset(ShardSet(out), spec=load_mixture(other))


def test_verify_sources_refuses_a_dataset_whose_inputs_changed(built):
    mixture, out, _ = built
    assert ShardSet(out, verify_sources=True).verify_inputs() == []
    zh = mixture.parent / "zh.txt"
    zh.write_text(zh.read_text(encoding="utf-8") + "又一篇。\n", encoding="utf-8")
    (mixture.parent / "code.jsonl").unlink()
    assert ShardSet(out).verify_inputs() == [str(zh.resolve()), str((mixture.parent / "code.jsonl").resolve())]
    with pytest.raises(ChatflowError, match=r"no longer matches its inputs: .*zh\.txt, .*code\.jsonl changed or missing"):
        ShardSet(out, verify_sources=True)


def test_epochs_are_reported(built):
    _, out, _ = built
    ds = MixtureDataset(ShardSet(out))
    report = source_report(ds, 2000)
    epochs = {name: r["epochs"] for name, r in report.items()}
    assert set(epochs) == set(ds.source_names)
    assert all(v > 0 for v in epochs.values())
    # counted without drawing, the same as drawing the 2000 samples
    drawn = np.bincount(ds.sampler.draw(np.arange(2000)).source, minlength=len(ds.source_names))
    assert [report[name]["samples"] for name in ds.source_names] == drawn.tolist()


# ------------------------------------------------------------------------------------------------
# HuggingFace tokenizers (tokenizer.json)


@pytest.mark.parametrize("style", ["byte_bpe_dir", "qwen2_bpe_dir"])
def test_hf_tokenizer_streams_are_autotokenizers_ids(tmp_path, style, request):
    """A byte-level BPE directory: every document is what AutoTokenizer makes of it (its BOS where it puts one:
    LLaMA-3 style, none for Qwen2 style) + EOS; the manifest records the kind and the tokenizer.json digest; the
    output does not depend on the number of workers."""
    from transformers import AutoTokenizer

    from chatflow_plugin.files import sha256_file

    directory = request.getfixturevalue(style)
    hf = AutoTokenizer.from_pretrained(directory)
    mixture = make_mixture(tmp_path / "data")
    manifest = preprocess(load_mixture(mixture), directory, tmp_path / "one", workers=1)
    preprocess(load_mixture(mixture), directory, tmp_path / "two", workers=2, chunk_bytes=300)
    record = manifest["tokenizer"]
    assert record["kind"] == "hf" and record["sha256"] == sha256_file(directory / "tokenizer.json")
    assert record["file"] == str((directory / "tokenizer.json").resolve()) and record["vocab_size"] == len(hf)
    assert record["eos_id"] == hf.eos_token_id and record["bos_id"] == (hf.bos_token_id if style == "byte_bpe_dir" else None)
    shards = ShardSet(tmp_path / "one", tokenizer=directory)
    for name, kind, records in (("en", "corpus", [{"text": d} for d in EN_DOCS]), ("pairs", "parallel", PAIRS),
                                ("chats", "instruction", CHATS)):
        expected = [i for r in records for i in hf(render(kind, r)[0])["input_ids"] + [hf.eos_token_id]]
        assert shards.token_stream(name).tolist() == expected, name
        assert (tmp_path / "one" / f"{name}.tokens.bin").read_bytes() == (tmp_path / "two" / f"{name}.tokens.bin").read_bytes()


def test_hf_tokenizer_prompt_mask_from_byte_offsets(tmp_path, qwen2_bpe_dir):
    """Character offsets of byte-level tokens mark exactly the responses (Chinese characters split into bytes
    included), with no BOS in front of the documents."""
    from chatflow_plugin.tokenizer import load_tokenizer

    tok = load_tokenizer(qwen2_bpe_dir)
    mixture = make_mixture(tmp_path / "data")
    preprocess(load_mixture(mixture), qwen2_bpe_dir, tmp_path / "out", workers=1)
    shards = ShardSet(tmp_path / "out")
    stream = shards.token_stream("chats")
    prompt = np.asarray(shards.by_name["chats"].mask).reshape(-1)[: len(stream)] == 1
    ends = np.flatnonzero(stream == tok.eos_id) + 1
    for doc, (a, b) in enumerate(zip([0, *ends[:-1]], ends)):
        ids, is_prompt = stream[a:b], prompt[a:b]
        response = [int(x) for x, p in zip(ids, is_prompt) if not p and x != tok.eos_id]
        answers = [turn["value"] for turn in CHATS[doc]["conversations"] if turn["from"] == "gpt"]
        assert tok.decode(response).replace(" ", "") == "".join(answers).replace(" ", "")
        assert is_prompt[0] and not is_prompt[-1]


def test_the_two_tokenizer_flags(tmp_path, spm_model, byte_bpe_dir, capsys):
    mixture = make_mixture(tmp_path / "data")
    base = ["preprocess", "--mixture", str(mixture), "--workers", "1", "--quiet"]
    assert cli.main(base + ["--tokenizer", str(byte_bpe_dir), "--output_dir", str(tmp_path / "a")]) == 0
    assert cli.main(base + ["--tokenizer", str(spm_model), "--output_dir", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / MANIFEST).read_text())["tokenizer"]["kind"] == "sentencepiece"
    capsys.readouterr()
    # the host's spelling is a hidden alias: it works, and says which flag replaced it
    assert cli.main(base + ["--spm_model_path", str(spm_model), "--output_dir", str(tmp_path / "d")]) == 0
    assert "--spm_model_path is deprecated, use --tokenizer" in capsys.readouterr().err
    for extra, message in ((["--tokenizer", str(spm_model), "--spm_model_path", str(spm_model)], "give it once"),
                           ([], "required: --tokenizer"),
                           (["--tokenizer", str(tmp_path / "nope.model")], "nope.model")):
        with pytest.raises(SystemExit) if not extra or len(extra) > 2 else contextlib.nullcontext():
            assert cli.main(base + extra + ["--output_dir", str(tmp_path / "c")]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ChatflowError, match=r"built with another tokenizer: .*\(hf, sha256 .*not .*\(sentencepiece"):
        ShardSet(tmp_path / "a", tokenizer=spm_model)
