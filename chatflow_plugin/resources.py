"""Files the package reads at run time: mixture files, model and DeepSpeed configs, the special-token map
and the bundled synthetic corpora.

They have one home in the repository, the top-level ``models/`` (what host users edit) and ``corpora/``. A
regular install (``pip install .``) copies them into the package as ``chatflow_plugin/_bundled/`` (see
``setup.py``), where :func:`resource` finds them through :mod:`importlib.resources`; a checkout or an editable
install reads the repository's own files. There is never a second hand-kept copy.
"""
from __future__ import annotations

from importlib import resources as _resources
from pathlib import Path

from .errors import ChatflowError

BUNDLE = "_bundled"                                   # the folder setup.py copies models/ and corpora/ into
SOURCE_TREE = Path(__file__).resolve().parent.parent  # a checkout: the repository root


def resource(relative: str) -> Path:
    """The packaged file or folder ``relative`` (e.g. ``models/hf/demo_tiny.json``, ``corpora``)."""
    bundled = Path(str(_resources.files("chatflow_plugin").joinpath(BUNDLE, *relative.split("/"))))
    if bundled.exists():
        return bundled
    in_tree = SOURCE_TREE / relative
    if in_tree.exists() and (SOURCE_TREE / "setup.py").is_file():
        return in_tree
    raise ChatflowError(f"packaged file {relative!r} is missing: neither {bundled} (regular install) nor "
                        f"{in_tree} (source checkout) exists; reinstall chatflow-plugin")


def resource_root() -> Path:
    """The folder holding ``models/`` and ``corpora/`` (the bundle, or the repository root)."""
    return resource("models").parent
