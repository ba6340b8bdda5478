"""Corpus files as they come: plain or compressed text, parquet, Arrow, a ``datasets`` folder, told apart by their
content (magic bytes), never by their name alone.

=================  =================================================  ==========================================
kind               recognised by                                      read as
=================  =================================================  ==========================================
``gzip``           ``1f 8b``                                          text, streamed (``gzip``; multi-member too)
``bz2``            ``BZh``                                            text, streamed (``bz2``)
``xz``             ``fd 37 7a 58 5a 00``                              text, streamed (``lzma``)
``zstd``           ``28 b5 2f fd``                                    text, streamed (``zstandard``; many frames)
``parquet``        ``PAR1`` at both ends                              record batches (``pyarrow``)
``arrow``          ``ARROW1`` (the Arrow IPC file format)             record batches, memory-mapped
``arrow_stream``   ``ff ff ff ff`` (the Arrow IPC stream format)      record batches, memory-mapped
``datasets``       a folder with ``state.json`` (``save_to_disk``)    its ``data-*.arrow`` files, in order
``text``           anything else without NUL bytes in its first 64 KB  text (a file named ``.jsonl`` may be gzip)
=================  =================================================  ==========================================

Any other binary file is refused with what it looks like (a zip or tar archive, UTF-16 text ...), never read as
text. The format of text content (JSON lines, TSV, plain lines) follows the file name without its compression
suffix (``a.jsonl.gz`` is JSON lines) unless the mixture's source says otherwise.

Text is decompressed as a stream in blocks cut at line ends (:func:`text_blocks`), so memory stays flat whatever
the file's size, and ``file:line`` locations count the lines of the decompressed text. A truncated or corrupt
stream is a :class:`~chatflow_plugin.errors.ChatflowError` naming the file and the compressed offset where it
broke: data is never silently short. Columnar files are read in record batches of a bounded number of rows
(:func:`record_batches`), only the columns asked for.

The readers of optional formats are optional dependencies, named when missing: ``zstandard`` (the ``[zstd]``
extra; Python 3.14's ``compression.zstd`` is used where present) and ``pyarrow`` (the ``[parquet]`` extra).
"""
from __future__ import annotations

import bz2
import json
import lzma
import os
import zlib
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import ChatflowError, DataError
from ..files import json_error

SNIFF_BYTES = 1 << 16
COMPRESSED = ("gzip", "bz2", "xz", "zstd")
COLUMNAR = ("parquet", "arrow", "arrow_stream")
COMPRESSION_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd")
DATASETS_STATE = "state.json"
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
          (b"PAR1", "parquet"), (b"ARROW1", "arrow"), (b"\xff\xff\xff\xff", "arrow_stream"))
# binary kinds we name but do not read
_FOREIGN = ((b"PK\x03\x04", "a zip archive (unpack it and name the files inside)"),
            (b"7z\xbc\xaf\x27\x1c", "a 7z archive (unpack it and name the files inside)"),
            (b"\xff\xfe", "UTF-16 text (convert it to UTF-8)"), (b"\xfe\xff", "UTF-16 text (convert it to UTF-8)"),
            (b"%PDF", "a PDF document"), (b"\x89PNG", "a PNG image"), (b"\x93NUMPY", "a numpy .npy array"),
            (b"SQLite format 3\x00", "an SQLite database"), (b"\x80\x04\x95", "a Python pickle"))


# ---------------------------------------------------------------------------------------------
# What a path holds


def is_datasets_folder(path: str | os.PathLike) -> bool:
    """A folder written by ``datasets``' ``Dataset.save_to_disk`` (or ``DatasetDict``'s)."""
    path = Path(path)
    return path.is_dir() and ((path / DATASETS_STATE).is_file() or (path / "dataset_dict.json").is_file())


