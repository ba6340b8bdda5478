"""The English foundation shared between demos: ``chatflow demo --foundation_cache DIR``.

The demo's first stages (the train / held-out split of every group, the English tokenizer, the English
foundation model trained on it) depend only on the data, the base mixture's groups, the profile's settings for
those stages, the code and the libraries; most of the paper-artefact scripts' ``--tiny`` modes need nothing more,
or build on it. Those stages' outputs are kept in ``DIR/foundation-<key>/``, where the key is a digest of
everything that determines them (:func:`foundation_key`): the content of every input file, the settings, the
source of every module of this package, the versions of Python, torch, transformers, tokenizers, sentencepiece
and numpy, and the number of CPUs (the tokenizer trains on that many threads). A changed input, setting or line
of code gives another key, so an entry is never stale; the inputs are in ``key.json`` beside the outputs.

An entry is built under its lock (:func:`chatflow_plugin.outputs.output_lock`, which a concurrent demo waits on:
two scripts started together build it once) in a temporary folder renamed into place when complete, so it is
whole or absent; a demo whose output folder holds none of those stages' outputs yet copies them from it, and
then reuses them as it reuses any stage whose output exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from ..files import permissions
from ..outputs import output_lock, remove_leftovers, replace_directory, write_marker

CACHE_KIND = "demo-foundation"     # the entry's marker (chatflow_plugin.outputs)
ENTRY_PREFIX = "foundation-"
KEY_FILE = "key.json"
LIBRARIES = ("torch", "transformers", "tokenizers", "sentencepiece", "numpy")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_digest() -> str:
    """One digest of every module of this package (path and content)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def files_digest(folder: Path, pattern: str = "*.jsonl") -> list[list[str]]:
    """(name, sha256) of each file of ``folder`` matching ``pattern``, sorted; empty when the folder is absent."""
    if not folder.is_dir():
        return []
    return [[path.name, _sha256(path.read_bytes())] for path in sorted(folder.glob(pattern))]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def foundation_key(data_dir: Path, groups: list[str], settings: dict[str, Any], files: dict[str, Path]) -> dict:
    """What determines the foundation stages' outputs: the data folder's ``<group>/*.jsonl`` contents for each of
    ``groups`` (a missing folder: the Python standard library the demo reads instead), ``settings`` (JSON values),
    the content of ``files`` (e.g. the model config), this package's code, the library versions and CPUs."""
    return {"data": {group: files_digest(data_dir / group) or f"absent (Python {sys.version})" for group in groups},
            "settings": settings,
            "files": {name: _sha256(Path(path).read_bytes()) for name, path in sorted(files.items())},
            "code": code_digest(), "python": platform.python_version(),
            "libraries": {name: _version(name) for name in LIBRARIES}, "cpus": os.cpu_count()}


def entry_path(cache_dir: Path, key: dict) -> Path:
    digest = _sha256(json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return Path(cache_dir) / f"{ENTRY_PREFIX}{digest[:24]}"


def cached_stages(cache_dir: str | os.PathLike, key: dict, names: list[str], build: Callable[[Path], None],
                  target: Path, say: Callable[[str], None] = print) -> Path:
    """Copy the outputs ``names`` (paths relative to a demo's output folder) of the entry for ``key`` into
    ``target``, building the entry first with ``build(folder)`` if it does not exist (under its lock; a
    concurrent builder of the same entry is waited for). Returns the entry."""
    entry = entry_path(Path(cache_dir), key)
    if not entry.is_dir():
        with output_lock(entry, what=f"the shared foundation {entry}", wait=2.0,
                         on_wait=lambda owner: say(f"waiting for {owner}, which is building {entry}")):
            if not entry.is_dir():        # built by the process waited for
                remove_leftovers(entry)
                say(f"building the shared foundation {entry}")
                tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".partial", dir=entry.parent))
                os.chmod(tmp, permissions(0o777))
                try:
                    build(tmp)
                    (tmp / KEY_FILE).write_text(json.dumps(key, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
                    write_marker(tmp, CACHE_KIND)
                    replace_directory(tmp, entry)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
    else:
        say(f"the shared foundation {entry}")
    for name in names:
        source, destination = entry / name, target / name
        if destination.exists():
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        # copied under a temporary name the demo's clean-up knows (chatflow_plugin.outputs.leftover_names)
        partial = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent))
        try:
            if source.is_dir():
                shutil.copytree(source, partial, dirs_exist_ok=True)
                os.replace(partial, destination)
            else:
                shutil.copy2(source, partial / source.name)
                os.replace(partial / source.name, destination)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return entry
