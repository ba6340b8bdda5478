"""``chatflow preprocess``: render, tokenize and pack every source of a mixture into token shards.

Input files are cut into byte ranges at line boundaries and tokenized by a pool of workers
(:class:`~chatflow_plugin.data.workers.WorkerPool`: an error or a dead worker stops it without hanging);
results come back in input order, so the output is identical for any number of workers. The dataset is
written under a temporary name and moved into place only when complete, manifest last, under the output's
lock (:func:`chatflow_plugin.outputs.atomic_directory`). Every token and mask file's checksum is computed as
it is written and recorded in the manifest, which is sealed with its own checksum (:mod:`.shards`).

The tokenizer is either kind of :mod:`chatflow_plugin.tokenizer` (``--tokenizer``: a sentencepiece model, a
``tokenizer.json`` or a model directory; ``--spm_model_path`` is the sentencepiece-only spelling the
TencentPretrain host's launchers pass). Each worker batch-encodes a chunk's documents with the tokenizer's own
library on one thread (``TOKENIZERS_PARALLELISM=false``: the pool is the parallelism).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .. import __version__
from ..files import json_error, new_checksum, sha256_file
from ..errors import ChatflowError, DataError
from ..outputs import atomic_directory, check_not_input, write_last
from .formats import record_from_tsv, render
from .mixture import MixtureSpec, SourceSpec, load_mixture, parse_source_overrides
from ..options import option
from ..tokenizer import Tokenizer, as_tokenizer, load_tokenizer, tokenizer_from_options
from .shards import DATASET_KIND, FORMAT_NAME, FORMAT_VERSION, MANIFEST, PROMPT, seal_manifest, token_dtype
from .workers import WorkerPool, default_workers

MAX_REPORTED_ERRORS = 5


@dataclass
class PreprocessOptions:
    mixture: str = option(help="mixture file (JSON), e.g. models/mixtures/chatflow_table1.json")
    output_dir: str = option(help="dataset directory to create")
    tokenizer: str = option("", help="the tokenizer the dataset is tokenized with: a sentencepiece model, a "
                                     "HuggingFace tokenizer.json, or a model directory holding either")
    spm_model_path: str = option("", help="a sentencepiece model (the TencentPretrain host's spelling; give this "
                                          "or --tokenizer)")
    seq_length: int = option(0, help="tokens per training sequence (0: the mixture's seq_length); "
                                     "windows hold seq_length + 1 tokens")
    workers: int = option(0, help="tokenizer processes (0: one per CPU core)")
    on_bad_record: str = option("skip", choices=["skip", "fail"],
                                help="skip (and count) malformed records, or stop at the first one")
    data_root: str = option("", help="folder relative source paths resolve against (default: the mixture's)")
    source_path: list = option(default_factory=list, repeatable=True, type=str,
                               help="override a source's files: NAME=PATH[,PATH...]")
    chunk_mb: float = option(1.0, help="size of the input pieces handed to workers, in MB")
    force: bool = option(False, help="replace output_dir if it is a dataset chatflow wrote (and holds nothing else)")
    quiet: bool = option(False, help="no progress bar or summary")


# ---------------------------------------------------------------------------------------------
# Work units


@dataclass(frozen=True)
class Chunk:
    source_index: int
    path: str
    start: int
    end: int
    fmt: str


@dataclass
class ChunkResult:
    tokens: np.ndarray
    prompt: np.ndarray | None
    records: int
    lines: int
    bad: list[tuple[int, str]] = field(default_factory=list)   # (line within chunk, message)
    bad_count: int = 0


def file_format(path: str, source: SourceSpec) -> str:
    if source.format:
        return source.format
    lower = path.lower()
    if lower.endswith((".jsonl", ".json", ".jsonl.txt")):
        return "jsonl"
    if lower.endswith(".tsv"):
        return "tsv"
    return "text"


def plan_chunks(source_index: int, path: Path, fmt: str, chunk_bytes: int) -> list[Chunk]:
    """Byte ranges of about ``chunk_bytes`` that start at line starts."""
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


# ---------------------------------------------------------------------------------------------
# Worker side

_WORKER: dict = {}


def _init_worker(tokenizer_path: str, kind: str, sources: list[SourceSpec], on_bad_record: str) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"   # one thread per worker: the pool is the parallelism
    tok = load_tokenizer(tokenizer_path, kind)
    _WORKER.update(tok=tok, sources=sources, fail=on_bad_record == "fail", bos=tok.bos_id, eos=tok.require_eos())


def _records(data: bytes, chunk: Chunk, source: SourceSpec) -> Iterator[tuple[int, object]]:
    """(line index in chunk, record or DataError) for every line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()                       # the final newline ends the last line; it is not a line
    for i, raw in enumerate(lines):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
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