def datasets_files(folder: str | os.PathLike) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` folder, in the dataset's row order (``state.json``'s ``_data_files``).
    A ``DatasetDict`` folder is refused with its splits named (name one of them)."""
    folder = Path(folder)
    if (folder / "dataset_dict.json").is_file():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits")
        except (OSError, ValueError, AttributeError):
            splits = None
        shown = ", ".join(str(folder / s) for s in splits or []) or "its split folders"
        raise ChatflowError(f"{folder}: a datasets DatasetDict (several splits); name one split folder: {shown}")
    try:
        state = json.loads((folder / DATASETS_STATE).read_text(encoding="utf-8"))
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChatflowError(f"{folder / DATASETS_STATE}: not a datasets save_to_disk state ({exc})") from None
    files = []
    for name in names:
        path = folder / name
        if os.path.isabs(name) or ".." in Path(name).parts or not path.is_file():
            raise ChatflowError(f"{folder / DATASETS_STATE}: names the data file {name!r}, which is not in {folder}")
        files.append(path)
    if not files:
        raise ChatflowError(f"{folder}: a datasets folder without data files")
    return files


def expand(path: str | os.PathLike) -> list[Path]:
    """The files a source path stands for: itself, or a ``datasets`` folder's Arrow files."""
    path = Path(path)
    return datasets_files(path) if is_datasets_folder(path) else [path]


def _foreign(head: bytes) -> str | None:
    for magic, what in _FOREIGN:
        if head.startswith(magic):
            return what
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive (unpack it and name the files inside)"
    return None


def detect(path: str | os.PathLike) -> str:
    """The kind of the file ``path`` (the table above), from its first bytes (and last, for parquet)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
            if head.startswith(b"PAR1"):
                handle.seek(-4, os.SEEK_END)
                if handle.read(4) != b"PAR1":
                    raise ChatflowError(f"{path}: a parquet file without its footer (truncated?); the file is "
                                        f"incomplete or damaged")
    except OSError as exc:
        raise ChatflowError(f"{path}: cannot read ({(exc.strerror or str(exc)).lower()})") from None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    check_text(head, path)
    return "text"


def check_text(data: bytes, path: str | os.PathLike, offset: int = 0, decompressed: bool = False) -> None:
    """Refuse bytes that are not text: a NUL byte (never in UTF-8 text, everywhere in binary files), naming what
    the file looks like when it is a known kind. ``offset``: where ``data`` starts in the (decompressed) text."""
    what = _foreign(data) if offset == 0 else None
    if what is None and b"\x00" not in data:
        return
    what = what or "a binary file of no kind chatflow reads"
    inside = " once decompressed" if decompressed else ""
    raise ChatflowError(f"{path}: {what}{inside}, not text; corpus files are JSON lines, TSV or plain text (optionally "
                        f"gzip/bz2/xz/zstd-compressed), parquet, Arrow or a datasets save_to_disk folder")


def text_name(path: str | os.PathLike) -> str:
    """The name that says a text file's format: without its compression suffix (``a.jsonl.gz`` -> ``a.jsonl``)."""
    name = Path(path).name
    lower = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ---------------------------------------------------------------------------------------------
# Decompression


def _zstd_decompressor():
    """A fresh zstd decompression object (``decompress``, ``eof``, ``unused_data``)."""
    try:
        from compression import zstd as stdlib_zstd     # Python 3.14+
        return stdlib_zstd.ZstdDecompressor()
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise ChatflowError("reading .zst files needs zstandard: pip install 'chatflow-plugin[zstd]' (or pip install "
                            "zstandard)") from None
    return zstandard.ZstdDecompressor().decompressobj()


def _decompressor(kind: str):
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor()
    return _zstd_decompressor()


_STREAM_ERRORS = (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError)


def _stream_error_types() -> tuple:
    errors = _STREAM_ERRORS
    for module, name in (("zstandard", "ZstdError"), ("compression.zstd", "ZstdError")):
        try:
            errors += (getattr(__import__(module, fromlist=[name]), name),)
        except (ImportError, AttributeError):
            pass
    return errors


def decompressed(path: str | os.PathLike, kind: str, read_bytes: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
    """``(compressed bytes consumed so far, decompressed bytes)`` of a compressed file, block by block; every
    stream of a multi-stream file (concatenated gzip members, zstd frames, xz or bz2 streams) in turn. A stream
    cut short or damaged raises a :class:`ChatflowError` naming the file and the compressed offset."""
    name = {"gzip": "gzip", "bz2": "bzip2", "xz": "xz", "zstd": "zstd"}[kind]
    errors = _stream_error_types()
    decoder = _decompressor(kind)
    consumed = 0            # compressed bytes handed to the decoders and used by them
    started = False         # the current stream has taken input
    with open(path, "rb") as handle:
        data = b""
        while True:
            if not data:
                data = handle.read(read_bytes)
                if not data:
                    break
            try:
                out = decoder.decompress(data)
            except errors as exc:
                raise ChatflowError(f"{path}: damaged {name} data at compressed byte {consumed:,} or after ({exc}); "
                                    f"the file is corrupt") from None
            started = True
            if decoder.eof:                      # a stream ended: what follows starts the next one
                rest = decoder.unused_data
                consumed += len(data) - len(rest)
                if kind == "gzip":               # gzip files may be padded with zeros after the last member
                    stripped = rest.lstrip(b"\x00")
                    consumed += len(rest) - len(stripped)
                    rest = stripped
                decoder, started, data = _decompressor(kind), False, rest
            else:
                consumed += len(data)
                data = b""
            if out:
                yield consumed, out
    if started and not decoder.eof:
        raise ChatflowError(f"{path}: the {name} stream is truncated: it ends at compressed byte {consumed:,} before "
                            f"its end-of-stream marker; the file is incomplete (copy or download it again)")


def text_blocks(path: str | os.PathLike, kind: str, block_bytes: int) -> Iterator[tuple[int, int, bytes]]:
    """``(start, end, text)``: the (decompressed) text of ``path``, of kind ``text`` or compressed, in blocks of
    about ``block_bytes`` that end at line ends (the last one may not); ``start``/``end`` are offsets in the file
    as stored (compressed bytes), for progress. The first 64 KB of decompressed text are checked to be text."""
    if kind == "text":
        def raw() -> Iterator[tuple[int, bytes]]:
            with open(path, "rb") as handle:
                done = 0
                while data := handle.read(block_bytes):
                    done += len(data)
                    yield done, data
        pieces = raw()
    else:
        pieces = decompressed(path, kind)
    carry, start, seen = b"", 0, 0
    for consumed, data in pieces:
        if seen < SNIFF_BYTES:
            check_text(data[: SNIFF_BYTES - seen], path, offset=seen, decompressed=kind != "text")
        seen += len(data)
        carry += data
        while len(carry) >= block_bytes:
            cut = carry.rfind(b"\n", 0, block_bytes) + 1 or carry.find(b"\n", block_bytes) + 1   # a longer line: whole
            if not cut:
                break
            yield start, consumed, carry[:cut]
            carry, start = carry[cut:], consumed
    if carry:
        yield start, os.path.getsize(path), carry


# ---------------------------------------------------------------------------------------------
# Columnar files


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
    except ImportError:
        raise ChatflowError("reading parquet and Arrow files needs pyarrow: pip install 'chatflow-plugin[parquet]' "
                            "(or pip install pyarrow)") from None
    return pyarrow


def _columnar_error(path, exc: BaseException, where: str = "") -> ChatflowError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ChatflowError(f"{path}: unreadable{where} ({text}); the file is incomplete or damaged")


def table_schema(path: str | os.PathLike, kind: str) -> list[str]:
    """The column names of a columnar file."""
    pa = _pyarrow()
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq
            return list(pq.ParquetFile(path).schema_arrow.names)
        source = pa.memory_map(str(path))
        reader = pa.ipc.open_file(source) if kind == "arrow" else pa.ipc.open_stream(source)
        return list(reader.schema.names)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _columnar_error(path, exc) from None


def record_batches(path: str | os.PathLike, kind: str, columns: Sequence[str], batch_bytes: int
                   ) -> Iterator[tuple[int, int, int, "object"]]:
    """``(start, end, rows before, record batch)`` of the ``columns`` of a columnar file, each batch of about
    ``batch_bytes`` of data (at least one row); ``start``/``end`` apportion the file's size by rows, for
    progress."""
    pa = _pyarrow()
    size = os.path.getsize(path)
    rows_done = 0
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq
            pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
            meta = pf.metadata
            total = meta.num_rows
            data = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            rows = max(1, int(batch_bytes / max(data / max(total, 1), 1)))
            batches = pf.iter_batches(batch_size=rows, columns=list(columns), use_threads=False)
        else:
            source = pa.memory_map(str(path))
            reader = pa.ipc.open_file(source) if kind == "arrow" else pa.ipc.open_stream(source)
            total = None
            batches = _sliced(reader if kind == "arrow_stream" else
                              (reader.get_batch(i) for i in range(reader.num_record_batches)),
                              list(columns), batch_bytes)
        for batch in batches:
            n = batch.num_rows
            if total is None:
                start, end = 0, 0
            else:
                start, end = size * rows_done // max(total, 1), size * (rows_done + n) // max(total, 1)
            yield start, end, rows_done, batch
            rows_done += n
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _columnar_error(path, exc, f" after row {rows_done:,}") from None


def _sliced(batches, columns: list[str], batch_bytes: int):
    """Record batches of a memory-mapped Arrow file, narrowed to ``columns`` and cut to about ``batch_bytes``."""
    for batch in batches:
        batch = batch.select(columns)
        if not batch.num_rows:
            continue
        rows = max(1, int(batch_bytes / max(batch.nbytes / batch.num_rows, 1)))
        for lo in range(0, batch.num_rows, rows):
            yield batch.slice(lo, rows)


def batch_to_bytes(batch) -> bytes:
    """A record batch as Arrow IPC stream bytes (what a worker process is sent)."""
    pa = _pyarrow()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def rows_of(payload: bytes) -> list[dict]:
    """The rows of :func:`batch_to_bytes`' bytes as dicts; a null is an absent field (as a JSON line leaves it
    out), so a row reads exactly like the JSON object with the same values."""
    pa = _pyarrow()
    table = pa.ipc.open_stream(payload).read_all()
    return [{k: v for k, v in row.items() if v is not None} for row in table.to_pylist()]


# ---------------------------------------------------------------------------------------------
# Records of any container (the readers outside preprocessing: CLO data, the demo's split)


def iter_json_records(path: str | os.PathLike, columns: Sequence[str] | None = None,
                      block_bytes: int = 1 << 22) -> Iterator[tuple[str, object]]:
    """``(location, record or DataError)`` for every record of a file of any kind above: JSON lines (a JSON array
    file too, read whole), plain or compressed, or the rows of a columnar file or ``datasets`` folder (``columns``:
    those only, default all). Locations are ``path:line`` (lines of the decompressed text; rows from 1 for
    columnar files) or ``path[i]`` for the items of a JSON array. Blank lines are skipped."""
    path = Path(path)
    if not path.exists():
        raise ChatflowError(f"{path}: no such file")
    for file in expand(path):
        kind = detect(file)
        if kind in COLUMNAR:
            wanted = table_schema(file, kind) if columns is None else \
                [c for c in columns if c in set(table_schema(file, kind))]
            for _, _, before, batch in record_batches(file, kind, wanted, block_bytes):
                for i, row in enumerate(rows_of(batch_to_bytes(batch))):
                    yield f"{file}:{before + i + 1}", row
            continue
        yield from _text_records(file, kind, block_bytes)


def _text_records(path: Path, kind: str, block_bytes: int) -> Iterator[tuple[str, object]]:
    line, first = 0, True
    array: list[bytes] | None = None
    for _, _, data in text_blocks(path, kind, block_bytes):
        if first:
            data = data.removeprefix(b"\xef\xbb\xbf")
            if data.lstrip()[:1] == b"[":
                array = []
            first = False
        if array is not None:
            array.append(data)
            continue
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for raw in lines:
            line += 1
            where = f"{path}:{line}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield where, DataError(f"invalid UTF-8 at byte {exc.start}")
                continue
            if not text.strip():
                continue
            try:
                yield where, json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield where, DataError(f"invalid JSON ({json_error(exc)})")
    if array is not None:
        try:
            records = json.loads(b"".join(array).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DataError(f"invalid UTF-8 at byte {exc.start}", str(path)) from None
        except (ValueError, RecursionError) as exc:
            raise DataError(f"invalid JSON array: {json_error(exc)}", str(path)) from None
        if not isinstance(records, list):
            raise DataError("expected a JSON array", str(path))
        for i, record in enumerate(records):
            yield f"{path}[{i}]", record
