"""``chatflow preprocess``: render, tokenize and pack every source of a mixture into token shards (with
``--split``, one shard directory per part of a held-out split, :mod:`.split`).

Input files are told apart by content (:mod:`.inputs`). Plain text files are cut into byte ranges at line
boundaries that the workers read themselves; compressed text and columnar files (parquet, Arrow, ``datasets``
folders) are read here as a stream, a chunk of decompressed lines or a record batch at a time, and sent to the
workers. Chunks are tokenized by a pool of workers (:class:`~chatflow_plugin.data.workers.WorkerPool`: an error or a
dead worker stops it without hanging, and it reads the chunks lazily, a few ahead); results come back in input
order, so the output is identical for any number of workers and any container of the same records. Each worker
also hashes every document it renders (the document hashes every dataset records, and what a split assigns parts
by). The dataset is
written under a temporary name and moved into place only when complete, manifest last, under the output's
lock (:func:`chatflow_plugin.outputs.atomic_directory`). Every token and mask file's checksum is computed as
it is written and recorded in the manifest, which is sealed with its own checksum (:mod:`.shards`).

The tokenizer is either kind of :mod:`chatflow_plugin.tokenizer` (``--tokenizer``: a sentencepiece model, a
``tokenizer.json`` or a model directory; ``--spm_model_path``, the TencentPretrain host's spelling, is a
hidden alias of it). Each worker batch-encodes a chunk's documents with the tokenizer's own
library on one thread (``TOKENIZERS_PARALLELISM=false``: the pool is the parallelism).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .. import __version__
from ..files import json_error, new_checksum, sha256_file
from ..errors import ChatflowError, DataError
from ..outputs import atomic_directory, check_not_input, write_last, write_marker
from .formats import record_from_tsv, render
from .inputs import COLUMNAR, batch_to_bytes, detect, expand, record_batches, rows_of, table_schema, text_blocks, text_name
from .mixture import MixtureSpec, SourceSpec, load_mixture, parse_source_overrides
from ..options import option
from ..tokenizer import Tokenizer, as_tokenizer, load_tokenizer, tokenizer_from_options
from .shards import DATASET_KIND, DOCUMENTS_DTYPE, FORMAT_NAME, FORMAT_VERSION, MANIFEST, PROMPT, seal_manifest, token_dtype
from .split import SplitSpec, document_hashes, parse_split
from .workers import WorkerPool, default_workers

MAX_REPORTED_ERRORS = 5


@dataclass
class PreprocessOptions:
    mixture: str = option(help="mixture file (JSON), or a packaged one's name: table1, tiny_corpora ... "
                               "(`chatflow resources`)")
    output_dir: str = option(help="dataset directory to create")
    tokenizer: str = option(help="the tokenizer the dataset is tokenized with: a sentencepiece model, a "
                                 "HuggingFace tokenizer.json, or a model directory holding either",
                            aliases=["--spm_model_path"])
    seq_length: int = option(0, help="tokens per training sequence (0: the mixture's seq_length); "
                                     "windows hold seq_length + 1 tokens")
    workers: int = option(0, help="tokenizer processes (0: one per CPU core)")
    on_bad_record: str = option("skip", choices=["skip", "fail"],
                                help="skip (and count) malformed records, or stop at the first one")
    data_dir: str = option("", help="folder relative source paths resolve against (default: the mixture's "
                                    "data_root)", aliases=["--data_root"])
    source_path: list = option(default_factory=list, repeatable=True, type=str,
                               help="override a source's files: NAME=PATH[,PATH...]")
    chunk_mb: float = option(1.0, help="size of the input pieces handed to workers, in MB")
    split: str = option("", help="split every source by record before tokenization into a training part and held-out "
                                 "parts, one shard directory each under output_dir: named fractions "
                                 "(train:0.98,valid:0.01,test:0.01; summing to less than 1 leaves the rest out) or "
                                 "Megatron-LM's weights (969,30,1: train,valid,test). A record's part follows from "
                                 "its text and --split_seed alone")
    split_seed: int = option(0, help="seed of --split (which records go to which part)")
    force: bool = option(False, help="replace output_dir if it is a dataset chatflow wrote (and holds nothing else)")
    quiet: bool = option(False, help="no progress bar or summary")


# ---------------------------------------------------------------------------------------------
# Work units


@dataclass(frozen=True)
class Chunk:
    """A piece of one input file for a worker: a byte range of a text file it reads itself (``payload`` None),
    or what the main process read for it: decompressed text, or a record batch (``fmt`` ``table``, Arrow IPC
    bytes). ``start``/``end`` are offsets in the file as stored, for progress and messages."""
    source_index: int
    path: str
    start: int
    end: int
    fmt: str
    payload: bytes | None = None


@dataclass
class PartResult:
    """What one chunk gives one part of the output: tokens (and prompt mask), documents and their hashes."""
    tokens: np.ndarray
    prompt: np.ndarray | None
    records: int
    hashes: np.ndarray


@dataclass
class ChunkResult:
    parts: list[PartResult]        # one per part of the split (one without a split)
    lines: int                     # lines (rows) the chunk held, for locations
    bad: list[tuple[int, str]] = field(default_factory=list)   # (line within chunk, message)
    bad_count: int = 0
    left_out: int = 0              # documents no part of the split takes


def file_format(path: str, source: SourceSpec) -> str:
    """How a text file's lines are read: the source's ``format``, else by the name without its compression
    suffix (``.jsonl``/``.json``/``.jsonl.txt``: jsonl; ``.tsv``: tsv; else text)."""
    if source.format:
        return source.format
    lower = text_name(path).lower()
    if lower.endswith((".jsonl", ".json", ".jsonl.txt")):
        return "jsonl"
    if lower.endswith(".tsv"):
        return "tsv"
    return "text"


def plan_chunks(source_index: int, path: Path, fmt: str, chunk_bytes: int) -> list[Chunk]:
    """Byte ranges of about ``chunk_bytes`` of a plain text file that start at line starts."""
    size = path.stat().st_size
    chunks = []
    start = 0
    with open(path, "rb") as handle:
        while start < size:
            end = min(size, start + chunk_bytes)
            if end < size:
                handle.seek(end)
                handle.readline()
                end = handle.tell()
            chunks.append(Chunk(source_index, str(path), start, end, fmt))
            start = end
    return chunks


INSTRUCTION_COLUMNS = ("instruction", "input", "output", "conversations")


def table_columns(source: SourceSpec, path: Path, names: list[str]) -> list[str]:
    """The columns of a columnar file a source of its kind reads (the fields of its records); a missing one is
    an error naming the file, the columns it has and the mixture key that names another."""
    have = set(names)
    shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    if source.kind in ("corpus", "code"):
        if source.text_field not in have:
            raise ChatflowError(f"{path}: no column {source.text_field!r} (columns: {shown}); set the source's "
                                f"text_field to the column holding the text (source {source.name!r})")
        return [source.text_field]
    if source.kind == "parallel":
        missing = [f for f in source.fields if f not in have]
        if missing:
            raise ChatflowError(f"{path}: no column(s) {missing} (columns: {shown}); set the source's fields to "
                                f"its two text columns (source {source.name!r})")
        return list(source.fields)
    wanted = [c for c in INSTRUCTION_COLUMNS if c in have]
    if "conversations" not in have and not {"instruction", "output"} <= have:
        raise ChatflowError(f"{path}: an instruction source needs the columns instruction and output (and "
                            f"optionally input), or conversations (columns: {shown}; source {source.name!r})")
    return wanted


def source_chunks(source_index: int, source: SourceSpec, path: Path, kind: str, chunk_bytes: int
                  ) -> Iterator[Chunk]:
    """The chunks of one input file, in order: byte ranges of a plain text file; decompressed text or record
    batches read here (streamed: one chunk at a time)."""
    if kind in COLUMNAR:
        if source.format:
            raise ChatflowError(f"{path}: a {kind.replace('_', ' ')} file, but source {source.name!r} gives format "
                                f"{source.format!r} (a format of text files); remove it")
        columns = table_columns(source, path, table_schema(path, kind))
        for start, end, _, batch in record_batches(path, kind, columns, chunk_bytes):
            yield Chunk(source_index, str(path), start, end, "table", batch_to_bytes(batch))
        return
    fmt = file_format(str(path), source)
    if kind == "text":
        yield from plan_chunks(source_index, path, fmt, chunk_bytes)
        return
    for start, end, data in text_blocks(path, kind, chunk_bytes):
        yield Chunk(source_index, str(path), start, end, fmt, data)


# ---------------------------------------------------------------------------------------------
# Worker side

_WORKER: dict = {}


def _init_worker(tokenizer_path: str, kind: str, sources: list[SourceSpec], on_bad_record: str,
                 split: SplitSpec | None = None) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"   # one thread per worker: the pool is the parallelism
    tok = load_tokenizer(tokenizer_path, kind)
    _WORKER.update(tok=tok, sources=sources, fail=on_bad_record == "fail", bos=tok.bos_id, eos=tok.require_eos(),
                   split=split)


def _chunk_items(chunk: Chunk) -> list:
    """The chunk's lines (bytes) or, for a record batch, its rows (dicts)."""
    if chunk.fmt == "table":
        return rows_of(chunk.payload)
    data = chunk.payload
    if data is None:
        with open(chunk.path, "rb") as handle:
            handle.seek(chunk.start)
            data = handle.read(chunk.end - chunk.start)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()                       # the final newline ends the last line; it is not a line
    return lines


