"""Reference log-prob cache: computed once, reused, partial on demand, invalidated by model or data changes."""
from __future__ import annotations

import numpy as np
import pytest

from chatflow_plugin.clo.triples import load_triples
from chatflow_plugin.clo.reference import (ReferenceCache, cache_key, compute_reference_logps, model_fingerprint,
                                           pair_sequences)
from chatflow_plugin.errors import ChatflowError
from test_clo_support import tiny_llama_dir, triples_dir


@pytest.fixture()
def setup(tmp_path, spm_model):
    return tiny_llama_dir(tmp_path / "model", spm_model), triples_dir(tmp_path / "data", n=6)


def test_pair_sequences_order():
    from chatflow_plugin.clo.triples import InstructionPair

    assert pair_sequences(InstructionPair("x", "y", "X", "Y")) == [("x", "y"), ("x", "Y"), ("X", "Y"), ("X", "y")]


def test_cache_reused_partial_and_invalidated(setup, spm_model, tmp_path):
    model_dir, data_dir = setup
    triples = load_triples(data_dir)
    cache = ReferenceCache(triples, model_dir, max_length=64)
    first = cache.ensure(np.arange(3), progress=False, batch_size=2)
    assert cache.computed_pairs == 3 and first.shape == (3, 4) and np.all(first < 0)
    direct = compute_reference_logps(model_dir, triples.pairs[:3], 64, batch_size=3, progress=False)
    np.testing.assert_allclose(first, direct, rtol=1e-5)

    again = ReferenceCache(triples, model_dir, max_length=64)   # a new run: nothing recomputed
    np.testing.assert_array_equal(again.ensure(np.arange(3), progress=False), first)
    assert again.computed_pairs == 0
    everything = again.ensure(progress=False)                    # only the 3 missing pairs computed
    assert again.computed_pairs == 3 and everything.shape == (6, 4)
    np.testing.assert_array_equal(everything[:3], first)

    other_length = ReferenceCache(triples, model_dir, max_length=32)
    assert other_length.key != cache.key

    # the model changes (new weights, same path): a different key, everything recomputed
    tiny_llama_dir(model_dir, spm_model, seed=1)
    changed = ReferenceCache(triples, model_dir, max_length=64)
    assert changed.key != cache.key
    values = changed.ensure(np.arange(3), progress=False)
    assert changed.computed_pairs == 3 and not np.allclose(values, first)
    assert cache.path.exists()   # another model's cache stays (same data)

    # the data change: new checksum, old caches of that directory are deleted when the new one is written
    triples_dir(tmp_path / "data2", n=5)
    (data_dir / "triples.jsonl").write_bytes((tmp_path / "data2" / "triples" / "triples.jsonl").read_bytes())
    new_data = load_triples(data_dir)
    fresh = ReferenceCache(new_data, model_dir, max_length=64)
    assert fresh.key != changed.key
    fresh.ensure(progress=False)
    assert fresh.computed_pairs == 5
    assert sorted(p.name for p in (data_dir / "reference").glob("*.npz")) == [fresh.path.name]


def test_unreadable_cache_is_recomputed(setup):
    model_dir, data_dir = setup
    triples = load_triples(data_dir)
    cache = ReferenceCache(triples, model_dir, max_length=64)
    cache.path.parent.mkdir(parents=True, exist_ok=True)
    cache.path.write_bytes(b"not an npz")
    cache.ensure(np.arange(2), progress=False)
    assert cache.computed_pairs == 2


def test_model_fingerprint(setup, tmp_path):
    model_dir, _ = setup
    memo = tmp_path / "memo.json"
    fp = model_fingerprint(model_dir, memo)
    assert memo.is_file() and model_fingerprint(model_dir, memo) == fp == model_fingerprint(model_dir)
    (model_dir / "config.json").write_text((model_dir / "config.json").read_text() + " ")
    assert model_fingerprint(model_dir, memo) != fp
    with pytest.raises(ChatflowError, match="no weight files"):
        model_fingerprint(tmp_path)
    assert cache_key("a", "b", 8, "float32") != cache_key("a", "b", 8, "bfloat16")
