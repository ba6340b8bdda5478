"""Held-out splits: every record of a corpus goes to one named part (``train``, ``valid``, ``test`` ...), decided
before tokenization by the record's own text, and a held-out part can be proven disjoint from a training set.

**Which part a record goes to.** A record's *document hash* is the 64-bit xxh3 hash of its training text (the
rendered document exactly as it is tokenized, UTF-8; :mod:`.formats`). Mixed with the split's seed (splitmix64),
it is a number u uniform in [0, 2^64); the parts take consecutive stretches of that range in the order given, each
as wide as its fraction, and the record goes to the part whose stretch holds u. Hence the split is

* deterministic: a function of (text, seed, parts) alone, the same for any number of workers or chunk size;
* by record, and stable under adding files: adding, removing or reordering input files or records never moves
  another record to another part (a held-out record stays held out as the corpus grows, unlike a split by
  position such as Megatron-LM's ``--split 969,30,1`` over document indices);
* duplicate-proof: identical texts always land in the same part, so a document repeated in a corpus (or in two
  sources) can never be trained on in one copy and evaluated on in another;
* container-blind: the same records give the same parts from JSONL, compressed JSONL, parquet or a ``datasets``
  folder, since only the rendered text counts.

Fractions that sum to less than 1 leave the rest out (as ``datasets``' ``train_test_split`` does with sizes that
do not add up): ``train:0.1,valid:0.001`` writes a tenth of the corpus for training. Weights that sum to more than
1 are normalised (Megatron-LM's ``--split 969,30,1``).

**Proof of disjointness.** Every shard directory records each source's document hashes (``<source>.docs.bin``:
one ``uint64`` per document, in order; :mod:`.shards`), whether or not it was split. :func:`check_disjoint` reads
a held-out set's hashes and streams a training set's against them (flat memory): a trainer given a held-out set
that shares any document with its training set refuses to start, whichever way the two sets were built.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import ChatflowError

DOCUMENT_HASH = "xxh3_64"                  # of the UTF-8 rendered text; recorded in every manifest
DEFAULT_NAMES = {2: ("train", "valid"), 3: ("train", "valid", "test")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TWO64 = 1 << 64


def document_hashes(texts: Iterable[str]) -> np.ndarray:
    """The document hash of every text (``uint64``): xxh3-64 of its UTF-8 bytes, seed 0."""
    from xxhash import xxh3_64_intdigest

    return np.fromiter((xxh3_64_intdigest(t.encode("utf-8")) for t in texts), dtype=np.uint64)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 that spreads every input bit over the output."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class SplitSpec:
    """The parts of a split, ``(name, fraction)`` in order (fractions of the records, summing to at most 1: the
    rest is left out), and its seed."""

    parts: tuple[tuple[str, float], ...]
    seed: int = 0

    def __post_init__(self):
        if len(self.parts) < 2:
            raise ChatflowError(f"a split needs at least two parts (a training part and a held-out one), got "
                                f"{[n for n, _ in self.parts]}")
        names = [n for n, _ in self.parts]
        for name in names:
            if not _NAME.match(name):
                raise ChatflowError(f"split part name {name!r}: letters, digits, '_', '-' and '.', starting with a "
                                    f"letter or digit (it names a folder)")
        if len(set(names)) != len(names):
            raise ChatflowError(f"split part names must differ, got {names}")
        for name, fraction in self.parts:
            if not (fraction > 0):
                raise ChatflowError(f"split part {name!r}: its share must be positive, got {fraction}")
        if sum(f for _, f in self.parts) > 1 + 1e-9:
            raise ChatflowError(f"split fractions sum to {sum(f for _, f in self.parts)} > 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ChatflowError(f"the split seed must be a non-negative integer, got {self.seed!r}")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.parts]

    @property
    def left_out(self) -> float:
        """The fraction of the records no part takes."""
        rest = 1.0 - sum(f for _, f in self.parts)
        return rest if rest > 1e-9 else 0.0

    def _bounds(self) -> np.ndarray:
        """Upper ends of the parts' stretches of [0, 2^64), exclusive (the last one clipped to 2^64 - 1 and taken
        inclusively when the parts cover everything)."""
        ends, total = [], 0.0
        for _, fraction in self.parts:
            total += fraction
            ends.append(min(_TWO64 - 1, int(round(min(total, 1.0) * _TWO64))))
        return np.array(ends, dtype=np.uint64)

    def order(self, hashes: np.ndarray) -> np.ndarray:
        """Where every document hash falls in [0, 2^64) under this split's seed (``uint64``): the parts take
        consecutive stretches of it."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        return _mix(hashes ^ _mix(np.array([self.seed], dtype=np.uint64) + _GOLDEN)[0])

    def assign(self, hashes: np.ndarray) -> np.ndarray:
        """The part index of every document hash (``len(parts)``: left out)."""
        u = self.order(hashes)
        bounds = self._bounds()
        index = np.searchsorted(bounds, u, side="right")
        if self.left_out == 0:       # the last part also takes u = 2^64 - 1
            index = np.minimum(index, len(self.parts) - 1)
        return index

    def to_json(self, part: str | None = None) -> dict:
        """What a manifest records: the parts, the seed, the hash rule, and (for one part's manifest) which."""
        out = {"parts": [[n, f] for n, f in self.parts], "seed": self.seed, "hash": DOCUMENT_HASH,
               "left_out": round(self.left_out, 12)}
        return {"part": part, **out} if part is not None else out


