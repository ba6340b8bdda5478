"""Nothing silently wrong: tampered or damaged shards and manifests are refused, naming the file and field
(issue 12, "Silently wrong"; issue 21, "Accepted although wrong")."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fault_support import assert_clean_error, cli
from test_preprocess import make_mixture

from chatflow_plugin.data.batches import MixtureDataset
from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.preprocess import preprocess
from chatflow_plugin.data.shards import MANIFEST, SEAL, ShardSet, _VERIFIED, manifest_checksum, seal_manifest
from chatflow_plugin.errors import ChatflowError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, spm_model):
    root = tmp_path_factory.mktemp("integrity")
    out = root / "shards"
    preprocess(load_mixture(make_mixture(root / "data")), spm_model, out, workers=1)
    return out


@pytest.fixture
def shards(pristine, tmp_path):
    import shutil

    _VERIFIED.clear()
    copy = tmp_path / "shards"
    shutil.copytree(pristine, copy)
    return copy


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def _edit(folder: Path, change, reseal: bool = True) -> None:
    """Edit the manifest; ``reseal``: as a careful forger would, with a matching manifest checksum."""
    manifest = _manifest(folder)
    change(manifest)
    if reseal and SEAL in manifest:
        manifest = seal_manifest(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def test_a_pristine_dataset_loads_and_its_content_checksum_ignores_time_and_place(shards, pristine):
    loaded = ShardSet(shards)
    assert loaded.content_checksum() == ShardSet(pristine).content_checksum()
    assert all(s.info["tokens_checksum"].startswith(("xxh3_128:", "blake2b_128:")) for s in loaded.sources)


def test_token_ids_refilled_in_range_are_caught_by_the_checksum(shards):
    tokens = shards / "en.tokens.bin"
    data = np.fromfile(tokens, dtype=np.uint16)
    rng = np.random.default_rng(0)
    data[: len(data) // 2] = rng.integers(0, int(data.max()), len(data) // 2)      # same size, valid ids
    data.tofile(tokens)
    with pytest.raises(ChatflowError, match=rf"{tokens}: checksum .* differs from the manifest's .*--no_verify_data"):
        ShardSet(shards)
    ShardSet(shards, verify=False)        # the user's explicit choice for a huge dataset: loads unchecked
    proc = cli("train", "--dataset_dir", shards, "--output_dir", shards.parent / "run", "--model_config",
               Path(__file__).resolve().parents[2] / "models" / "hf" / "demo_tiny.json", "--train_steps", "1",
               "--micro_batch_size", "1", "--quiet")
    assert_clean_error(proc, "train", str(tokens), "checksum")


def test_a_mask_file_changed_is_caught(shards):
    mask = shards / "alpaca.mask.bin"
    data = bytearray(mask.read_bytes())
    data[5] ^= 1
    mask.write_bytes(bytes(data))
    with pytest.raises(ChatflowError, match=rf"{mask}: checksum"):
        ShardSet(shards)


@pytest.mark.parametrize("change, reseal, message", [
    (lambda m: m.update(dtype="uint32"), True, r"dtype: expected 'uint16' \(the dtype of a 600-piece vocabulary\)"),
    (lambda m: m["tokenizer"].update(sha256="0" * 64), True, r"tokenizer.sha256: expected a sha256 hex digest"),
    (lambda m: m["sources"][0].update(pad_tokens=-1), True, r"sources\[0\] \(en\).pad_tokens: expected an integer in"),
    (lambda m: m.pop("dtype"), True, r"dtype: expected 'uint16'"),
    (lambda m: m["sources"][1].pop("windows"), True, r"sources\[1\] \(zh\).windows: expected a positive integer"),
    (lambda m: m["sources"][0].update(tokens_file="../../x.bin"), True, r"tokens_file: expected a file name inside"),
    (lambda m: m["sources"][0].update(tokens_file="/etc/passwd"), True, r"tokens_file: expected a file name inside"),
    (lambda m: m["sources"][3].update(mask_file="../alpaca.mask.bin"), True, r"mask_file: expected null or a file"),
    (lambda m: m["sources"][0].update(tokens=5), True, r"\(en\).tokens: expected windows x 65 - pad_tokens"),
    (lambda m: m["sources"][0].update(group="nope"), True, r"\(en\).group: expected one of the mixture's groups"),
    (lambda m: m["tokenizer"].update(eos_id=10 ** 6), True, r"tokenizer.eos_id: expected an id below"),
    (lambda m: m["sources"][0].update(tokens_checksum="md5:abc"), True, r"tokens_checksum: expected a checksum"),
    (lambda m: m.update(seconds=1.5), False, r"does not match its manifest_checksum: it was edited"),
])
def test_manifest_edits_are_refused_naming_the_field(shards, change, reseal, message):
    _edit(shards, change, reseal)
    with pytest.raises(ChatflowError, match=message) as caught:
        ShardSet(shards)
    assert str(shards / MANIFEST) in str(caught.value)


def _unseal(m: dict, created_by: str = "chatflow-plugin 0.0.9") -> None:
    """A manifest as a version without checksums wrote it (or one whose checksums were removed)."""
    m.pop(SEAL)
    m["created_by"] = created_by
    for info in m["sources"]:
        info.pop("tokens_checksum")
        info.pop("mask_checksum")


def test_a_dataset_of_an_older_version_is_checked_for_ids_and_mask_values(shards, capsys):
    _edit(shards, _unseal, reseal=False)
    assert ShardSet(shards).content_checksum() is None
    assert "without checksums" in capsys.readouterr().err
    _VERIFIED.clear()
    tokens = shards / "zh.tokens.bin"
    data = np.fromfile(tokens, dtype=np.uint16)
    data[7] = 599 + 1                                                   # the vocabulary has 600 pieces
    data.tofile(tokens)
    with pytest.raises(ChatflowError, match=rf"{tokens}: token id 600 at position 7 is outside the vocabulary"):
        ShardSet(shards)
    # unverified, the batch is refused before the embedding would raise IndexError, naming the file
    dataset = MixtureDataset(ShardSet(shards, verify=False))
    with pytest.raises(ChatflowError, match=rf"{tokens}: window 0 holds token id 600"):
        for start in range(0, 4000, 64):
            dataset.batch(np.arange(start, start + 64))
    mask = shards / "chats.mask.bin"
    values = bytearray(mask.read_bytes())
    values[3] = 7
    mask.write_bytes(bytes(values))
    data[7] = 5
    data.tofile(tokens)
    _VERIFIED.clear()
    with pytest.raises(ChatflowError, match=rf"{mask}: mask value 7 at position 3 is not 0 or 1"):
        ShardSet(shards)


def test_verification_reads_each_file_once_per_process(shards, monkeypatch):
    import chatflow_plugin.data.shards as module

    calls = []
    original = module.file_checksum
    monkeypatch.setattr(module, "file_checksum", lambda *a, **k: calls.append(a[0]) or original(*a, **k))
    ShardSet(shards)
    ShardSet(shards)
    assert len(calls) == len({str(p) for p in calls}) == len([p for p in os.listdir(shards) if p.endswith(".bin")])
    files = len(calls)
    os.utime(shards / "en.tokens.bin", ns=(1, 1))                        # a file touched: checked again
    ShardSet(shards)
    assert len(calls) == 2 * files


def test_the_manifest_checksum_covers_every_key(shards):
    manifest = _manifest(shards)
    assert manifest[SEAL] == manifest_checksum(manifest)
    assert manifest_checksum(dict(manifest, extra=1)) != manifest[SEAL]     # a key added by hand changes it


def test_checksums_removed_from_a_version_that_writes_them_are_refused(shards, capsys):
    from chatflow_plugin import __version__

    _edit(shards, lambda m: _unseal(m, f"chatflow-plugin {__version__}"), reseal=False)
    with pytest.raises(ChatflowError, match=rf"{shards / MANIFEST}: the checksums of en, zh, .* were removed: "
                                            rf"chatflow-plugin {__version__}, which wrote it, always writes them; "
                                            rf"preprocess again \(or pass --no_verify_data"):
        ShardSet(shards)
    assert ShardSet(shards, verify=False).content_checksum() is None     # the user's explicit choice: loads
    proc = cli("train", "--dataset_dir", shards, "--output_dir", shards.parent / "run", "--model_config",
               Path(__file__).resolve().parents[2] / "models" / "hf" / "demo_tiny.json", "--train_steps", "1",
               "--micro_batch_size", "1", "--quiet")
    assert_clean_error(proc, "train", "were removed", "always writes them")


@pytest.mark.parametrize("change, message", [
    (lambda m: m["mixture"].update(T_grow="__nan__"), r"mixture.T_grow: expected a finite number, got nan"),
    (lambda m: m["mixture"]["groups"][0].update(alpha=-0.5), r"mixture.groups\[0\] \(en_corpus\).alpha: .*-0.5"),
    (lambda m: m["mixture"].update(seed=-3), r"mixture.seed: expected a non-negative integer, got -3"),
], ids=["nan T_grow", "negative alpha", "negative seed"])
def test_mixture_values_in_a_manifest_are_checked_as_a_mixture_file_is(shards, change, message):
    manifest = _manifest(shards)
    change(manifest)
    text = json.dumps(seal_manifest(json.loads(json.dumps(manifest).replace('"__nan__"', "NaN"))))
    (shards / MANIFEST).write_text(text, encoding="utf-8")
    with pytest.raises(ChatflowError, match=rf"{shards / MANIFEST}: {message}"):
        ShardSet(shards)
