"""Data for the demo: each group's documents split into train and held-out BEFORE tokenization.

The input folder has one sub-folder per group of the demo's base mixture (:mod:`.groups`: ``en_corpus``,
``zh_corpus``, ``parallel``, ``en_inst``, ``zh_inst``, ``code`` for the default, ``ja_corpus`` ... for the Japanese
one) of ``*.jsonl`` files (compressed, ``.parquet`` or ``.arrow`` files too: :mod:`chatflow_plugin.data.inputs`):
the layout of the bundled ``corpora/``. A missing ``code`` folder is replaced by the Python standard library's own
``.py`` files read at run time.

The split is ``chatflow preprocess --split``'s (:mod:`chatflow_plugin.data.split`): a record's part follows from
its rendered text's hash alone, with the group's budget turned into fractions (the held-out part about
``heldout_chars`` characters, at most ``heldout_max_fraction`` of the documents; the training part capped at
``train_chars``, the rest left out). So no held-out text is ever trained on, duplicates included, and the trainer
checks it again from the shards' document hashes.
"""
from __future__ import annotations

import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ..data.formats import render
from ..data.inputs import COMPRESSION_SUFFIXES, iter_json_records
from ..data.mixture import SourceSpec
from ..data.split import SplitSpec, document_hashes
from ..files import json_strings, read_jsonl
from ..outputs import atomic_directory
from ..errors import ChatflowError, DataError
from .groups import base_mixture

GROUP_DIRS = tuple(base_mixture().group_names)   # one folder per group of the default mixture, named as the group
SPLITS = ("train", "heldout")
DATA_SUFFIXES = tuple(f".jsonl{c}" for c in ("",) + COMPRESSION_SUFFIXES) + (".parquet", ".arrow")


@dataclass(frozen=True)
class SplitBudget:
    heldout_chars: int              # per group: held-out documents until this many characters ...
    heldout_max_fraction: float     # ... but never more than this fraction of the group's documents
    train_chars: int | None         # per group cap on training characters (None: everything left)
    code_bytes: int                 # size of the stdlib code corpus when the input has none


def read_group(folder: Path) -> list[str]:
    """All records of a group folder as JSON lines (files in sorted order: ``*.jsonl``, compressed or not,
    ``*.parquet``, ``*.arrow``); a record that is not a JSON object is an error naming its file and line."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(DATA_SUFFIXES))
    if not files:
        raise ChatflowError(f"{folder}: no data files ({', '.join('*' + s for s in DATA_SUFFIXES)})")
    lines: list[str] = []
    for path in files:
        for where, record in iter_json_records(path):
            if isinstance(record, DataError):
                raise DataError(record.reason, where)
            if not isinstance(record, dict):
                raise DataError("expected a JSON object", where)
            line = json.dumps(record, ensure_ascii=False)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:      # a lone surrogate escape: keep it escaped
                line = json.dumps(record)
            lines.append(line)
    return lines


def stdlib_code_records(max_bytes: int, min_file: int = 1000, max_file: int = 40000) -> list[str]:
    """Python standard-library sources as ``{"text": ...}`` lines (sorted paths, tests skipped)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
    records, total = [], 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)      # sorted walk: deterministic order
        for name in sorted(files):
            if not name.endswith(".py") or name.startswith("test"):
                continue
            path = Path(folder) / name
            try:
                size = path.stat().st_size
                if not min_file <= size <= max_file:
                    continue
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            records.append(json.dumps({"text": f"# {path.relative_to(root).as_posix()}\n{text}"}, ensure_ascii=False))
            total += size
            if total >= max_bytes:
                return records
    if not records:
        raise ChatflowError(f"no usable .py files under the standard library at {root}")
    return records


def split_records(lines: list[str], group: str, budget: SplitBudget, seed: int = 0,
                  source: SourceSpec | None = None) -> tuple[list[str], list[str]]:
    """(train, heldout): ``chatflow preprocess --split``'s rule over the records' rendered texts (``source``: how
    a record becomes text; default a corpus of ``{"text"}``), with the budget as the parts' fractions. Records
    that do not render are left out (preprocessing would skip them)."""
    source = source or SourceSpec(name=group, kind="corpus", paths=("-",))
    texts, kept = [], []
    for line in lines:
        try:
            text, _ = render(source.kind, json.loads(line), text_field=source.text_field, fields=source.fields)
        except DataError:
            continue
        texts.append(text)
        kept.append(line)
    if len(kept) < 2:
        raise ChatflowError(f"group {group}: needs at least 2 documents to hold one out, found {len(kept)}")
    chars = max(1, sum(map(len, texts)))
    # about heldout_chars characters, two documents expected at the least, at most the budget's fraction
    held_fraction = min(budget.heldout_max_fraction, max(budget.heldout_chars / chars, 2 / len(kept)))
    train_fraction = 1.0 - held_fraction
    if budget.train_chars is not None:
        train_fraction = min(train_fraction, budget.train_chars / chars)
    spec = SplitSpec((("heldout", held_fraction), ("train", train_fraction)), seed)
    hashes = document_hashes(texts)
    parts = spec.assign(hashes)
    if not (parts == 0).any():
        # a group too small for its fraction still holds out one document, the first in the split's hash order,
        # with every copy of it (a duplicate left in training would be trained on)
        parts[hashes == hashes[int(spec.order(hashes).argmin())]] = 0
    held = [line for line, part in zip(kept, parts) if part == 0]
    train = [line for line, part in zip(kept, parts) if part == 1]
    if not train:
        raise ChatflowError(f"group {group}: nothing left to train on after holding out {len(held)} documents")
    return train, held


def prepare_data(data_dir: str | os.PathLike, output_dir: str | os.PathLike, budget: SplitBudget,
                 seed: int = 0, force: bool = False, groups: tuple[str, ...] | None = None, base=None) -> dict:
    """Write ``<output_dir>/{train,heldout}/<group>/data.jsonl`` for every group of the base mixture ``base``
    (default: the default one; ``groups``: only those); returns per-group counts."""
    base = base or base_mixture()
    groups = tuple(groups or base.group_names)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ChatflowError(f"data folder not found: {data_dir}")
    stats: dict[str, dict] = {}
    with atomic_directory(output_dir, "demo-split", force=force, inputs=[data_dir]) as tmp:
        for group in groups:
            folder = data_dir / group
            if folder.is_dir():
                lines, origin = read_group(folder), str(folder)
            elif group == "code":
                lines, origin = stdlib_code_records(budget.code_bytes), "python standard library (.py files)"
            else:
                raise ChatflowError(f"{data_dir}: missing group folder {group}/ (expected {', '.join(groups)})")
            spec = next(g for g in base.groups if g.name == group).sources[0] if base is not None else None
            train, held = split_records(lines, group, budget, seed, spec)
            for split, part in zip(SPLITS, (train, held)):
                target = tmp / split / group
                target.mkdir(parents=True)
                (target / "data.jsonl").write_text("".join(line + "\n" for line in part), encoding="utf-8")
            stats[group] = {"origin": origin, "documents": len(lines), "train_documents": len(train),
                            "heldout_documents": len(held), "train_chars": sum(map(len, train)),
                            "heldout_chars": sum(map(len, held))}
        (tmp / "split.json").write_text(json.dumps({"seed": seed, "budget": budget.__dict__, "groups": stats,
                                                    "rule": "chatflow_plugin.data.split (xxh3_64 of the rendered text)"},
                                                   indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def iter_texts(jsonl: Path):
    """Every string value of every record (for tokenizer training and character mining)."""
    for _, record in read_jsonl(jsonl):
        yield from json_strings(record)
