"""Paths written into generated files.

One rule for every path the project writes into a file it generates (mixture files, manifests, run records,
plans): it is either absolute, or relative to the folder of the file that holds it, and every reader resolves
it that way (:func:`resolve_from_file`), whatever the working directory. Writers use relative paths only for
targets inside the output tree they are writing, so that tree can be moved as a whole.
"""
from __future__ import annotations

import os
from pathlib import Path


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