def _records(items: list, chunk: Chunk, source: SourceSpec) -> Iterator[tuple[int, object]]:
    """(line index in chunk, rendered document or DataError) for every line or row."""
    for i, raw in enumerate(items):
        try:
            if chunk.fmt == "table":
                record = raw
            else:
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"invalid UTF-8 at byte {exc.start}") from None
                if not line.strip():
                    raise DataError("blank line")
                if chunk.fmt == "jsonl":
                    try:
                        record = json.loads(line)
                    except (ValueError, RecursionError) as exc:   # syntax, a 5,000-digit integer, deep nesting
                        raise DataError(f"invalid JSON ({json_error(exc)})") from None
                elif chunk.fmt == "tsv":
                    record = record_from_tsv(line, source.fields)
                else:
                    record = {source.text_field: line}
            rendered = render(source.kind, record, text_field=source.text_field, fields=source.fields)
            _check_encodable(rendered[0])
            yield i, rendered
        except DataError as exc:
            yield i, exc


def _check_encodable(text: str) -> None:
    """Text the tokenizer can take: JSON escapes can spell lone surrogates (``"\\ud800"``), which are no
    characters and have no UTF-8 form."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start} (not a "
                        f"character; fix the JSON escape)") from None


def _encode_plain(tok: Tokenizer, texts: list[str], bos: int | None, eos: int) -> np.ndarray:
    """[BOS +] ids + EOS for every document, concatenated."""
    if not texts:
        return np.empty(0, np.int64)
    ids = tok.encode_batch(texts)
    head = int(bos is not None)
    lengths = np.fromiter((len(x) + head + 1 for x in ids), dtype=np.int64, count=len(ids))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), dtype=np.int64)
    body = np.ones(len(out), dtype=bool)
    if head:
        out[starts] = bos
        body[starts] = False
    out[ends - 1] = eos
    body[ends - 1] = False
    out[body] = np.concatenate(ids)
    return out


def _encode_with_prompts(tok: Tokenizer, docs: list[tuple[str, list[tuple[int, int]]]], bos: int | None, eos: int):
    """Tokenize whole texts (exactly as at inference) and mark tokens outside response spans as prompt."""
    token_parts, prompt_parts = [], []
    head = [bos] if bos is not None else []
    for (text, spans), (ids, offsets) in zip(docs, tok.encode_offsets_batch([d[0] for d in docs])):
        prompt = np.ones(len(ids), dtype=np.uint8)
        for start, end in spans:
            # a token belongs to a response when it covers any of its characters
            prompt[(offsets[:, 1] > start) & (offsets[:, 0] < end)] = 0
        token_parts.append(np.concatenate([np.asarray(head, np.int64), ids, [eos]]))
        prompt_parts.append(np.concatenate([[PROMPT] * len(head), prompt, [0]]).astype(np.uint8))
    if not token_parts:
        return np.empty(0, np.int64), np.empty(0, np.uint8)
    return np.concatenate(token_parts), np.concatenate(prompt_parts)


def _encode(docs: list, instruction: bool) -> tuple[np.ndarray, np.ndarray | None]:
    tok = _WORKER["tok"]
    if instruction:
        return _encode_with_prompts(tok, docs, _WORKER["bos"], _WORKER["eos"])
    return _encode_plain(tok, [d[0] for d in docs], _WORKER["bos"], _WORKER["eos"]), None


def tokenize_chunk(chunk: Chunk) -> ChunkResult:
    source, split = _WORKER["sources"][chunk.source_index], _WORKER["split"]
    items = _chunk_items(chunk)
    docs, bad, bad_count = [], [], 0
    for i, item in _records(items, chunk, source):
        if isinstance(item, DataError):
            bad_count += 1
            if _WORKER["fail"]:
                empty = PartResult(np.empty(0, np.int64), None, 0, np.empty(0, np.uint64))
                return ChunkResult([empty], len(items), [(i, str(item))], 1)
            if len(bad) < MAX_REPORTED_ERRORS:
                bad.append((i, str(item)))
            continue
        docs.append(item)
    hashes = document_hashes(d[0] for d in docs)
    n_parts = len(split.parts) if split is not None else 1
    part_of = split.assign(hashes) if split is not None else np.zeros(len(docs), dtype=np.int64)
    parts = []
    for p in range(n_parts):
        take = np.flatnonzero(part_of == p)
        tokens, prompt = _encode([docs[i] for i in take], source.kind == "instruction")
        parts.append(PartResult(tokens, prompt, len(take), hashes[take]))
    return ChunkResult(parts, len(items), bad, bad_count, left_out=int((part_of >= n_parts).sum()))


# ---------------------------------------------------------------------------------------------
# Driver


@dataclass
class SourceStats:
    name: str
    group: str
    kind: str
    files: list[dict] = field(default_factory=list)
    records: int = 0
    skipped: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    windows: int = 0
    pad_tokens: int = 0
    empty_files: list[str] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)
    left_out: int = 0


@dataclass(frozen=True)
class InputFile:
    source_index: int
    path: Path
    kind: str              # what :func:`chatflow_plugin.data.inputs.detect` found
    size: int


def _progress(total: int, quiet: bool):
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc="preprocess", file=sys.stderr)


def open_tokenizer(tokenizer: str | os.PathLike | Tokenizer) -> Tokenizer:
    """The tokenizer a dataset is built with; it needs an EOS token (BOS only where it has one)."""
    tok = as_tokenizer(tokenizer)
    tok.require_eos()
    return tok


def plan_sources(spec: MixtureSpec, fail: bool) -> tuple[list[SourceStats], list[InputFile]]:
    """Per-source statistics (input files with sizes and checksums) and the input files to read, in order, each
    with its kind found from its content (a binary file of no known kind is refused here, before any work)."""
    files = spec.resolve_files()
    stats: list[SourceStats] = []
    inputs: list[InputFile] = []
    for index, (group, source) in enumerate(spec.sources):
        st = SourceStats(source.name, group.name, source.kind)
        for given in files[source.name]:
            for path in expand(given):
                size = path.stat().st_size
                st.files.append({"path": str(path.resolve()), "bytes": size, "sha256": sha256_file(path)})
                if size == 0:
                    if fail:
                        raise ChatflowError(f"{path}: empty file (source {source.name!r})")
                    st.empty_files.append(str(path))
                    continue
                inputs.append(InputFile(index, path, detect(path), size))
        stats.append(st)
    return stats, inputs


def iter_chunks(inputs: list[InputFile], sources: list[SourceSpec], chunk_bytes: int) -> Iterator[Chunk]:
    """Every input file's chunks, in input order (streamed: compressed and columnar files are read as the workers
    take the chunks)."""
    for item in inputs:
        yield from source_chunks(item.source_index, sources[item.source_index], item.path, item.kind, chunk_bytes)


@contextlib.contextmanager
def _restored_environment(name: str):
    """Put the environment variable ``name`` back as it was after the block."""
    before = os.environ.get(name)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _describe_chunk(chunk: Chunk) -> str:
    return f"{chunk.path} bytes {chunk.start}-{chunk.end}"


def tokenize_chunks(chunks: Iterable[Chunk], init_args: tuple, workers: int, sink, quiet: bool = True,
                    total_bytes: int | None = None) -> None:
    """``sink(chunk, result)`` for every chunk in input order, tokenized by ``workers`` processes; a progress bar
    over ``total_bytes`` of input (as stored) unless ``quiet``."""
    if total_bytes is None:
        chunks = list(chunks)
        total_bytes = sum(c.end - c.start for c in chunks)
    bar = _progress(total_bytes, quiet)
    with contextlib.ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        if workers == 1:
            stack.enter_context(_restored_environment("TOKENIZERS_PARALLELISM"))
            _init_worker(*init_args)
            pairs = ((chunk, tokenize_chunk(chunk)) for chunk in chunks)
        else:
            pool = stack.enter_context(WorkerPool(workers, tokenize_chunk, _init_worker, init_args,
                                                  describe=_describe_chunk))
            pairs = pool.map_with_items(chunks)
        for chunk, result in pairs:
            sink(chunk, result)
            if bar is not None:
                bar.update(chunk.end - chunk.start)


class ShardWriter:
    """Appends one part's tokens (and prompt mask, and document hashes) of each chunk to its source's files in
    ``directory`` and counts them."""

    def __init__(self, directory: Path, sources: list[SourceSpec], stats: list[SourceStats], dtype: np.dtype,
                 part: str | None = None):
        self.directory, self.sources, self.stats, self.dtype, self.part = directory, sources, stats, dtype, part
        self.handles: dict[int, tuple] = {}
        self.checksums: dict[int, tuple] = {}     # source -> hashers of (tokens, mask, documents) as written

    def add(self, index: int, result: PartResult) -> None:
        st = self.stats[index]
        st.records += result.records
        st.tokens += len(result.tokens)
        if index not in self.handles:
            name = self.sources[index].name
            mask = open(self.directory / f"{name}.mask.bin", "wb") if result.prompt is not None else None
            self.handles[index] = (open(self.directory / f"{name}.tokens.bin", "wb"), mask,
                                   open(self.directory / f"{name}.docs.bin", "wb"))
            self.checksums[index] = (new_checksum(), new_checksum() if mask is not None else None, new_checksum())
        self._write(index, result.tokens.astype(self.dtype).tobytes(),
                    None if result.prompt is None else result.prompt.tobytes(),
                    result.hashes.astype(DOCUMENTS_DTYPE).tobytes())
        if result.prompt is not None:
            st.prompt_tokens += int(result.prompt.sum())

    def _write(self, index: int, tokens: bytes, mask: bytes | None, documents: bytes = b"") -> None:
        handles, sums = self.handles[index], self.checksums[index]
        for data, handle, hasher in zip((tokens, mask, documents), handles, sums):
            if handle is not None and data:
                handle.write(data)
                hasher.update(data)

    def finish(self, window: int, eos_id: int, split: SplitSpec | None = None) -> list[dict]:
        """Pad each source's last window and close its files; the manifest's ``sources`` entries. A window longer
        than every source of the training data (the dataset would be mostly padding) is refused before any padding
        is written."""
        entries = []
        self.empty: list[str] = []
        training = self.part is None or self.part == split.names[0]      # held-out parts are small by design
        longest = max(self.stats, key=lambda st: st.tokens)
        if training and 0 < longest.tokens < window:
            within = "" if self.part is None else f" of the split's part {self.part!r}"
            raise ChatflowError(f"seq_length {window - 1} is longer than any source{within}: the longest, "
                                f"{longest.name!r}, has {longest.tokens:,} tokens, so every window would be mostly "
                                f"padding; choose a seq_length of at most {longest.tokens - 1:,} (or add data)")
        for index, st in enumerate(self.stats):
            if st.tokens == 0 and self.part is not None and self.part != split.names[0]:
                self._drop(index)       # a held-out part without this source: said, not an error
                self.empty.append(st.name)
                continue
            if st.tokens == 0:
                raise ChatflowError(self._nothing(st, split))
            if training and st.tokens < window:
                print(f"warning: source {st.name!r} has {st.tokens:,} tokens, fewer than one window of {window:,}: "
                      f"its only window is {1 - st.tokens / window:.0%} padding", file=sys.stderr)
            tok_handle, mask_handle, _ = self.handles[index]
            st.windows = -(-st.tokens // window)
            st.pad_tokens = st.windows * window - st.tokens
            # Fill the last window with EOS; the manifest's pad_tokens keeps them out of the loss.
            self._write(index, np.full(st.pad_tokens, eos_id, dtype=self.dtype).tobytes(),
                        np.full(st.pad_tokens, PROMPT, dtype=np.uint8).tobytes() if mask_handle else None)
            for handle in self.handles[index]:
                if handle is not None:
                    handle.close()
            tok_sum, mask_sum, doc_sum = self.checksums[index]
            source = self.sources[index]
            entries.append({
                "name": st.name, "group": st.group, "kind": st.kind, "language": source.language,
                "share": source.share, "files": st.files, "records": st.records, "skipped": st.skipped,
                "empty_files": st.empty_files, "first_errors": st.first_errors, "tokens": st.tokens,
                "prompt_tokens": st.prompt_tokens, "windows": st.windows, "pad_tokens": st.pad_tokens,
                "tokens_file": f"{st.name}.tokens.bin", "mask_file": f"{st.name}.mask.bin" if mask_handle else None,
                "tokens_checksum": tok_sum.text(), "mask_checksum": mask_sum.text() if mask_sum else None,
                "documents_file": f"{st.name}.docs.bin", "documents_checksum": doc_sum.text(),
                **({"left_out": st.left_out} if split is not None else {}),
            })
        return entries

    def _drop(self, index: int) -> None:
        """Close and delete a source's (empty) files."""
        for handle in self.handles.pop(index, ()):
            if handle is not None:
                handle.close()
                os.unlink(handle.name)

    def _nothing(self, st: SourceStats, split: SplitSpec | None) -> str:
        where = ", ".join(f["path"] for f in st.files)
        if self.part is not None and split is not None:
            fraction = dict(split.parts)[self.part]
            return (f"source {st.name!r}: the training part {self.part!r} of the split ({fraction:g} of the records) "
                    f"got no document ({where}); give it a larger share")
        detail = f"; first problems: {'; '.join(st.first_errors)}" if st.first_errors else ""
        return f"source {st.name!r} has no usable records ({where}){detail}"

    def close(self) -> None:
        for handles in self.handles.values():
            for handle in handles:
                if handle is not None:
                    handle.close()


