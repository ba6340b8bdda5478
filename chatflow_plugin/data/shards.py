"""Token shards: one memory-mapped flat token file per source, a prompt mask, and ``manifest.json``.

Layout of a dataset directory::

    manifest.json              written last; a directory without it is refused
    <source>.tokens.bin        windows * (seq_length + 1) tokens, uint16 if the vocabulary fits
    <source>.mask.bin          instruction sources only: one uint8 per token, 1 = prompt token
    <source>.docs.bin          one uint64 per document: its document hash (:mod:`.split`), in input order

A source's documents (BOS + tokens + EOS each) are concatenated in input order and cut into
consecutive windows of ``seq_length + 1`` tokens (the full-sentence strategy: windows cross document
boundaries). The last window is filled up with ``pad_tokens`` EOS tokens that carry no loss, so no
token of the input is dropped.

Nothing is trusted as found. Loading checks every manifest field a reader relies on (types, bounds, the
dtype the vocabulary implies, file names that stay inside the directory, sizes) and, unless told not to
(``verify=False``, ``--no_verify_data``), the manifest's own checksum, every token and mask file's
checksum, every token id against the vocabulary and every mask value, in one read of each file.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import checksum_algorithm, file_checksum, new_checksum, resolve_from_file, sha256_file
from ..errors import ChatflowError
from ..outputs import OutputKind
from ..tokenizer import HF, SENTENCEPIECE, Tokenizer, as_tokenizer
from .mixture import parse_mixture

MANIFEST = "manifest.json"
FORMAT_NAME = "chatflow-shards"
FORMAT_VERSION = 1
PROMPT = 1   # mask value of a prompt token
DOCUMENTS_DTYPE = np.dtype("<u8")   # a document hash per document (little-endian uint64)
SEAL = "manifest_checksum"
VERIFY_HINT = "preprocess again (or pass --no_verify_data to load it unchecked)"
CHECKSUMS_SINCE = (0, 1, 0)   # every release of chatflow-plugin writes checksums and the seal (0.1.0 is the first)


def writer_version(created_by: Any) -> tuple[int, ...] | None:
    """The version in a manifest's ``created_by`` (``"chatflow-plugin 0.1.0"`` -> (0, 1, 0)); None if it names none."""
    if not isinstance(created_by, str) or not created_by.startswith("chatflow-plugin "):
        return None
    parts = created_by.split(" ", 1)[1].split(".")
    numbers = []
    for part in parts[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            return None
        numbers.append(int(digits))
    return tuple(numbers)


def _listed_files(folder: Path) -> list[str]:
    """The token, mask and document files a dataset folder's manifest lists (none if it is unreadable)."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        names = [info.get(key) for info in manifest["sources"]
                 for key in ("tokens_file", "mask_file", "documents_file")]
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return []
    return [name for name in names if isinstance(name, str) and name and "/" not in name and "\\" not in name]


# the output kind of a dataset folder (chatflow_plugin.outputs): its manifest and the files the manifest lists;
# with a held-out split (chatflow preprocess --split), one folder per part, each a dataset of its own
DATASET_KIND = OutputKind("dataset", files=(MANIFEST,), folders=None, listed=_listed_files, nested=True)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def manifest_checksum(manifest: dict, algorithm: str | None = None) -> str:
    """The checksum of a manifest's content, ``manifest_checksum`` left out (keys sorted, compact JSON)."""
    body = {k: v for k, v in manifest.items() if k != SEAL}
    hasher = new_checksum(algorithm)
    hasher.update(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return hasher.text()


def seal_manifest(manifest: dict) -> dict:
    """``manifest`` with its ``manifest_checksum``: call it last, once every key is in."""
    return dict(manifest, **{SEAL: manifest_checksum(manifest)})


@dataclass
class SourceShard:
    name: str
    group: str
    kind: str
    windows: int
    tokens: np.ndarray                 # (windows, window_length) memory map
    mask: np.ndarray | None            # (windows, window_length) memory map, or None
    pad_tokens: int
    info: dict

    def window(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens (window_length,) and a boolean 'carries loss as a target' vector of the same length.

        ``loss[i]`` is False for padding and, if the caller wants response-only loss, for prompts
        (use :meth:`prompt_mask`). Position 0 is never a target.
        """
        tokens = np.asarray(self.tokens[row])
        loss = np.ones(len(tokens), dtype=bool)
        if row == self.windows - 1 and self.pad_tokens:
            loss[len(tokens) - self.pad_tokens:] = False
        return tokens, loss

    def prompt_mask(self, row: int) -> np.ndarray:
        if self.mask is None:
            return np.zeros(self.tokens.shape[1], dtype=bool)
        return np.asarray(self.mask[row]) == PROMPT


class ShardSet:
    """A preprocessed dataset directory, validated and memory-mapped.

    ``tokenizer`` (a path or a :class:`~chatflow_plugin.tokenizer.Tokenizer`): refuse the dataset unless it was
    built with this tokenizer (same kind, sha256, BOS and EOS ids).
    ``verify`` (default): refuse it unless the manifest and every token and mask file match their checksums,
    every token id is below the vocabulary size and every mask value is 0 or 1 (one read of each file; a
    process checks a directory once). Without ``verify`` only the manifest's fields and the files' sizes are
    checked. ``verify_sources``: refuse it unless every input file it was built from is still there with the
    sha256 the manifest recorded (this reads every input file once; for a run that must be reproducible from
    the corpora on disk).
    """

    def __init__(self, path: str | os.PathLike, tokenizer: "str | os.PathLike | Tokenizer | None" = None,
                 verify_sources: bool = False, verify: bool = True):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        self.manifest_path = manifest_path
        if not manifest_path.is_file():
            raise ChatflowError(f"{self.path} is not a complete chatflow dataset: {MANIFEST} is missing "
                                f"(was preprocessing interrupted?)")
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            raise ChatflowError(f"{manifest_path}: unreadable manifest: {exc}") from None
        m = self.manifest
        if not isinstance(m, dict) or m.get("format") != FORMAT_NAME or m.get("version") != FORMAT_VERSION:
            raise ChatflowError(f"{manifest_path}: not a {FORMAT_NAME} v{FORMAT_VERSION} manifest")
        self._check_fields()
        self.seq_length = int(m["seq_length"])
        self.window_length = self.seq_length + 1
        self.dtype = np.dtype(m["dtype"])
        self.tokenizer = m["tokenizer"]
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)
        self.sources: list[SourceShard] = []
        for info in m["sources"]:
            self.sources.append(self._open_source(info))
        self.by_name = {s.name: s for s in self.sources}
        if verify:
            self.verify()
        if verify_sources and (changed := self.verify_inputs()):
            shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise ChatflowError(f"{self.path} no longer matches its inputs: {shown} changed or missing since "
                                f"preprocessing (sha256 in {MANIFEST}); preprocess again")

    def check_tokenizer(self, tokenizer: "str | os.PathLike | Tokenizer") -> None:
        """Refuse a tokenizer other than the one the dataset was built with."""
        difference = as_tokenizer(tokenizer).differs_from(self.tokenizer)
        if difference:
            raise ChatflowError(f"{self.path} was built with another tokenizer: {difference}; preprocess again "
                                f"with this tokenizer")

    # -- the manifest's fields -------------------------------------------------------------
    def _field(self, where: str, value: Any, ok: bool, expected: str) -> None:
        if not ok:
            raise ChatflowError(f"{self.manifest_path}: {where}: expected {expected}, got {value!r}; the "
                                f"manifest is damaged or was edited, preprocess again")

    def _check_fields(self) -> None:
        """Every field a reader relies on, with its type and bounds."""
        m = self.manifest
        seq = m.get("seq_length")
        self._field("seq_length", seq, _is_int(seq) and seq > 0, "a positive integer")
        tok = m.get("tokenizer")
        self._field("tokenizer", tok, isinstance(tok, dict), "an object")
        vocab = tok.get("vocab_size")
        self._field("tokenizer.vocab_size", vocab, _is_int(vocab) and vocab > 0, "a positive integer")
        sha = tok.get("sha256")
        self._field("tokenizer.sha256", sha, isinstance(sha, str) and len(sha) == 64 and
                    all(c in "0123456789abcdef" for c in sha) and sha.strip("0"), "a sha256 hex digest")
        self._field("tokenizer.kind", tok.get("kind"), tok.get("kind", SENTENCEPIECE) in (SENTENCEPIECE, HF),
                    f"{SENTENCEPIECE!r} or {HF!r}")
        self._field("tokenizer.eos_id", tok.get("eos_id"), _is_int(tok.get("eos_id")) and 0 <= tok["eos_id"] < vocab,
                    f"an id below the vocabulary size {vocab}")
        bos = tok.get("bos_id")      # None: a tokenizer without BOS (Qwen2 style)
        self._field("tokenizer.bos_id", bos, bos is None or (_is_int(bos) and 0 <= bos < vocab),
                    f"null or an id below the vocabulary size {vocab}")
        dtype = token_dtype(vocab).name
        self._field("dtype", m.get("dtype"), m.get("dtype") == dtype,
                    f"{dtype!r} (the dtype of a {vocab}-piece vocabulary)")
        mixture = m.get("mixture")
        self._field("mixture", mixture, isinstance(mixture, dict) and isinstance(mixture.get("groups"), list),
                    "a mixture object with groups")
        try:   # the mixture recorded is checked as a mixture file is (a NaN T_grow, a negative alpha ...)
            parse_mixture(mixture, where="mixture")
        except ChatflowError as exc:
            raise ChatflowError(f"{self.manifest_path}: {exc}; the manifest is damaged or was edited, preprocess "
                                f"again") from None
        groups = {g.get("name") for g in mixture["groups"] if isinstance(g, dict)}
        sources = m.get("sources")
        self._field("sources", sources, isinstance(sources, list) and sources, "a non-empty list")
        window = seq + 1
        names = set()
        for i, info in enumerate(sources):
            where = f"sources[{i}]"
            self._field(where, info, isinstance(info, dict), "an object")
            name = info.get("name")
            self._field(f"{where}.name", name, isinstance(name, str) and name and name not in names,
                        "a unique source name")
            names.add(name)
            where = f"{where} ({name})"
            self._field(f"{where}.group", info.get("group"), info.get("group") in groups,
                        f"one of the mixture's groups {sorted(g for g in groups if isinstance(g, str))}")
            self._field(f"{where}.kind", info.get("kind"), isinstance(info.get("kind"), str), "a source kind")
            windows, pad, tokens = info.get("windows"), info.get("pad_tokens"), info.get("tokens")
            self._field(f"{where}.windows", windows, _is_int(windows) and windows > 0, "a positive integer")
            self._field(f"{where}.pad_tokens", pad, _is_int(pad) and 0 <= pad < window,
                        f"an integer in [0, {window})")
            self._field(f"{where}.tokens", tokens, _is_int(tokens) and tokens == windows * window - pad,
                        f"windows x {window} - pad_tokens = {windows * window - pad}")
            self._field(f"{where}.tokens_file", info.get("tokens_file"),
                        self._inside(info.get("tokens_file")), "a file name inside the dataset directory")
            mask = info.get("mask_file")
            self._field(f"{where}.mask_file", mask, mask is None or self._inside(mask),
                        "null or a file name inside the dataset directory")
            for key in ("tokens_checksum", "mask_checksum"):
                value = info.get(key)
                if value is not None:
                    checksum_algorithm(value, f"{self.manifest_path}: {where}.{key}")
            docs = info.get("documents_file")
            self._field(f"{where}.documents_file", docs, docs is None or self._inside(docs),
                        "null or a file name inside the dataset directory")
            if docs is not None:
                records = info.get("records")
                self._field(f"{where}.records", records, _is_int(records) and records > 0, "a positive integer")
                checksum_algorithm(info.get("documents_checksum"), f"{self.manifest_path}: {where}.documents_checksum")
            if mask is not None:
                self._field(f"{where}.mask_checksum", info.get("mask_checksum"),
                            (info.get("mask_checksum") is None) == (info.get("tokens_checksum") is None),
                            "a checksum, as its tokens_file has")
        split = m.get("split")
        self._field("split", split, split is None or (isinstance(split, dict) and isinstance(split.get("part"), str)),
                    "null or an object naming its part")
        if SEAL in m:
            checksum_algorithm(m[SEAL], f"{self.manifest_path}: {SEAL}")

    def _inside(self, name: Any) -> bool:
        """A name the manifest may give a file: relative, and inside the directory once resolved."""
        if not isinstance(name, str) or not name or "\0" in name or os.path.isabs(name):
            return False
        root = os.path.normpath(os.path.abspath(self.path))
        target = os.path.normpath(os.path.join(root, name))
        return target.startswith(root + os.sep)

    def _open_source(self, info: dict) -> SourceShard:
        tokens_path = self.path / info["tokens_file"]
        expected = info["windows"] * self.window_length
        size = tokens_path.stat().st_size if tokens_path.is_file() else -1
        if size != expected * self.dtype.itemsize:
            raise ChatflowError(f"{tokens_path}: expected {expected} tokens ({expected * self.dtype.itemsize} "
                                f"bytes), found {size} bytes; the dataset is damaged, preprocess again")
        tokens = np.memmap(tokens_path, dtype=self.dtype, mode="r", shape=(info["windows"], self.window_length))
        mask = None
        if info.get("mask_file"):
            mask_path = self.path / info["mask_file"]
            if not mask_path.is_file() or mask_path.stat().st_size != expected:
                raise ChatflowError(f"{mask_path}: missing or wrong size; the dataset is damaged, preprocess again")
            mask = np.memmap(mask_path, dtype=np.uint8, mode="r", shape=(info["windows"], self.window_length))
        if info.get("documents_file"):
            docs_path = self.path / info["documents_file"]
            if not docs_path.is_file() or docs_path.stat().st_size != info["records"] * DOCUMENTS_DTYPE.itemsize:
                raise ChatflowError(f"{docs_path}: missing or not {info['records']} document hashes; the dataset is "
                                    f"damaged, preprocess again")
        return SourceShard(name=info["name"], group=info["group"], kind=info["kind"], windows=info["windows"],
                           tokens=tokens, mask=mask, pad_tokens=int(info["pad_tokens"]), info=info)

    # -- content ---------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        return [self.path / name for info in self.manifest["sources"]
                for name in (info["tokens_file"], info.get("mask_file"), info.get("documents_file")) if name]

    def _identity(self) -> tuple:
        stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
                 for p in [self.manifest_path] + self._files()]
        return tuple(stats)

    def verify(self) -> None:
        """Check the manifest's own checksum, then every file's checksum, token ids and mask values (once per
        process for an unchanged directory); raise naming the first file that fails."""
        identity = self._identity()
        if identity in _VERIFIED:
            return
        m = self.manifest
        if SEAL in m and manifest_checksum(m, checksum_algorithm(m[SEAL], SEAL)) != m[SEAL]:
            raise ChatflowError(f"{self.manifest_path}: the manifest does not match its {SEAL}: it was edited or "
                                f"damaged after preprocessing; {VERIFY_HINT}")
        unsealed = [info["name"] for info in m["sources"] if info.get("tokens_checksum") is None]
        if unsealed or SEAL not in m:
            version = writer_version(m.get("created_by"))
            if version is not None and version >= CHECKSUMS_SINCE:
                missing = f"the checksums of {', '.join(unsealed)}" if unsealed else f"its {SEAL}"
                raise ChatflowError(f"{self.manifest_path}: {missing} were removed: {m['created_by']}, which wrote "
                                    f"it, always writes them; {VERIFY_HINT}")
            print(f"warning: {self.path} was written by a chatflow-plugin without checksums ({m.get('created_by')}): "
                  f"its files can be checked only for token ids; preprocess again to have them verified",
                  file=sys.stderr)
        vocab = self.tokenizer["vocab_size"]
        for info in m["sources"]:
            self._verify_file(self.path / info["tokens_file"], info.get("tokens_checksum"), self.dtype, vocab,
                              "token id", f"outside the vocabulary of {vocab} pieces")
            if info.get("mask_file"):
                self._verify_file(self.path / info["mask_file"], info.get("mask_checksum"), np.dtype(np.uint8), 2,
                                  "mask value", "not 0 or 1")
            if info.get("documents_file"):
                self._verify_file(self.path / info["documents_file"], info["documents_checksum"], DOCUMENTS_DTYPE,
                                  None, "document hash", "")
        _VERIFIED.add(identity)

    def _verify_file(self, path: Path, expected: str | None, dtype: np.dtype, bound: int | None, what: str,
                     problem: str) -> None:
        def inspect(block: bytes, offset: int) -> None:
            if bound is None:
                return
            values = np.frombuffer(block, dtype=dtype)
            if len(values) and int(values.max()) >= bound:
                at = int(np.argmax(values >= bound))
                raise ChatflowError(f"{path}: {what} {int(values[at])} at position "
                                    f"{offset // dtype.itemsize + at} is {problem}; the dataset is damaged, "
                                    f"preprocess again")
        algorithm = checksum_algorithm(expected, str(path)) if expected is not None else None
        found = file_checksum(path, algorithm, inspect)
        if expected is not None and found != expected:
            raise ChatflowError(f"{path}: checksum {found} differs from the manifest's {expected}: the file "
                                f"changed or is damaged since preprocessing; {VERIFY_HINT}")

    def content_checksum(self) -> str | None:
        """One checksum of what a trainer reads (tokenizer, sequence length, every source's name, group, token
        and mask checksums and shape): equal for two preprocessings of the same inputs, whatever their time,
        place or version; None for a dataset written without checksums."""
        m = self.manifest
        if any(info.get("tokens_checksum") is None for info in m["sources"]):
            return None
        content = {"tokenizer": m["tokenizer"]["sha256"], "seq_length": m["seq_length"], "dtype": m["dtype"],
                   "sources": [[info[k] for k in ("name", "group", "kind", "windows", "pad_tokens",
                                                  "tokens_checksum", "mask_checksum")] for info in m["sources"]]}
        hasher = new_checksum(checksum_algorithm(m["sources"][0]["tokens_checksum"], str(self.manifest_path)))
        hasher.update(json.dumps(content, sort_keys=True).encode("utf-8"))
        return hasher.text()

    def verify_inputs(self) -> list[str]:
        """Input files that are missing or changed since preprocessing (by sha256), as the manifest names them."""
        changed = []
        for info in self.manifest["sources"]:
            for f in info["files"]:
                path = resolve_from_file(f["path"], self.path / MANIFEST)
                if not path.is_file() or sha256_file(path) != f["sha256"]:
                    changed.append(f["path"])
        return changed

    @property
    def group_names(self) -> list[str]:
        return [g["name"] for g in self.manifest["mixture"]["groups"]]

    @property
    def split(self) -> dict | None:
        """The split this dataset is a part of (``{"part", "parts", "seed", "hash", "left_out"}``), or None."""
        return self.manifest.get("split")

    def has_documents(self, source: str) -> bool:
        return bool(self.by_name[source].info.get("documents_file"))

    def sources_without_documents(self) -> list[str]:
        return [name for name in self.by_name if not self.has_documents(name)]

    def document_hashes(self, source: str) -> np.ndarray:
        """The source's document hashes (:mod:`.split`), one per document in input order, memory-mapped."""
        info = self.by_name[source].info
        return np.memmap(self.path / info["documents_file"], dtype=DOCUMENTS_DTYPE, mode="r", shape=(info["records"],))

    def token_stream(self, source: str) -> np.ndarray:
        """A source's tokens in input order, padding removed (for tests and inspection)."""
        shard = self.by_name[source]
        flat = np.asarray(shard.tokens).reshape(-1)
        return flat[: len(flat) - shard.pad_tokens]


_VERIFIED: set[tuple] = set()   # directories this process has verified, by their files' (path, size, mtime, inode)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
