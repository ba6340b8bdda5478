"""The search's three shard sets, what identifies them, and what makes a score on them trustworthy.

- ``--dataset_dir`` (``train``): every run trains on it;
- ``--heldout_dir`` (``valid``): the proxies' validation losses, which the search fits and optimises;
- ``--test_dir`` (``test``): the final re-runs' scores, which no choice of the search looked at.

The usual way to make them is one ``chatflow preprocess --split train:0.98,valid:0.01,test:0.01`` (``D/train``,
``D/valid``, ``D/test``: disjoint by construction). However they were made, :func:`check_datasets` refuses a set
of another tokenizer or sequence length than the training set, a validation or test set without every group of
the mixture, and any two sets that share a document (:func:`chatflow_plugin.data.split.check_disjoint`, from the
document hashes every dataset records). A set's *identity* (:func:`identity`: its path, the checksum of its
content and the split it is a part of) is recorded in the search's ``search.json``, so a folder whose runs were
scored on other data is refused rather than mixed with new runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from ..data.shards import MANIFEST, ShardSet
from ..data.split import check_disjoint
from ..errors import ChatflowError
from ..files import sha256_file

ROLES = {"dataset_dir": "training", "heldout_dir": "validation", "test_dir": "test"}   # flag -> role, in order


def split_folder_hint(path: str | Path) -> str:
    """For a folder that is not a shard directory but holds the parts of a split (``chatflow preprocess
    --split``'s output), the flags that name them; else ''."""
    folder = Path(path)
    parts = sorted(p.name for p in folder.iterdir() if (p / MANIFEST).is_file()) if folder.is_dir() else []
    if not parts:
        return ""
    named = {"dataset_dir": "train", "heldout_dir": "valid", "test_dir": "test"}
    if all(name in parts for name in named.values()):
        shown = " ".join(f"--{flag} {folder / name}" for flag, name in named.items())
        return f"; it holds the parts {', '.join(parts)} of a split: give {shown}"
    return f"; it holds the parts {', '.join(parts)} of a split: give each as its own flag"


def open_dataset(flag: str, path: str) -> ShardSet:
    """The shard set ``--flag path`` names (its manifest and sizes checked; the trainers verify the files)."""
    if not Path(path, MANIFEST).is_file():
        raise ChatflowError(f"--{flag} {path}: not a shard directory (no {MANIFEST}){split_folder_hint(path)}")
    return ShardSet(path, verify=False)


def identity(shards: ShardSet) -> dict:
    """What a result on ``shards`` depends on: its resolved path, the checksum of its content (the tokens every
    run reads; of the manifest for a dataset written without checksums) and the split it is a part of."""
    content = shards.content_checksum() or f"manifest sha256:{sha256_file(shards.manifest_path)}"
    split = shards.split
    if split is not None:
        split = {k: split[k] for k in ("part", "parts", "seed", "hash") if k in split}
    return {"path": str(shards.path.resolve()), "content": content, "split": split}


def describe(record: Mapping | None) -> str:
    """One line for the report: where a recorded set is and which part of which split."""
    if not record:
        return "none"
    split = record.get("split")
    part = (f"part {split['part']!r} of the split {','.join(f'{n}:{f:g}' for n, f in split['parts'])} "
            f"(seed {split['seed']})" if split else "not a part of a recorded split")
    return f"{record['path']} ({part}; content {record['content']})"


def _groups_missing(shards: ShardSet, groups: Mapping[str, Sequence[str]]) -> list[str]:
    """Groups of the mixture (group -> its source names) with no windows in ``shards``, read as the trainers'
    held-out sets read them (the group's sources, else the dataset's own group of that name)."""
    missing = []
    for group, sources in groups.items():
        found = [s for s in shards.sources if s.name in sources] or [s for s in shards.sources if s.group == group]
        if not any(s.windows for s in found):
            missing.append(group)
    return missing


def check_datasets(sets: Mapping[str, ShardSet], groups: Mapping[str, Sequence[str]]) -> None:
    """Refuse sets (flag -> :class:`ShardSet`, ``dataset_dir`` first) that cannot give comparable, honest scores:
    see the module docstring."""
    train = sets["dataset_dir"]
    for flag, shards in sets.items():
        if flag == "dataset_dir":
            continue
        if (shards.tokenizer.get("kind"), shards.tokenizer["sha256"]) != \
                (train.tokenizer.get("kind"), train.tokenizer["sha256"]):
            raise ChatflowError(f"--{flag} {shards.path} was tokenized with another tokenizer than --dataset_dir "
                                f"{train.path}")
        if shards.seq_length != train.seq_length:
            raise ChatflowError(f"--{flag} {shards.path}: seq_length {shards.seq_length} differs from --dataset_dir's "
                                f"{train.seq_length}")
        missing = _groups_missing(shards, groups)
        if missing:
            raise ChatflowError(f"--{flag} {shards.path} has no documents of group(s) {', '.join(missing)}: every "
                                f"group's {ROLES[flag]} loss is needed (a split leaves a small source out of a part "
                                f"that gets none of its documents: give that part a larger share)")
    flags = list(sets)
    for i, first in enumerate(flags):
        for second in flags[i + 1:]:
            why = ("a held-out record must never be trained on" if first == "dataset_dir" else
                   "the test set must hold only documents the search never looked at")
            check_disjoint(sets[first], sets[second], f"--{first}", f"--{second}", why)
