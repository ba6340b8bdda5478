"""Corpus files by content: the same records give byte-identical shards from plain, gzip, bzip2, xz and zstd JSON
lines, parquet, Arrow and a datasets folder; damaged and binary files are clean errors naming the file."""
from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import random
import shutil
from pathlib import Path

import pytest

from chatflow_plugin.cli import main as chatflow_main
from chatflow_plugin.clo.triples import read_records
from chatflow_plugin.data.inputs import detect, iter_json_records, text_blocks
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.shards import MANIFEST
from chatflow_plugin.errors import ChatflowError
from test_preprocess import ALPACA, CHATS, EN_DOCS, PAIRS, write_jsonl

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
zstandard = pytest.importorskip("zstandard")

# records with nulls and extra columns, as columnar files hold them (a null is an absent field)
CORPUS = [{"text": d, "id": i, "url": None if i % 3 else f"https://example.org/{i}"} for i, d in enumerate(EN_DOCS)]
INSTRUCTIONS = [dict(r, input=r["input"] or None) for r in ALPACA]


def _lines(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_container(folder: Path, stem: str, records: list[dict], container: str) -> Path:
    """``records`` in one container; returns the path a mixture names."""
    folder.mkdir(parents=True, exist_ok=True)
    data = _lines(records)
    if container == "jsonl":
        path = folder / f"{stem}.jsonl"
        path.write_bytes(data)
    elif container == "gz":
        path = folder / f"{stem}.jsonl.gz"
        path.write_bytes(gzip.compress(data[: len(data) // 2]) + gzip.compress(data[len(data) // 2:]))  # 2 members
    elif container == "bz2":
        path = folder / f"{stem}.jsonl.bz2"
        path.write_bytes(bz2.compress(data))
    elif container == "xz":
        path = folder / f"{stem}.jsonl.xz"
        path.write_bytes(lzma.compress(data))
    elif container == "zst":
        path = folder / f"{stem}.jsonl.zst"
        half = len(data) // 3
        path.write_bytes(zstandard.ZstdCompressor().compress(data[:half]) +
                         zstandard.ZstdCompressor(level=9).compress(data[half:]))                # 2 frames
    elif container == "gzip_named_jsonl":
        path = folder / f"{stem}.jsonl"
        path.write_bytes(gzip.compress(data))
    elif container == "parquet":
        path = folder / f"{stem}.parquet"
        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=7)
    elif container == "arrow":
        path = folder / f"{stem}.arrow"
        table = pa.Table.from_pylist(records)
        with pa.ipc.new_file(path, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=5):
                writer.write_batch(batch)
    elif container == "datasets":
        datasets = pytest.importorskip("datasets")
        path = folder / stem
        datasets.Dataset.from_list(records).save_to_disk(str(path), max_shard_size="2KB")
    else:
        raise ValueError(container)
    return path


def _mixture(root: Path, paths: dict[str, Path]) -> Path:
    spec = {"name": "c", "seq_length": 32, "T_grow": 10, "groups": [
        {"name": "en", "alpha": 1, "beta": 1, "sources": [{"name": "en", "kind": "corpus", "paths": [str(paths["en"])]}]},
        {"name": "par", "alpha": 1, "beta": 1, "sources": [{"name": "par", "kind": "parallel",
                                                            "paths": [str(paths["par"])]}]},
        {"name": "inst", "alpha": 1, "beta": 1, "sources": [
            {"name": "alpaca", "kind": "instruction", "paths": [str(paths["alpaca"])]},
            {"name": "chats", "kind": "instruction", "paths": [str(paths["chats"])]}]}]}
    path = root / "mixture.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


CONTAINERS = ("gz", "bz2", "xz", "zst", "gzip_named_jsonl", "parquet", "arrow", "datasets")


def _build(root: Path, container: str, spm_model, workers=1, chunk_bytes=4 << 20, split=None) -> Path:
    paths = {"en": write_container(root / "in", "en", CORPUS, container),
             "par": write_container(root / "in", "par", PAIRS, container),
             "alpaca": write_container(root / "in", "alpaca", INSTRUCTIONS, container),
             "chats": write_container(root / "in", "chats", CHATS, container)}
    out = root / "shards"
    preprocess(load_mixture(_mixture(root, paths)), spm_model, out, workers=workers, chunk_bytes=chunk_bytes, split=split)
    return out


def _shard_bytes(out: Path) -> dict[str, bytes]:
    manifest = json.loads((out / MANIFEST).read_text())
    files = {}
    for s in manifest["sources"]:
        for key in ("tokens_file", "mask_file", "documents_file"):
            if s.get(key):
                files[s[key]] = (out / s[key]).read_bytes()
        files[s["name"] + ".records"] = str(s["records"]).encode()
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory, spm_model):
    return _shard_bytes(_build(tmp_path_factory.mktemp("plain"), "jsonl", spm_model))


@pytest.mark.parametrize("container", CONTAINERS)
def test_every_container_gives_byte_identical_shards(tmp_path, spm_model, reference, container):
    assert _shard_bytes(_build(tmp_path, container, spm_model)) == reference


@pytest.mark.parametrize("container", ("zst", "parquet"))
def test_streamed_containers_are_identical_for_workers_and_chunks(tmp_path, spm_model, reference, container):
    assert _shard_bytes(_build(tmp_path, container, spm_model, workers=2, chunk_bytes=300)) == reference


def test_kinds_are_told_by_content_not_name(tmp_path):
    folder = tmp_path / "k"
    assert detect(write_container(folder, "a", CORPUS, "gzip_named_jsonl")) == "gzip"
    assert detect(write_container(folder, "b", CORPUS, "zst")) == "zstd"
    assert detect(write_container(folder, "c", CORPUS, "parquet")) == "parquet"
    weird = folder / "data.txt"
    shutil.copy(write_container(folder, "d", CORPUS, "xz"), weird)
    assert detect(weird) == "xz"
    assert [r for _, r in iter_json_records(weird)] == CORPUS      # JSON lines as written (nulls kept)


def test_bad_records_in_compressed_text_are_located_by_decompressed_line(tmp_path, spm_model):
    data = tmp_path / "in"
    data.mkdir()
    lines = [json.dumps({"text": d}) for d in EN_DOCS[:10]]
    lines[6] = "{broken"
    (data / "en.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    spec = {"name": "g", "seq_length": 32, "T_grow": 5, "groups": [
        {"name": "en", "alpha": 1, "beta": 1, "sources": [{"name": "en", "kind": "corpus", "paths": ["en.jsonl.gz"]}]}]}
    (data / "m.json").write_text(json.dumps(spec))
    manifest = preprocess(load_mixture(data / "m.json"), spm_model, tmp_path / "o", workers=1)
    assert manifest["sources"][0]["first_errors"][0].startswith(f"{data / 'en.jsonl.gz'}:7: invalid JSON")


def _cli(*args) -> int:
    return chatflow_main([str(a) for a in args])


def _single_source(tmp_path: Path, path: Path, **source) -> Path:
    spec = {"name": "s", "seq_length": 32, "T_grow": 5, "groups": [
        {"name": "g", "alpha": 1, "beta": 1, "sources": [{"name": "s", "kind": "corpus", "paths": [str(path)],
                                                          **source}]}]}
    mixture = tmp_path / "single.json"
    mixture.write_text(json.dumps(spec))
    return mixture


@pytest.mark.parametrize("container,cut,message", [
    ("gz", "truncate", r"the gzip stream is truncated: it ends at compressed byte [\d,]+ before its end-of-stream"),
    ("zst", "truncate", r"the zstd stream is truncated"),
    ("xz", "truncate", r"the xz stream is truncated"),
    ("bz2", "truncate", r"the bzip2 stream is truncated"),
    ("gz", "damage", r"damaged gzip data at compressed byte [\d,]+"),
    ("parquet", "truncate", r"a parquet file without its footer"),
])
def test_truncated_or_damaged_files_are_clean_errors_naming_file_and_offset(tmp_path, spm_model, capsys, container,
                                                                            cut, message):
    records = [{"text": " ".join(random.Random(i).choice(EN_DOCS) for _ in range(5))} for i in range(400)]
    path = write_container(tmp_path / "in", "big", records, container)
    raw = bytearray(path.read_bytes())
    if cut == "truncate":
        raw = raw[: len(raw) * 2 // 3]
    else:
        raw[len(raw) // 2: len(raw) // 2 + 64] = os.urandom(64)
    path.write_bytes(bytes(raw))
    code = _cli("preprocess", "--mixture", _single_source(tmp_path, path), "--tokenizer", spm_model,
                "--output_dir", tmp_path / "out", "--workers", "1")
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"chatflow preprocess: error: {path}: ")
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content,what", [
    (os.urandom(4096), "a binary file of no kind chatflow reads"),
    (b"PK\x03\x04" + os.urandom(200), "a zip archive"),
    ("{\"text\": \"x\"}\n".encode("utf-16"), "UTF-16 text"),
    (gzip.compress(os.urandom(3000)), "once decompressed"),
])
def test_binary_files_are_refused_not_read_as_text(tmp_path, spm_model, capsys, content, what):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(content)
    code = _cli("preprocess", "--mixture", _single_source(tmp_path, path), "--tokenizer", spm_model,
                "--output_dir", tmp_path / "out", "--workers", "1")
    err = capsys.readouterr().err
    assert code == 2 and what in err and str(path) in err and "Traceback" not in err