def parse_split(text: str, seed: int = 0) -> SplitSpec:
    """``--split``: ``train:0.98,valid:0.01,test:0.01`` (named fractions), or Megatron-LM's ``969,30,1`` (weights
    normalised; parts named train,valid[,test]). Fractions summing to less than 1 leave the rest out; weights
    summing to more than 1 are normalised."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    named, weights = [], []
    for item in items:
        name, sep, value = item.rpartition(":")
        try:
            weight = float(value)
        except ValueError:
            raise ChatflowError(f"--split {text!r}: {item!r} is not NAME:SHARE or a number") from None
        if weight != weight or weight in (float("inf"), float("-inf")):
            raise ChatflowError(f"--split {text!r}: {item!r} is not a finite number")
        named.append(name if sep else None)
        weights.append(weight)
    if not items:
        raise ChatflowError("--split is empty; e.g. --split train:0.98,valid:0.01,test:0.01 or --split 969,30,1")
    if any(n is None for n in named) and not all(n is None for n in named):
        raise ChatflowError(f"--split {text!r}: name every part (train:0.98,valid:0.02) or none (98,2)")
    if named[0] is None:
        if len(weights) not in DEFAULT_NAMES:
            raise ChatflowError(f"--split {text!r}: without names give 2 or 3 shares (train,valid[,test]); name "
                                f"the parts for more (train:0.9,valid:0.05,test:0.03,extra:0.02)")
        named = list(DEFAULT_NAMES[len(weights)])
    for name, weight in zip(named, weights):
        if weight <= 0:
            raise ChatflowError(f"--split {text!r}: part {name!r} must have a positive share, got {weight}")
    total = sum(weights)
    if total > 1 + 1e-9:
        weights = [w / total for w in weights]
    return SplitSpec(tuple(zip(named, weights)), seed)


# ---------------------------------------------------------------------------------------------
# Disjointness of a held-out set and a training set


def _sorted_unique(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(arrays)) if arrays else np.empty(0, np.uint64)


def overlap(train, heldout, block: int = 1 << 22) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Documents two shard sets share: ``{(training source, held-out source): documents}``, and the sources of
    either set that record no document hashes (written before they were recorded: nothing to check them by).
    The held-out hashes are held in memory; the training ones are streamed ``block`` at a time."""
    unchecked = [f"{s.path}:{name}" for s in (train, heldout) for name in s.sources_without_documents()]
    held = {name: _sorted_unique([heldout.document_hashes(name)]) for name in heldout.by_name
            if heldout.has_documents(name)}
    shared: dict[tuple[str, str], int] = {}
    if not held:
        return shared, unchecked
    everything = _sorted_unique(list(held.values()))
    for source in train.by_name:
        if not train.has_documents(source):
            continue
        hashes = train.document_hashes(source)
        for lo in range(0, len(hashes), block):
            part = np.asarray(hashes[lo:lo + block])
            found = part[np.isin(part, everything, assume_unique=False)]
            if not len(found):
                continue
            for name, values in held.items():
                count = int(np.isin(found, values).sum())
                if count:
                    shared[(source, name)] = shared.get((source, name), 0) + count
    return shared, unchecked


def check_disjoint(train, heldout, train_flag: str = "--dataset_dir", heldout_flag: str = "--heldout_dir",
                   why: str = "a held-out record must never be trained on") -> None:
    """Refuse a held-out set that shares a document with the training set (both :class:`~.shards.ShardSet`;
    any two sets that must not overlap, ``why`` saying why); warn when either has sources without document hashes
    (an older dataset), which cannot be checked."""
    shared, unchecked = overlap(train, heldout)
    if shared:
        total = sum(shared.values())
        shown = ", ".join(f"{h} ({n} in {train_flag}'s source {t})" for (t, h), n in sorted(shared.items())[:4])
        more = f" and {len(shared) - 4} more pairs of sources" if len(shared) > 4 else ""
        raise ChatflowError(
            f"{heldout_flag} {heldout.path} shares {total} document(s) with {train_flag} {train.path}: source(s) "
            f"{shown}{more}; {why}. Build both from one `chatflow preprocess "
            f"--split train:0.98,valid:0.01,test:0.01 ...` (disjoint by construction)")
    if unchecked:
        shown = ", ".join(unchecked[:3]) + (f" and {len(unchecked) - 3} more" if len(unchecked) > 3 else "")
        print(f"warning: cannot check that {heldout_flag} is disjoint from {train_flag}: {shown} record no "
              f"document hashes (preprocessed by an older chatflow-plugin); preprocess again to have it checked",
              file=sys.stderr)