class SplitWriter:
    """One :class:`ShardWriter` per part of the split (``<directory>/<part>/``; one writer into ``directory``
    itself without a split), and what they share: the input's bad records, located ``file:line`` from the lines
    each chunk read."""

    def __init__(self, directory: Path, sources: list[SourceSpec], stats: list[SourceStats], dtype: np.dtype,
                 fail: bool, split: SplitSpec | None):
        self.fail, self.split, self.stats = fail, split, stats
        self.line_base: dict[str, int] = {}
        if split is None:
            self.writers = {None: ShardWriter(directory, sources, stats, dtype)}
        else:
            self.writers = {}
            for name in split.names:
                (directory / name).mkdir()
                self.writers[name] = ShardWriter(directory / name, sources, [replace(st) for st in stats], dtype, name)

    def add(self, chunk: Chunk, result: ChunkResult) -> None:
        st = self.stats[chunk.source_index]
        base = self.line_base.get(chunk.path, 0)
        self.line_base[chunk.path] = base + result.lines
        for line, message in result.bad:
            location = f"{chunk.path}:{base + line + 1}"
            if self.fail:
                raise DataError(message, location)
            if len(st.first_errors) < MAX_REPORTED_ERRORS:
                st.first_errors.append(f"{location}: {message}")
        st.skipped += result.bad_count
        st.left_out += result.left_out
        for writer, part in zip(self.writers.values(), result.parts):
            writer.add(chunk.source_index, part)

    def finish(self, window: int, eos_id: int) -> dict[str | None, list[dict]]:
        """Every part's manifest ``sources`` entries; the input's counts (skipped records, first errors, empty
        files, records left out) are the same in each."""
        out = {}
        for part, writer in self.writers.items():
            for mine, shared in zip(writer.stats, self.stats):
                mine.skipped, mine.first_errors, mine.empty_files = shared.skipped, shared.first_errors, shared.empty_files
                mine.left_out = shared.left_out
            out[part] = writer.finish(window, eos_id, self.split)
            if writer.empty:
                if not out[part]:
                    raise ChatflowError(f"the held-out part {part!r} of the split got no document from any source; "
                                        f"give it a larger share")
                print(f"warning: part {part!r} of the split got no document of source(s) {', '.join(writer.empty)} "
                      f"(too few records for its share): they are left out of {part}/", file=sys.stderr)
        return out

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def build_manifest(spec: MixtureSpec, tok: Tokenizer, dtype: np.dtype, sources: list[dict], seconds: float,
                   split: dict | None = None) -> dict:
    return seal_manifest({
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "created_by": f"chatflow-plugin {__version__}",
        "seq_length": spec.seq_length, "window_length": spec.seq_length + 1, "dtype": dtype.name,
        "tokenizer": tok.identity(),
        "mixture": spec.to_json(), "sources": sources, "split": split,
        "seconds": round(seconds, 3),
    })


