"""Data for the demo: each group's documents split into train and held-out BEFORE tokenization.

The input folder has one sub-folder per group of the demo's base mixture (:mod:`.groups`: ``en_corpus``,
``zh_corpus``, ``parallel``, ``en_inst``, ``zh_inst``, ``code`` for the default, ``ja_corpus`` ... for the Japanese
one) of ``*.jsonl`` files (compressed, ``.parquet`` or ``.arrow`` files too: :mod:`chatflow_plugin.data.inputs`):
the layout of the bundled ``corpora/``. A missing ``code`` folder is replaced by the Python standard library's own
``.py`` files read at run time.

The split is ``chatflow preprocess --split``'s (:mod:`chatflow_plugin.data.split`): a record's part follows from
its rendered text's hash alone, with the group's budget turned into fractions. One split of three parts,
``valid:h/2,test:h/2,train:t`` (the held-out share h: about ``heldout_chars`` characters, at most
``heldout_max_fraction`` of the documents; the training share t capped at ``train_chars``, the rest left out):

- ``train/``: what every run trains on (and the tokenizer and the vocabulary expansion learn from);
- ``heldout/``: the held-out documents, ``valid`` and ``test`` together in input order (the ablation's
  evaluation set; the same documents as a two-part split ``heldout:h,train:t``, since the parts take the same
  stretches of the hash range);
- ``valid/`` and ``test/``: its two halves (``chatflow demo --search``: the search validates on ``valid`` and
  scores its final re-runs on ``test``, which it never looked at).

So no held-out text is ever trained on, duplicates included, and the trainer (and ``chatflow search``, for the
test part) checks it again from the shards' document hashes.
"""
from __future__ import annotations

import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.formats import render
from ..data.inputs import COMPRESSION_SUFFIXES, iter_json_records
from ..data.mixture import SourceSpec
from ..data.split import SplitSpec, document_hashes
from ..files import json_strings, read_jsonl
from ..outputs import OutputKind, atomic_directory
from ..errors import ChatflowError, DataError
from .groups import base_mixture

GROUP_DIRS = tuple(base_mixture().group_names)   # one folder per group of the default mixture, named as the group
SPLITS = ("train", "heldout", "valid", "test")     # heldout = valid + test (see above)
SPLIT_KIND = OutputKind("demo-split", files=("split.json",), folders=SPLITS)   # chatflow_plugin.outputs
MIN_HELDOUT = 2        # documents: one for validation, one for test
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
                  source: SourceSpec | None = None) -> dict[str, list[str]]:
    """``{"train", "heldout", "valid", "test": lines}`` (see the module docstring): ``chatflow preprocess
    --split``'s rule over the records' rendered texts (``source``: how a record becomes text; default a corpus of
    ``{"text"}``), with the budget as the parts' fractions. Records that do not render are left out
    (preprocessing would skip them). A group too small for its fraction still holds out two documents (the first
    in the split's hash order), one in each of ``valid`` and ``test``."""
    source = source or SourceSpec(name=group, kind="corpus", paths=("-",))
    texts, kept = [], []
    for line in lines:
        try:
            text, _ = render(source.kind, json.loads(line), text_field=source.text_field, fields=source.fields)
        except DataError:
            continue
        texts.append(text)
        kept.append(line)
    if len(kept) < MIN_HELDOUT + 1:
        raise ChatflowError(f"group {group}: needs at least {MIN_HELDOUT + 1} documents (one to train on, one to "
                            f"validate on, one to test on), found {len(kept)}")
    chars = max(1, sum(map(len, texts)))
    # about heldout_chars characters, two documents expected at the least, at most the budget's fraction
    held_fraction = min(budget.heldout_max_fraction, max(budget.heldout_chars / chars, MIN_HELDOUT / len(kept)))
    train_fraction = 1.0 - held_fraction
    if budget.train_chars is not None:
        train_fraction = min(train_fraction, budget.train_chars / chars)
    spec = SplitSpec((("valid", held_fraction / 2), ("test", held_fraction / 2), ("train", train_fraction)), seed)
    hashes = document_hashes(texts)
    parts, order = spec.assign(hashes), spec.order(hashes)
    valid, test, train = range(3)
    held = np.flatnonzero(parts <= test)
    missing = MIN_HELDOUT - len(np.unique(hashes[held]))
    if missing > 0:      # too small for its fraction: the first other documents in hash order are held out too,
        others = np.flatnonzero(parts > test)           # each with every copy of it (a copy left in training
        ranked = others[np.argsort(order[others], kind="stable")]                      # would be trained on)
        _, first = np.unique(hashes[ranked], return_index=True)
        parts[np.isin(hashes, hashes[ranked[np.sort(first)][:missing]])] = test
        held = np.flatnonzero(parts <= test)
    by_order = held[np.argsort(order[held], kind="stable")]
    if not (parts[held] == valid).any():
        parts[hashes == hashes[by_order[0]]] = valid
    if not (parts[held] == test).any():
        parts[hashes == hashes[by_order[-1]]] = test
    out = {"train": [line for line, part in zip(kept, parts) if part == train],
           "heldout": [line for line, part in zip(kept, parts) if part <= test],
           "valid": [line for line, part in zip(kept, parts) if part == valid],
           "test": [line for line, part in zip(kept, parts) if part == test]}
    if not out["train"]:
        raise ChatflowError(f"group {group}: nothing left to train on after holding out {len(out['heldout'])} "
                            f"documents")
    return out


def prepare_data(data_dir: str | os.PathLike, output_dir: str | os.PathLike, budget: SplitBudget,
                 seed: int = 0, force: bool = False, groups: tuple[str, ...] | None = None, base=None) -> dict:
    """Write ``<output_dir>/{train,heldout,valid,test}/<group>/data.jsonl`` for every group of the base mixture ``base``
    (default: the default one; ``groups``: only those); returns per-group counts."""
    base = base or base_mixture()
    groups = tuple(groups or base.group_names)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ChatflowError(f"data folder not found: {data_dir}")
    stats: dict[str, dict] = {}
    with atomic_directory(output_dir, SPLIT_KIND, force=force, inputs=[data_dir]) as tmp:
        for group in groups:
            folder = data_dir / group
            if folder.is_dir():
                lines, origin = read_group(folder), str(folder)
            elif group == "code":
                lines, origin = stdlib_code_records(budget.code_bytes), "python standard library (.py files)"
            else:
                raise ChatflowError(f"{data_dir}: missing group folder {group}/ (expected {', '.join(groups)})")
            spec = next(g for g in base.groups if g.name == group).sources[0] if base is not None else None
            parts = split_records(lines, group, budget, seed, spec)
            for split in SPLITS:
                target = tmp / split / group
                target.mkdir(parents=True)
                (target / "data.jsonl").write_text("".join(line + "\n" for line in parts[split]), encoding="utf-8")
            stats[group] = {"origin": origin, "documents": len(lines),
                            **{f"{split}_documents": len(parts[split]) for split in SPLITS},
                            **{f"{split}_chars": sum(map(len, parts[split])) for split in SPLITS}}
        record = {"seed": seed, "budget": budget.__dict__, "groups": stats, "parts": list(SPLITS),
                  "heldout": "valid + test", "rule": "chatflow_plugin.data.split (xxh3_64 of the rendered text)"}
        (tmp / "split.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def iter_texts(jsonl: Path):
    """Every string value of every record (for tokenizer training and character mining)."""
    for _, record in read_jsonl(jsonl):
        yield from json_strings(record)