def test_columns_are_named_by_the_source_and_missing_ones_are_clean_errors(tmp_path, spm_model, capsys):
    records = [{"content": d, "meta": i} for i, d in enumerate(EN_DOCS)]
    path = write_container(tmp_path / "in", "c", records, "parquet")
    code = _cli("preprocess", "--mixture", _single_source(tmp_path, path), "--tokenizer", spm_model,
                "--output_dir", tmp_path / "bad", "--workers", "1")
    err = capsys.readouterr().err
    assert code == 2 and "no column 'text' (columns: content, meta); set the source's text_field" in err
    assert _cli("preprocess", "--mixture", _single_source(tmp_path, path, text_field="content"), "--tokenizer",
                spm_model, "--output_dir", tmp_path / "good", "--workers", "1", "--quiet") == 0
    code = _cli("preprocess", "--mixture", _single_source(tmp_path, path, text_field="content", format="tsv"),
                "--tokenizer", spm_model, "--output_dir", tmp_path / "fmt", "--workers", "1")
    assert code == 2 and "a parquet file, but source 's' gives format 'tsv'" in capsys.readouterr().err


def test_a_datasets_dict_folder_asks_for_one_split(tmp_path, spm_model, capsys):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(CORPUS[:5]),
                          "test": datasets.Dataset.from_list(CORPUS[5:8])}).save_to_disk(str(folder))
    code = _cli("preprocess", "--mixture", _single_source(tmp_path, folder), "--tokenizer", spm_model,
                "--output_dir", tmp_path / "o", "--workers", "1")
    err = capsys.readouterr().err
    assert code == 2 and "a datasets DatasetDict (several splits); name one split folder" in err
    assert str(folder / "train") in err