def tokenize_chunk(chunk: Chunk) -> ChunkResult:
    tok, source = _WORKER["tok"], _WORKER["sources"][chunk.source_index]
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        data = handle.read(chunk.end - chunk.start)
    docs, bad, bad_count, lines = [], [], 0, 0
    for i, item in _records(data, chunk, source):
        lines = i + 1
        if isinstance(item, DataError):
            bad_count += 1
            if _WORKER["fail"]:
                return ChunkResult(np.empty(0, np.int64), None, 0, lines, [(i, str(item))], 1)
            if len(bad) < MAX_REPORTED_ERRORS:
                bad.append((i, str(item)))
            continue
        docs.append(item)
    if source.kind == "instruction":
        tokens, prompt = _encode_with_prompts(tok, docs, _WORKER["bos"], _WORKER["eos"])
    else:
        tokens, prompt = _encode_plain(tok, [d[0] for d in docs], _WORKER["bos"], _WORKER["eos"]), None
    return ChunkResult(tokens, prompt, len(docs), lines, bad, bad_count)


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


def plan_sources(spec: MixtureSpec, chunk_bytes: int, fail: bool) -> tuple[list[SourceStats], list[Chunk]]:
    """Per-source statistics (input files with sizes and checksums) and the chunks to tokenize, in order."""
    files = spec.resolve_files()
    stats: list[SourceStats] = []
    chunks: list[Chunk] = []
    for index, (group, source) in enumerate(spec.sources):
        st = SourceStats(source.name, group.name, source.kind)
        for path in files[source.name]:
            size = path.stat().st_size
            st.files.append({"path": str(path.resolve()), "bytes": size, "sha256": sha256_file(path)})
            if size == 0:
                if fail:
                    raise ChatflowError(f"{path}: empty file (source {source.name!r})")
                st.empty_files.append(str(path))
                continue
            chunks.extend(plan_chunks(index, path, file_format(str(path), source), chunk_bytes))
        stats.append(st)
    return stats, chunks


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


def tokenize_chunks(chunks: list[Chunk], init_args: tuple, workers: int, sink, quiet: bool = True) -> None:
    """``sink(chunk, result)`` for every chunk in input order, tokenized by ``workers`` processes."""
    bar = _progress(sum(c.end - c.start for c in chunks), quiet)
    with contextlib.ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        if workers == 1 or len(chunks) <= 1:
            stack.enter_context(_restored_environment("TOKENIZERS_PARALLELISM"))
            _init_worker(*init_args)
            results = map(tokenize_chunk, chunks)
        else:
            pool = stack.enter_context(WorkerPool(min(workers, len(chunks)), tokenize_chunk, _init_worker,
                                                  init_args, describe=_describe_chunk))
            results = pool.map(chunks)
        for chunk, result in zip(chunks, results):
            sink(chunk, result)
            if bar is not None:
                bar.update(chunk.end - chunk.start)


