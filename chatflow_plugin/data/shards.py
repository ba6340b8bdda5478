"""Token shards: one memory-mapped flat token file per source, a prompt mask, and ``manifest.json``.

Layout of a dataset directory::

    manifest.json              written last; a directory without it is refused
    <source>.tokens.bin        windows * (seq_length + 1) tokens, uint16 if the vocabulary fits
    <source>.mask.bin          instruction sources only: one uint8 per token, 1 = prompt token

A source's documents (BOS + tokens + EOS each) are concatenated in input order and cut into
consecutive windows of ``seq_length + 1`` tokens (the full-sentence strategy: windows cross document
boundaries). The last window is filled up with ``pad_tokens`` EOS tokens that carry no loss, so no
token of the input is dropped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import resolve_from_file, sha256_file
from ..errors import ChatflowError
from ..tokenizer import Tokenizer, as_tokenizer

MANIFEST = "manifest.json"
FORMAT_NAME = "chatflow-shards"
FORMAT_VERSION = 1
PROMPT = 1   # mask value of a prompt token


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


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
    ``verify_sources``: refuse it unless every input file it was built from is still there with the
    sha256 the manifest recorded (this reads every input file once; for a run that must be reproducible
    from the corpora on disk).
    """

    def __init__(self, path: str | os.PathLike, tokenizer: "str | os.PathLike | Tokenizer | None" = None,
                 verify_sources: bool = False):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise ChatflowError(f"{self.path} is not a complete chatflow dataset: {MANIFEST} is missing "
                                f"(was preprocessing interrupted?)")
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ChatflowError(f"{manifest_path}: unreadable manifest: {exc}") from None
        m = self.manifest
        if m.get("format") != FORMAT_NAME or m.get("version") != FORMAT_VERSION:
            raise ChatflowError(f"{manifest_path}: not a {FORMAT_NAME} v{FORMAT_VERSION} manifest")
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
        return SourceShard(name=info["name"], group=info["group"], kind=info["kind"], windows=info["windows"],
                           tokens=tokens, mask=mask, pad_tokens=int(info["pad_tokens"]), info=info)

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

    def token_stream(self, source: str) -> np.ndarray:
        """A source's tokens in input order, padding removed (for tests and inspection)."""
        shard = self.by_name[source]
        flat = np.asarray(shard.tokens).reshape(-1)
        return flat[: len(flat) - shard.pad_tokens]
