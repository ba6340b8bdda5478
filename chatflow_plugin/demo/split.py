"""Data for the demo: each group's documents split into train and held-out BEFORE tokenization.

The input folder has one sub-folder per group of the demo's base mixture (:mod:`.groups`: ``en_corpus``,
``zh_corpus``, ``parallel``, ``en_inst``, ``zh_inst``, ``code`` for the default, ``ja_corpus`` ... for the Japanese
one) of ``*.jsonl`` files: the layout of the bundled ``corpora/``. A missing ``code`` folder is replaced by the Python standard library's own ``.py`` files read
at run time. Documents are shuffled with a fixed seed per group; the first ones, up to a
character budget, become the held-out set, so no held-out text is ever trained on.
"""
from __future__ import annotations

import json
import os
import random
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..files import json_strings, read_jsonl
from ..outputs import OutputKind, atomic_directory
from ..errors import ChatflowError, DataError
from .groups import base_mixture

GROUP_DIRS = tuple(base_mixture().group_names)   # one folder per group of the default mixture, named as the group
SPLITS = ("train", "heldout")
SPLIT_KIND = OutputKind("demo-split", files=("split.json",), folders=SPLITS)   # chatflow_plugin.outputs


@dataclass(frozen=True)
class SplitBudget:
    heldout_chars: int              # per group: held-out documents until this many characters ...
    heldout_max_fraction: float     # ... but never more than this fraction of the group's documents
    train_chars: int | None         # per group cap on training characters (None: everything left)
    code_bytes: int                 # size of the stdlib code corpus when the input has none


def read_group(folder: Path) -> list[str]:
    """All records of a group folder as JSON lines (files in sorted order); bad JSON is an error."""
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ChatflowError(f"{folder}: no *.jsonl files")
    lines: list[str] = []
    for path in files:
        for number, record, line in read_jsonl(path, with_text=True):
            if not isinstance(record, dict):
                raise DataError("expected a JSON object", f"{path}:{number}")
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


def split_records(lines: list[str], group: str, budget: SplitBudget, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, heldout): a seeded shuffle, held-out documents first, disjoint by construction."""
    order = list(range(len(lines)))
    random.Random(zlib.crc32(f"{seed}:{group}".encode())).shuffle(order)
    max_held = max(1, int(len(lines) * budget.heldout_max_fraction))
    if len(lines) < 2:
        raise ChatflowError(f"group {group}: needs at least 2 documents to hold one out, found {len(lines)}")
    held, chars, cut = [], 0, 0
    for cut, index in enumerate(order):
        if chars >= budget.heldout_chars or len(held) >= max_held:
            break
        held.append(lines[index])
        chars += len(lines[index])
    else:
        cut = len(order)
    train, chars = [], 0
    for index in order[cut:]:
        if budget.train_chars is not None and chars >= budget.train_chars:
            break
        train.append(lines[index])
        chars += len(lines[index])
    if not train:
        raise ChatflowError(f"group {group}: nothing left to train on after holding out {len(held)} documents")
    return train, held


def prepare_data(data_dir: str | os.PathLike, output_dir: str | os.PathLike, budget: SplitBudget,
                 seed: int = 0, force: bool = False, groups: tuple[str, ...] = GROUP_DIRS) -> dict:
    """Write ``<output_dir>/{train,heldout}/<group>/data.jsonl`` for every one of ``groups`` (default: the
    default base mixture's); returns per-group counts."""
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
            train, held = split_records(lines, group, budget, seed)
            for split, part in zip(SPLITS, (train, held)):
                target = tmp / split / group
                target.mkdir(parents=True)
                (target / "data.jsonl").write_text("".join(line + "\n" for line in part), encoding="utf-8")
            stats[group] = {"origin": origin, "documents": len(lines), "train_documents": len(train),
                            "heldout_documents": len(held), "train_chars": sum(map(len, train)),
                            "heldout_chars": sum(map(len, held))}
        (tmp / "split.json").write_text(json.dumps({"seed": seed, "budget": budget.__dict__, "groups": stats},
                                                   indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def iter_texts(jsonl: Path):
    """Every string value of every record (for tokenizer training and character mining)."""
    for _, record in read_jsonl(jsonl):
        yield from json_strings(record)