class ShardWriter:
    """Appends each chunk's tokens (and prompt mask) to its source's files in ``directory``, counts them,
    and locates bad records (``file:line``) from the lines each chunk read."""

    def __init__(self, directory: Path, sources: list[SourceSpec], stats: list[SourceStats], dtype: np.dtype,
                 fail: bool):
        self.directory, self.sources, self.stats, self.dtype, self.fail = directory, sources, stats, dtype, fail
        self.handles: dict[int, tuple] = {}
        self.checksums: dict[int, tuple] = {}     # source -> hashers of (tokens, mask) as written
        self.line_base: dict[str, int] = {}

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
        st.records += result.records
        st.tokens += len(result.tokens)
        if chunk.source_index not in self.handles:
            name = self.sources[chunk.source_index].name
            mask = open(self.directory / f"{name}.mask.bin", "wb") if result.prompt is not None else None
            self.handles[chunk.source_index] = (open(self.directory / f"{name}.tokens.bin", "wb"), mask)
            self.checksums[chunk.source_index] = (new_checksum(), new_checksum() if mask is not None else None)
        self._write(chunk.source_index, result.tokens.astype(self.dtype).tobytes(),
                    None if result.prompt is None else result.prompt.tobytes())
        if result.prompt is not None:
            st.prompt_tokens += int(result.prompt.sum())

    def _write(self, index: int, tokens: bytes, mask: bytes | None) -> None:
        (tok_handle, mask_handle), (tok_sum, mask_sum) = self.handles[index], self.checksums[index]
        tok_handle.write(tokens)
        tok_sum.update(tokens)
        if mask_handle is not None:
            mask_handle.write(mask)
            mask_sum.update(mask)

    def finish(self, window: int, eos_id: int) -> list[dict]:
        """Pad each source's last window and close its files; the manifest's ``sources`` entries. A window longer
        than every source (the dataset would be mostly padding) is refused before any padding is written."""
        entries = []
        longest = max(self.stats, key=lambda st: st.tokens)
        if 0 < longest.tokens < window:
            raise ChatflowError(f"seq_length {window - 1} is longer than any source: the longest, {longest.name!r}, "
                                f"has {longest.tokens:,} tokens, so every window would be mostly padding; choose a "
                                f"seq_length of at most {longest.tokens - 1:,} (or add data)")
        for index, st in enumerate(self.stats):
            if st.tokens == 0:
                where = ", ".join(f["path"] for f in st.files)
                detail = f"; first problems: {'; '.join(st.first_errors)}" if st.first_errors else ""
                raise ChatflowError(f"source {st.name!r} has no usable records ({where}){detail}")
            if st.tokens < window:
                print(f"warning: source {st.name!r} has {st.tokens:,} tokens, fewer than one window of {window:,}: "
                      f"its only window is {1 - st.tokens / window:.0%} padding", file=sys.stderr)
            tok_handle, mask_handle = self.handles[index]
            st.windows = -(-st.tokens // window)
            st.pad_tokens = st.windows * window - st.tokens
            # Fill the last window with EOS; the manifest's pad_tokens keeps them out of the loss.
            self._write(index, np.full(st.pad_tokens, eos_id, dtype=self.dtype).tobytes(),
                        np.full(st.pad_tokens, PROMPT, dtype=np.uint8).tobytes() if mask_handle else None)
            tok_handle.close()
            if mask_handle is not None:
                mask_handle.close()
            tok_sum, mask_sum = self.checksums[index]
            source = self.sources[index]
            entries.append({
                "name": st.name, "group": st.group, "kind": st.kind, "language": source.language,
                "share": source.share, "files": st.files, "records": st.records, "skipped": st.skipped,
                "empty_files": st.empty_files, "first_errors": st.first_errors, "tokens": st.tokens,
                "prompt_tokens": st.prompt_tokens, "windows": st.windows, "pad_tokens": st.pad_tokens,
                "tokens_file": f"{st.name}.tokens.bin", "mask_file": f"{st.name}.mask.bin" if mask_handle else None,
                "tokens_checksum": tok_sum.text(), "mask_checksum": mask_sum.text() if mask_sum else None,
            })
        return entries

    def close(self) -> None:
        for handles in self.handles.values():
            for handle in handles:
                if handle is not None:
                    handle.close()


def build_manifest(spec: MixtureSpec, tok: Tokenizer, dtype: np.dtype, sources: list[dict], seconds: float) -> dict:
    return seal_manifest({
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "created_by": f"chatflow-plugin {__version__}",
        "seq_length": spec.seq_length, "window_length": spec.seq_length + 1, "dtype": dtype.name,
        "tokenizer": tok.identity(),
        "mixture": spec.to_json(), "sources": sources,
        "seconds": round(seconds, 3),
    })


def preprocess(spec: MixtureSpec, tokenizer: str | os.PathLike | Tokenizer, output_dir: str | os.PathLike,
               workers: int = 0, on_bad_record: str = "skip", chunk_bytes: int = 4 << 20,
               force: bool = False, quiet: bool = True) -> dict:
    """Build a shard directory for ``spec``; returns the manifest.

    Three steps: plan (hash the input files, cut them into chunks), tokenize the chunks in input order
    into the shard files, then pad the last windows and write the manifest, last.
    """
    workers = default_workers(workers)
    if chunk_bytes <= 0:
        raise ChatflowError(f"the chunk size must be positive, got {chunk_bytes} bytes")
    tok = open_tokenizer(tokenizer)
    dtype = token_dtype(tok.vocab_size)
    fail = on_bad_record == "fail"
    stats, chunks = plan_sources(spec, chunk_bytes, fail)
    sources = [s for _, s in spec.sources]
    inputs = [tok.file, spec.path] + [f["path"] for st in stats for f in st.files] + spec.scanned_folders()
    started = time.time()
    with atomic_directory(output_dir, DATASET_KIND, force=force, inputs=inputs) as tmp:
        writer = ShardWriter(tmp, sources, stats, dtype, fail)
        try:
            tokenize_chunks(chunks, (str(tok.path), tok.kind, sources, on_bad_record), workers, writer.add, quiet)
            entries = writer.finish(spec.seq_length + 1, tok.eos_id)
        finally:
            writer.close()
        manifest = build_manifest(spec, tok, dtype, entries, time.time() - started)
        write_last(tmp, MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")   # last: it loads
    return manifest


def summary(manifest: dict) -> str:
    rows = [f"{'source':<24} {'group':<12} {'records':>9} {'skipped':>8} {'tokens':>12} {'windows':>9}"]
    for s in manifest["sources"]:
        rows.append(f"{s['name']:<24} {s['group']:<12} {s['records']:>9} {s['skipped']:>8} "
                    f"{s['tokens']:>12} {s['windows']:>9}")
        for problem in s["first_errors"]:
            rows.append(f"    skipped {problem}")
        for path in s["empty_files"]:
            rows.append(f"    empty file {path}")
    total = sum(s["tokens"] for s in manifest["sources"])
    rows.append(f"{total} tokens in {manifest['seconds']} s ({total / max(manifest['seconds'], 1e-9):,.0f} tokens/s)")
    return "\n".join(rows)


def run_preprocess(opts: PreprocessOptions) -> None:
    """Tokenize a mixture's sources and pack them into a shard directory (the format: data/README.md)."""
    if opts.workers < 0:
        raise ChatflowError(f"--workers must be 0 (one per CPU) or positive, got {opts.workers}")
    if not opts.chunk_mb > 0:
        raise ChatflowError(f"--chunk_mb must be positive, got {opts.chunk_mb}")
    spec = load_mixture(opts.mixture).with_overrides(
        data_root=opts.data_root or None, seq_length=opts.seq_length or None,
        source_paths=parse_source_overrides(opts.source_path))
    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    check_not_input(opts.output_dir, [opts.data_root], what="--output_dir")     # the raw-data folder given
    manifest = preprocess(spec, tokenizer_from_options(opts.tokenizer, opts.spm_model_path), opts.output_dir,
                          workers=opts.workers,
                          on_bad_record=opts.on_bad_record, chunk_bytes=int(opts.chunk_mb * (1 << 20)),
                          force=opts.force, quiet=opts.quiet)
    if not opts.quiet:
        print(summary(manifest))
        print(f"wrote {opts.output_dir}")
