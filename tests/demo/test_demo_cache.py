"""The English foundation shared between demos (``chatflow demo --foundation_cache``): keyed by what determines it,
built once under concurrency, whole or absent, copied into each demo, which then trains no foundation."""
from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from chatflow_plugin.demo import cache, pipeline
from chatflow_plugin.demo.cache import cached_stages, entry_path, foundation_key
from test_demo import make_data_dir

GROUPS = ["en_corpus", "zh_corpus", "parallel", "en_inst", "zh_inst", "code"]


def _key(data: Path, settings: dict | None = None, config: Path | None = None) -> dict:
    files = {"model_config": config} if config is not None else {}
    return foundation_key(data, GROUPS, settings or {"steps": 60}, files)


def test_the_key_follows_every_input_and_nothing_else(tmp_path, monkeypatch):
    data = make_data_dir(tmp_path / "data")
    config = tmp_path / "config.json"
    config.write_text('{"hidden_size": 64}')
    base = entry_path(tmp_path, _key(data, config=config))
    assert entry_path(tmp_path, _key(data, config=config)) == base                      # deterministic
    assert entry_path(tmp_path, _key(data, {"steps": 61}, config)) != base               # a setting
    config.write_text('{"hidden_size": 65}')
    assert entry_path(tmp_path, _key(data, config=config)) != base                      # a file's content
    config.write_text('{"hidden_size": 64}')
    with open(data / "zh_inst" / "a.jsonl", "a", encoding="utf-8") as handle:          # one record more
        handle.write('{"instruction": "x", "input": "", "output": "y"}\n')
    assert entry_path(tmp_path, _key(data, config=config)) != base
    (data / "zh_inst" / "a.jsonl").write_text((data / "zh_inst" / "a.jsonl").read_text().splitlines(True)[0])
    changed = entry_path(tmp_path, _key(data, config=config))
    monkeypatch.setattr(cache, "code_digest", lambda: "another version of the code")       # the code
    assert entry_path(tmp_path, _key(data, config=config)) != changed
    key = _key(data, config=config)
    assert key["data"]["code"].startswith("absent")        # no code folder: the standard library stands in
    assert set(key["libraries"]) == {"torch", "transformers", "tokenizers", "sentencepiece", "numpy"}


def _build(folder: Path, log: Path, seconds: float = 0.0) -> None:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{folder.name}\n")
    time.sleep(seconds)
    (folder / "data").mkdir()
    (folder / "data" / "split.json").write_text('{"groups": {}}')
    (folder / "foundation").mkdir()
    (folder / "foundation" / "weights.bin").write_bytes(b"w" * 1000)


def _cached_in_process(cache_dir: str, target: str, log: str) -> None:
    cached_stages(cache_dir, {"k": 1}, ["data", "foundation"], lambda folder: _build(folder, Path(log), 1.5),
                  Path(target), say=lambda message: None)


def test_concurrent_demos_build_the_entry_once_and_each_gets_a_whole_copy(tmp_path):
    log = tmp_path / "builds.log"
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_cached_in_process, args=(str(tmp_path / "cache"), str(tmp_path / f"demo{i}"),
                                                               str(log))) for i in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    assert len(log.read_text().splitlines()) == 1                       # built once, the others waited
    entries = list((tmp_path / "cache").iterdir())
    assert [e.name for e in entries] == [entry_path(tmp_path / "cache", {"k": 1}).name]   # no partial, no lock left
    assert json.loads((entries[0] / "key.json").read_text()) == {"k": 1}
    for i in range(3):
        assert (tmp_path / f"demo{i}" / "foundation" / "weights.bin").read_bytes() == b"w" * 1000
        assert sorted(p.name for p in (tmp_path / f"demo{i}").iterdir()) == ["data", "foundation"]


def test_a_failed_build_leaves_no_entry(tmp_path):
    def broken(folder: Path) -> None:
        (folder / "data").mkdir()
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError):
        cached_stages(tmp_path / "cache", {"k": 2}, ["data"], broken, tmp_path / "demo", say=lambda m: None)
    assert list((tmp_path / "cache").iterdir()) == []
    cached_stages(tmp_path / "cache", {"k": 2}, ["data"], lambda f: _build(f, tmp_path / "log"), tmp_path / "demo",
                  say=lambda m: None)
    assert (tmp_path / "demo" / "data" / "split.json").is_file()


@pytest.mark.slow
def test_a_second_demo_takes_the_foundation_from_the_cache_and_trains_none(tmp_path, monkeypatch):
    data = make_data_dir(tmp_path / "data", n=40)
    trained = []
    real_train = pipeline._train
    monkeypatch.setattr(pipeline, "_train", lambda **kw: trained.append(kw["output_dir"]) or real_train(**kw))
    options = dict(quick=True, data_dir=str(data), foundation_steps=3, stop_after="foundation",
                   foundation_cache=str(tmp_path / "cache"))
    pipeline.run_demo(pipeline.DemoOptions(output_dir=str(tmp_path / "first"), **options))
    assert len(trained) == 1 and Path(trained[0]).is_relative_to(tmp_path / "cache")     # built in the cache
    pipeline.run_demo(pipeline.DemoOptions(output_dir=str(tmp_path / "second"), **options))
    assert len(trained) == 1                                               # the second demo trained nothing
    for demo in ("first", "second"):
        folder = tmp_path / demo
        assert (folder / "foundation" / "final" / "config.json").is_file()
        assert (folder / "tokenizer" / "english.model").read_bytes() == \
            (tmp_path / "first" / "tokenizer" / "english.model").read_bytes()
        assert not (folder / "foundation_expanded").exists()               # --stop_after foundation
    with open(data / "en_corpus" / "a.jsonl", "a", encoding="utf-8") as handle:   # new data: a new foundation
        handle.write(json.dumps({"text": "the river runs past the old school."}) + "\n")
    pipeline.run_demo(pipeline.DemoOptions(output_dir=str(tmp_path / "third"), **options))
    assert len(trained) == 2 and len(list((tmp_path / "cache").iterdir())) == 2