def test_missing_optional_readers_name_their_extra(tmp_path, monkeypatch, capsys, spm_model):
    import builtins

    real = builtins.__import__

    def no(name, *args, **kwargs):
        if name.split(".")[0] in ("pyarrow", "zstandard", "compression"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    parquet = write_container(tmp_path / "in", "p", CORPUS, "parquet")
    zst = write_container(tmp_path / "in", "z", CORPUS, "zst")
    monkeypatch.setattr(builtins, "__import__", no)
    for path, extra in ((parquet, "chatflow-plugin[parquet]"), (zst, "chatflow-plugin[zstd]")):
        code = _cli("preprocess", "--mixture", _single_source(tmp_path, path), "--tokenizer", spm_model,
                    "--output_dir", tmp_path / "o", "--workers", "1")
        err = capsys.readouterr().err
        assert code == 2 and extra in err and "Traceback" not in err


def test_text_blocks_stream_in_bounded_blocks_cut_at_line_ends(tmp_path):
    path = write_container(tmp_path, "t", CORPUS * 20, "zst")
    blocks = list(text_blocks(path, "zstd", 2000))
    assert len(blocks) > 10 and all(b.endswith(b"\n") for _, _, b in blocks)
    assert all(len(b) < 2000 + 1000 for _, _, b in blocks)
    assert b"".join(b for _, _, b in blocks) == _lines(CORPUS * 20)
    assert blocks[-1][1] == path.stat().st_size


@pytest.mark.parametrize("container", ("gz", "parquet", "datasets"))
def test_clo_data_reads_instructions_from_any_container(tmp_path, container):
    path = write_container(tmp_path / "in", "en", ALPACA, container)
    got = list(read_records(path))
    assert [record for _, record in got] == ALPACA
    assert got[3][0].endswith(":4")           # line 4, or row 4 of a columnar file
