"""Files the project writes and reads: atomic writes, checksums, JSON and JSON-lines reading, figure saving,
and the rule for paths inside generated files.

**Atomic writes.** Everything is written under a temporary sibling name and renamed into place only when
complete (``os.replace`` is atomic within one filesystem), so an interrupted write never leaves output that
loads as valid.

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
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ChatflowError, DataError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file next to ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it onto ``path`` only if the block succeeds.

    An existing ``path`` is an error unless ``force``, in which case it is replaced only after the
    new directory is complete.
    """
    path = Path(path)
    if path.exists() and not force:
        raise ChatflowError(f"output directory {path} already exists (pass --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        yield tmp
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value of the file ``path``; missing or not JSON is an error naming the file as ``what``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatflowError(f"{path}: {what} not found") from None
    except ValueError as exc:   # JSONDecodeError and UnicodeDecodeError
        raise ChatflowError(f"{path}: {what} is not valid JSON ({exc})") from None


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
                except json.JSONDecodeError as exc:
                    value = DataError(f"invalid JSON ({exc.msg} at column {exc.colno})", f"{path}:{number}")
            if type(value) is DataError and on_bad_line == "raise":
                raise value
            yield (number, value, text.rstrip("\r\n")) if with_text else (number, value)


def json_strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (object values, list items, nested), in document order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_strings(item)


def write_csv(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Rows as CSV (columns in order of first appearance; None -> empty), written atomically."""
    import csv
    import io

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    with atomic_file(path) as handle:
        handle.write(buffer.getvalue())
    return Path(path)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: figures are drawn for files, never shown."""
    import matplotlib

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


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename the complete directory ``source`` to ``target``; an existing ``target`` is moved aside
    first and deleted only once ``source`` is in its place."""
    source, target = Path(source), Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


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
