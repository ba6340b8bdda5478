"""Files the project writes and reads: atomic writes, checksums, JSON and JSON-lines reading, figure saving,
and the rule for paths inside generated files.

**Atomic writes.** Everything is written under a temporary sibling name and renamed into place only when
complete (``os.replace`` is atomic within one filesystem), so an interrupted write never leaves output that
loads as valid; a full or read-only disk is a :class:`~chatflow_plugin.errors.ChatflowError` naming the
output (:func:`write_error`). Whole output folders, and who may replace or write them:
:mod:`chatflow_plugin.outputs`.

**Paths written into generated files.** One rule for every path the project writes into a file it generates
(mixture files, manifests, run records, plans): it is either absolute, or relative to the folder of the file
that holds it, and every reader resolves it that way (:func:`resolve_from_file`), whatever the working
directory. Writers use relative paths only for targets inside the output tree they are writing, so that tree
can be moved as a whole.

**JSON lines.** :func:`read_jsonl` is the one reader of ``.jsonl`` input: blank lines are skipped, a
UTF-8 byte-order mark on the first line is allowed, and a line that is not UTF-8 or not JSON is a
:class:`~chatflow_plugin.errors.DataError` located ``path:line``. Callers validate the records
themselves, with their own messages.

**Figures.** :func:`pyplot` selects matplotlib's file-only Agg backend (no display needed);
:func:`save_figure` writes a figure atomically in the format its file suffix names and frees it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ChatflowError, DataError


# errors that mean "the output cannot be written here": a full or read-only disk, a quota, no permission
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


def is_write_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


def write_error(exc: OSError, output: str | os.PathLike) -> ChatflowError:
    """A clean error for an ``OSError`` met while writing ``output``: what (the system's reason) and where
    (``output``, and the file the error names when that is another one)."""
    reason = (exc.strerror or exc.__class__.__name__).lower()
    at = f", at {exc.filename}" if exc.filename is not None and str(exc.filename) != str(output) else ""
    return ChatflowError(f"cannot write {output}: {reason} (errno {exc.errno}{at})")


def unwritten(exc: BaseException) -> ChatflowError | None:
    """For an entry point's last resort: a full or read-only disk met by a writer that did not name its output
    is a clean error (naming the file the system named); anything else is not recognised (None)."""
    return write_error(exc, exc.filename or "the output") if is_write_error(exc) else None


_DISK_MESSAGES = (("no space left", errno.ENOSPC), ("storagefull", errno.ENOSPC), ("disk quota", errno.EDQUOT),
                  ("read-only file system", errno.EROFS), ("readonlyfilesystem", errno.EROFS))


def disk_error(exc: BaseException, output: str | os.PathLike) -> ChatflowError | None:
    """A clean error when ``exc``, raised while writing ``output``, comes from a full or read-only disk, else
    None. Libraries that write checkpoints do not always raise ``OSError`` (``torch.save`` raises
    ``RuntimeError: ... unexpected pos``, safetensors ``SafetensorError: ... StorageFull``): their message, or
    the state of ``output``'s filesystem (read-only, or under 1 MiB free), tells."""
    if is_write_error(exc):
        return write_error(exc, output)
    text = str(exc).lower().replace(" ", "")
    for words, number in _DISK_MESSAGES:
        if words.replace(" ", "") in text:
            return ChatflowError(f"cannot write {output}: {os.strerror(number).lower()} (errno {number}; "
                                 f"{exc.__class__.__name__})")
    folder = Path(output)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fs = os.statvfs(folder)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        number = errno.EROFS
    elif fs.f_bavail * fs.f_frsize < (1 << 20):
        number = errno.ENOSPC
    else:
        return None
    first = (str(exc).strip().splitlines() or [""])[-1][:160]
    return ChatflowError(f"cannot write {output}: {os.strerror(number).lower()} (errno {number}; "
                         f"{exc.__class__.__name__}: {first})")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Checksums of data files: fast (xxh3-128 at ~10 GB/s where xxhash is installed, blake2b-128 otherwise),
# written as "<algorithm>:<hex digest>" so that a reader knows how to check them.

CHECKSUM_BLOCK = 16 << 20


def _hashers() -> dict:
    out = {"blake2b_128": lambda: hashlib.blake2b(digest_size=16)}
    try:
        import xxhash
    except ImportError:
        return out
    return {"xxh3_128": xxhash.xxh3_128, **out}


def new_checksum(algorithm: str | None = None) -> "_Named":
    """A hasher (``update(bytes)``, ``text()``) of ``algorithm`` (default: the fastest available here)."""
    hashers = _hashers()
    algorithm = algorithm or next(iter(hashers))
    if algorithm not in hashers:
        hint = " (pip install xxhash)" if algorithm.startswith("xxh") else ""
        raise ChatflowError(f"checksum algorithm {algorithm!r} is not available here{hint}")
    return _Named(hashers[algorithm](), algorithm)


class _Named:
    def __init__(self, hasher, algorithm: str):
        self.hasher, self.algorithm = hasher, algorithm

    def update(self, data) -> None:
        self.hasher.update(data)

    def text(self) -> str:
        """``"<algorithm>:<hex digest>"``."""
        return f"{self.algorithm}:{self.hasher.hexdigest()}"


def checksum_algorithm(value: Any, where: str) -> str:
    """The algorithm of a checksum text ``"<algorithm>:<hex>"``; anything else is an error naming ``where``."""
    if isinstance(value, str):
        algorithm, sep, digest = value.partition(":")
        if sep and algorithm in ("xxh3_128", "blake2b_128") and len(digest) == 32 and \
                all(c in "0123456789abcdef" for c in digest):
            return algorithm
    raise ChatflowError(f"{where}: expected a checksum like 'xxh3_128:<32 hex digits>', got {value!r}")


def file_checksum(path: str | os.PathLike, algorithm: str | None = None, inspect=None) -> str:
    """The checksum text of the file ``path``, read in blocks of :data:`CHECKSUM_BLOCK` bytes; ``inspect(block,
    offset)`` sees every block too (a bounds check in the same pass)."""
    hasher = new_checksum(algorithm)
    buffer = bytearray(CHECKSUM_BLOCK)      # one buffer, read into: no allocation per block
    view = memoryview(buffer)
    offset = 0
    with open(path, "rb", buffering=0) as handle:
        while got := handle.readinto(buffer):
            block = view[:got]
            hasher.update(block)
            if inspect is not None:
                inspect(block, offset)
            offset += got
    return hasher.text()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise (write_error(exc, path) if is_write_error(exc) else exc) from None
    os.close(fd)
    try:
        os.chmod(tmp, permissions(0o666))   # mkstemp makes 0600; the file gets the mode open() would give it
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if is_write_error(exc):
            raise write_error(exc, path) from None
        raise


def permissions(base: int) -> int:
    """``base`` (0o666 for a file, 0o777 for a folder) less the process's umask, as ``open``/``mkdir`` apply it."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value of the file ``path``; missing or not JSON is an error naming the file as ``what``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatflowError(f"{path}: {what} not found") from None
    except (ValueError, RecursionError) as exc:   # JSONDecodeError, UnicodeDecodeError, huge integers, nesting
        raise ChatflowError(f"{path}: {what} is not valid JSON ({json_error(exc)})") from None


def read_jsonl(path: str | os.PathLike, on_bad_line: str = "raise",
               with_text: bool = False) -> Iterator[tuple]:
    """``(line number, value)`` of each non-blank line of the JSON-lines file ``path``, numbered from 1.

    A line that is not UTF-8 or not JSON raises ``DataError("invalid UTF-8 at byte N" | "invalid JSON
    (...)", "path:line")``; with ``on_bad_line="yield"`` that error is yielded in place of the value, so
    the caller can report the line and go on. ``with_text`` yields ``(number, value, text)``, ``text``
    being the line as read, without its line ending. A missing file raises ``FileNotFoundError`` (on the
    first ``next``), for the caller to name in its own terms.
    """
    if on_bad_line not in ("raise", "yield"):
        raise ValueError(f"on_bad_line must be 'raise' or 'yield', not {on_bad_line!r}")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                value, text = DataError(f"invalid UTF-8 at byte {exc.start}", f"{path}:{number}"), ""
            else:
                if number == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                if not text.strip():
                    continue
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError) as exc:
                    value = DataError(f"invalid JSON ({json_error(exc)})", f"{path}:{number}")
            if type(value) is DataError and on_bad_line == "raise":
                raise value
            yield (number, value, text.rstrip("\r\n")) if with_text else (number, value)


def json_error(exc: BaseException) -> str:
    """What is wrong with a JSON text, from the exception ``json.loads`` raised: a syntax error (with its
    column), an integer longer than Python converts, or nesting deeper than the parser's recursion limit."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(";")[0]


def json_strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (object values, list items, nested), in document order (iteratively:
    any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def csv_columns(rows: list[dict]) -> list[str]:
    """The columns of :func:`write_csv`: every key, in order of first appearance."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _csv_writer(handle, columns: list[str]):
    import csv

    return csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")


def _csv_row(row: dict, columns: list[str]) -> dict:
    return {k: ("" if row.get(k) is None else row.get(k)) for k in columns}


def write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Rows as CSV (columns in order of first appearance; None -> empty), written atomically."""
    import io

    columns = csv_columns(rows)
    buffer = io.StringIO()
    writer = _csv_writer(buffer, columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(_csv_row(row, columns))
    with atomic_file(path) as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def append_csv_row(path: str | os.PathLike, columns: list[str], row: dict) -> None:
    """One row added to a CSV :func:`write_csv` wrote with ``columns`` (which hold every key of ``row``), formatted
    as it would format it: O(1) where rewriting the file grows with it."""
    with open(path, "a", encoding="utf-8", newline="") as handle:
        _csv_writer(handle, columns).writerow(_csv_row(row, columns))


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: figures are drawn for files, never shown. Without matplotlib: a
    :class:`ChatflowError` naming the extra that installs it."""
    try:
        import matplotlib
    except ImportError:
        raise ChatflowError("plots need matplotlib: pip install 'chatflow-plugin[plot]' (or pip install "
                            "matplotlib)") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` atomically in the format the suffix of ``path`` names (PNG without one) and close it."""
    path = Path(path)
    try:
        fmt = path.suffix.lstrip(".").lower() or "png"
        supported = fig.canvas.get_supported_filetypes()
        if fmt not in supported:
            raise ChatflowError(f"{path}: cannot write a .{fmt} figure (choose one of: {', '.join(sorted(supported))})")
        with atomic_file(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=dpi)
    finally:
        pyplot().close(fig)
    return path


def path_for_file(target: str | os.PathLike, file: str | os.PathLike,
                  tree: str | os.PathLike | None = None) -> str:
    """How ``file`` should name ``target``: relative to ``file``'s folder when both lie inside ``tree``,
    else absolute. Relative inputs are taken relative to the working directory."""
    target_abs = os.path.abspath(target)
    folder = os.path.dirname(os.path.abspath(file))
    if tree is not None:
        root = os.path.abspath(tree)
        if _inside(target_abs, root) and _inside(folder, root):
            return Path(os.path.relpath(target_abs, folder)).as_posix()
    return target_abs


def resolve_from_file(value: str | os.PathLike, file: str | os.PathLike) -> Path:
    """A path read from ``file``: absolute as is, relative against ``file``'s folder."""
    value = Path(os.path.expanduser(os.fspath(value)))
    if value.is_absolute():
        return Path(os.path.normpath(value))
    return Path(os.path.normpath(Path(os.path.abspath(file)).parent / value))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
