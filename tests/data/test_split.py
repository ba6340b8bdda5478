"""The held-out split: parts by record before tokenization, deterministic, stable under adding files, recorded in
every manifest, and a trainer that refuses a held-out set sharing a document with its training set."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.data.formats import render
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.shards import ShardSet
from chatflow_plugin.data.split import SplitSpec, check_disjoint, document_hashes, overlap, parse_split
from chatflow_plugin.errors import ChatflowError
from test_preprocess import ALPACA, CHATS, EN_DOCS, PAIRS, ZH_DOCS, expected_stream, make_mixture

PARTS = "train:0.6,valid:0.2,test:0.2"


def test_parse_split_named_fractions_and_megatron_weights():
    assert parse_split("train:0.98,valid:0.01,test:0.01").parts == (("train", 0.98), ("valid", 0.01), ("test", 0.01))
    spec = parse_split("969,30,1", seed=5)
    assert spec.names == ["train", "valid", "test"] and spec.seed == 5
    assert np.allclose([f for _, f in spec.parts], [0.969, 0.030, 0.001]) and spec.left_out == 0
    assert parse_split("98,2").names == ["train", "valid"]
    assert parse_split("train:0.1,valid:0.01").left_out == pytest.approx(0.89)     # the rest is left out
    for bad, match in (("", "empty"), ("train:0.9,0.1", "name every part"), ("1,2,3,4", "2 or 3"),
                       ("train:x", "not NAME:SHARE"), ("train:0.5,valid:0", "positive"), ("a:0.5,a:0.5", "differ"),
                       ("train:1", "at least two"), ("../x:0.5,valid:0.5", "letters"), ("train:nan,v:1", "finite")):
        with pytest.raises(ChatflowError, match=match):
            parse_split(bad)


def test_assignment_follows_the_fractions_and_the_seed_and_nothing_else():
    hashes = np.random.default_rng(0).integers(0, 2**63, 200_000, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    spec = SplitSpec((("train", 0.9), ("valid", 0.07), ("test", 0.02)), seed=1)
    parts = spec.assign(hashes)
    shares = np.bincount(parts, minlength=4) / len(hashes)
    assert np.allclose(shares, [0.9, 0.07, 0.02, 0.01], atol=0.003)           # index 3: left out (1%)
    # by record: the same hash gets the same part whatever comes with it, in any order
    assert (spec.assign(hashes[::-1])[::-1] == parts).all()
    assert (spec.assign(hashes[:1000]) == parts[:1000]).all()
    # another seed: another split, the same shares
    other = SplitSpec(spec.parts, seed=2).assign(hashes)
    assert 0.8 < (other == parts).mean() < 0.85
    # parts covering everything leave nothing out, even at the top of the hash range
    full = SplitSpec((("a", 0.5), ("b", 0.5)))
    assert full.assign(np.array([0, 2**64 - 1, 2**63], dtype=np.uint64)).max() <= 1
    assert document_hashes(["abc", "abc", "abd"]).tolist()[0] == document_hashes(["abc"]).tolist()[0]


def _expected_part_stream(sp, kind, records, spec: SplitSpec, part: int, **kw):
    """The token stream of the records ``spec`` puts in ``part``, in input order."""
    chosen = spec.assign(document_hashes(render(kind, r, **kw)[0] for r in records)) == part
    return expected_stream(sp, kind, [r for r, keep in zip(records, chosen) if keep], **kw)


@pytest.fixture
def split_dataset(tmp_path, spm_model):
    mixture = make_mixture(tmp_path / "data")
    out = tmp_path / "split"
    manifests = preprocess(load_mixture(mixture), spm_model, out, workers=1, split=parse_split(PARTS, seed=7))
    return mixture, out, manifests


def test_preprocess_split_writes_one_dataset_per_part_disjoint_and_recorded(split_dataset, spm_model):
    _, out, manifests = split_dataset
    spec = parse_split(PARTS, seed=7)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    assert set(manifests) == {"train", "valid", "test"}
    sets = {}
    for index, part in enumerate(spec.names):
        shards = ShardSet(out / part, tokenizer=spm_model)
        sets[part] = shards
        assert {k: v for k, v in shards.split.items() if k != "empty_sources"} == {
            "part": part, "parts": [[n, f] for n, f in spec.parts], "seed": 7, "hash": "xxh3_64", "left_out": 0.0}
        np.testing.assert_array_equal(shards.token_stream("en"), _expected_part_stream(
            sp, "corpus", [{"text": d} for d in EN_DOCS], spec, index))
        np.testing.assert_array_equal(shards.token_stream("zh"), _expected_part_stream(
            sp, "corpus", [{"text": d} for d in ZH_DOCS], spec, index))
        np.testing.assert_array_equal(shards.token_stream("pairs"), _expected_part_stream(sp, "parallel", PAIRS, spec,
                                                                                            index))
        np.testing.assert_array_equal(shards.token_stream("alpaca"), _expected_part_stream(sp, "instruction", ALPACA,
                                                                                             spec, index))
    # every record is in exactly one part, and the parts share no document
    total = {s["name"]: sum(sets[p].by_name[s["name"]].info["records"] for p in spec.names
                            if s["name"] in sets[p].by_name) for s in manifests["train"]["sources"]}
    assert total["en"] == len(EN_DOCS) and total["chats"] == len(CHATS)
    for a in spec.names:
        for b in spec.names:
            if a != b:
                assert overlap(sets[a], sets[b]) == ({}, [])
    check_disjoint(sets["train"], sets["valid"])
    with pytest.raises(ChatflowError, match=r"shares \d+ document\(s\) with --dataset_dir"):
        check_disjoint(sets["train"], sets["train"])


def test_split_is_stable_under_adding_files_and_workers(tmp_path, spm_model, split_dataset):
    mixture, out, _ = split_dataset
    spec = load_mixture(mixture)
    data = Path(spec.data_root)
    (data / "en_more.jsonl").write_text("".join(json.dumps({"text": f"another English document number {i}."}) + "\n"
                                                for i in range(60)), encoding="utf-8")
    more = spec.with_overrides(source_paths={"en": [str(data / "en.jsonl"), str(data / "en_more.jsonl")]})
    bigger = tmp_path / "bigger"
    preprocess(more, spm_model, bigger, workers=2, chunk_bytes=300, split=parse_split(PARTS, seed=7))
    for part in ("train", "valid", "test"):
        old = ShardSet(out / part).document_hashes("en")
        new = ShardSet(bigger / part).document_hashes("en")
        assert np.array_equal(new[: len(old)], old)      # every old record kept its part, in its order
        for name in ("zh", "pairs", "alpaca"):             # untouched sources: byte-identical, any workers/chunks
            a, b = ShardSet(out / part).by_name[name], ShardSet(bigger / part).by_name[name]
            assert a.info["tokens_checksum"] == b.info["tokens_checksum"]


def test_cli_split_and_a_part_too_small_is_a_clean_error(tmp_path, spm_model, capsys):
    mixture = make_mixture(tmp_path / "data")
    out = tmp_path / "cli"
    assert chatflow_main(["preprocess", "--mixture", str(mixture), "--tokenizer", str(spm_model), "--output_dir",
                          str(out), "--split", "80,20", "--split_seed", "3", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'train'}" in printed and f"wrote {out / 'valid'}" in printed and "part 'valid'" in printed
    assert ShardSet(out / "valid").split["seed"] == 3
    # a held-out part too small for a source leaves it out, said; one with no document at all is an error, and so
    # is a training part without a source
    assert chatflow_main(["preprocess", "--mixture", str(mixture), "--tokenizer", str(spm_model), "--output_dir",
                          str(tmp_path / "some"), "--split", "train:0.97,valid:0.03", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "part 'valid' of the split got no document of source(s)" in err
    held = ShardSet(tmp_path / "some" / "valid")
    assert held.split["empty_sources"] and set(held.split["empty_sources"]).isdisjoint(held.by_name)
    for split, message in (("train:0.999,valid:0.0001", "got no document from any source"),
                           ("train:0.0001,valid:0.999", "the training part 'train' of the split")):
        code = chatflow_main(["preprocess", "--mixture", str(mixture), "--tokenizer", str(spm_model), "--output_dir",
                              str(tmp_path / "tiny"), "--split", split, "--workers", "1"])
        assert code == 2 and message in capsys.readouterr().err
        assert not (tmp_path / "tiny").exists()


def test_an_older_dataset_without_document_hashes_is_warned_about(split_dataset, tmp_path, capsys):
    from chatflow_plugin.data.shards import MANIFEST, seal_manifest

    _, out, _ = split_dataset
    old = tmp_path / "old"
    shutil.copytree(out / "valid", old)
    manifest = json.loads((old / MANIFEST).read_text())
    for info in manifest["sources"]:
        (old / info.pop("documents_file")).unlink()
        info.pop("documents_checksum")
    (old / MANIFEST).write_text(json.dumps(seal_manifest({k: v for k, v in manifest.items()
                                                          if k != "manifest_checksum"})))
    check_disjoint(ShardSet(out / "train"), ShardSet(old))
    assert "cannot check that --heldout_dir is disjoint" in capsys.readouterr().err


@pytest.mark.slow
def test_the_trainer_refuses_a_heldout_set_that_overlaps_its_training_set(split_dataset, tmp_path):
    pytest.importorskip("transformers")
    from chatflow_plugin.hosts.hf.train import TrainOptions, train

    _, out, _ = split_dataset
    root = Path(__file__).resolve().parents[2]
    common = dict(dataset_dir=str(out / "train"), model_config=str(root / "models/hf/demo_tiny.json"),
                  train_steps=1, micro_batch_size=2, log_every=1, threads=1, quiet=True)
    with pytest.raises(ChatflowError, match="a held-out record must never be trained on"):
        train(TrainOptions(output_dir=str(tmp_path / "bad"), heldout_dir=str(out / "train"), **common))
    summary = train(TrainOptions(output_dir=str(tmp_path / "good"), heldout_dir=str(out / "valid"), **common))
    assert summary["steps"] == 1