def preprocess(spec: MixtureSpec, tokenizer: str | os.PathLike | Tokenizer, output_dir: str | os.PathLike,
               workers: int = 0, on_bad_record: str = "skip", chunk_bytes: int = 4 << 20,
               force: bool = False, quiet: bool = True, split: SplitSpec | None = None) -> dict:
    """Build a shard directory for ``spec``; returns the manifest. With ``split``, build one shard directory per
    part, ``<output_dir>/<part>/`` (:mod:`.split`), in the same one pass over the input, and return
    ``{part: manifest}``.

    Three steps: plan (hash and identify the input files), tokenize the chunks in input order into the shard
    files (compressed and columnar inputs are streamed to the workers as they are read), then pad the last
    windows and write the manifests, last.
    """
    workers = default_workers(workers)
    if chunk_bytes <= 0:
        raise ChatflowError(f"the chunk size must be positive, got {chunk_bytes} bytes")
    tok = open_tokenizer(tokenizer)
    dtype = token_dtype(tok.vocab_size)
    fail = on_bad_record == "fail"
    stats, files = plan_sources(spec, fail)
    sources = [s for _, s in spec.sources]
    inputs = [tok.file, spec.path] + [f["path"] for st in stats for f in st.files] + spec.scanned_folders()
    started = time.time()
    with atomic_directory(output_dir, DATASET_KIND, force=force, inputs=inputs) as tmp:
        writer = SplitWriter(tmp, sources, stats, dtype, fail, split)
        try:
            tokenize_chunks(iter_chunks(files, sources, chunk_bytes),
                            (str(tok.path), tok.kind, sources, on_bad_record, split), workers, writer.add, quiet,
                            total_bytes=sum(f.size for f in files))
            entries = writer.finish(spec.seq_length + 1, tok.eos_id)
        finally:
            writer.close()
        seconds = time.time() - started
        manifests = {}
        for part, sources_json in entries.items():
            recorded = None if split is None else dict(split.to_json(part),
                                                       empty_sources=writer.writers[part].empty)
            manifest = build_manifest(spec, tok, dtype, sources_json, seconds, recorded)
            folder = tmp if part is None else tmp / part
            if part is not None:
                write_marker(folder, DATASET_KIND, [])        # each part is a dataset of its own
            write_last(folder, MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")   # last: it loads
            manifests[part] = manifest
    return manifests[None] if split is None else manifests


def summary(manifest: dict) -> str:
    split = manifest.get("split")
    rows = [f"{'source':<24} {'group':<12} {'records':>9} {'skipped':>8} {'tokens':>12} {'windows':>9}"]
    for s in manifest["sources"]:
        rows.append(f"{s['name']:<24} {s['group']:<12} {s['records']:>9} {s['skipped']:>8} "
                    f"{s['tokens']:>12} {s['windows']:>9}")
        for problem in s["first_errors"]:
            rows.append(f"    skipped {problem}")
        for path in s["empty_files"]:
            rows.append(f"    empty file {path}")
    total = sum(s["tokens"] for s in manifest["sources"])
    if split is not None:
        rows.insert(0, f"part {split['part']!r} of the split {', '.join(f'{n}:{f:g}' for n, f in split['parts'])} "
                       f"(seed {split['seed']})")
    rows.append(f"{total} tokens in {manifest['seconds']} s ({total / max(manifest['seconds'], 1e-9):,.0f} tokens/s)")
    return "\n".join(rows)


def run_preprocess(opts: PreprocessOptions) -> None:
    """Tokenize a mixture's sources and pack them into a shard directory (the format: data/README.md); with
    --split, into one shard directory per part (train and held-out parts), split by record before tokenization."""
    if opts.workers < 0:
        raise ChatflowError(f"--workers must be 0 (one per CPU) or positive, got {opts.workers}")
    if not opts.chunk_mb > 0:
        raise ChatflowError(f"--chunk_mb must be positive, got {opts.chunk_mb}")
    split = parse_split(opts.split, opts.split_seed) if opts.split else None
    spec = load_mixture(opts.mixture).with_overrides(
        data_root=opts.data_dir or None, seq_length=opts.seq_length or None,
        source_paths=parse_source_overrides(opts.source_path))
    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    check_not_input(opts.output_dir, [opts.data_dir], what="--output_dir")     # the raw-data folder given
    result = preprocess(spec, tokenizer_from_options(opts.tokenizer), opts.output_dir,
                        workers=opts.workers,
                        on_bad_record=opts.on_bad_record, chunk_bytes=int(opts.chunk_mb * (1 << 20)),
                        force=opts.force, quiet=opts.quiet, split=split)
    if not opts.quiet:
        for part, manifest in ({None: result} if split is None else result).items():
            print(summary(manifest))
            print(f"wrote {opts.output_dir if part is None else Path(opts.output_dir) / part}")
