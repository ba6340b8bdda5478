"""Files the project writes and reads: atomic writes, checksums, and the rule for paths inside generated files.

**Atomic writes.** Everything is written under a temporary sibling name and renamed into place only when
complete (``os.replace`` is atomic within one filesystem), so an interrupted write never leaves output that
loads as valid.

**Paths written into generated files.** One rule for every path the project writes into a file it generates
(mixture files, manifests, run records, plans): it is either absolute, or relative to the folder of the file
that holds it, and every reader resolves it that way (:func:`resolve_from_file`), whatever the working
directory. Writers use relative paths only for targets inside the output tree they are writing, so that tree
can be moved as a whole.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import ChatflowError


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
