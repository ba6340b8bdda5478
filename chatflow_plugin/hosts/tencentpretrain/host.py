"""TencentPretrain host: find the host, and register the plugin's names in its registries.

``register()`` adds ``dynamic_mixture`` to the host's dataset, dataloader and trainer registries and
``chatflow_instruction`` to its target registry. The registries are plain module-level dicts that
the host's scripts read at call time, so they are mutated in place; calling ``register()`` again
changes nothing.

The host is found through ``TENCENTPRETRAIN_HOME`` (a clone of github.com/Tencent/TencentPretrain)
or, failing that, an importable ``tencentpretrain`` package.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path

from ...errors import ChatflowError
from ...resources import resource_root
from .names import DATA_PROCESSOR, HOME_VARIABLE, TARGET

# The project's LLaMA special-token map: the host reads models/special_tokens_map.json relative to
# the working directory when tencentpretrain.utils.constants is first imported.
SPECIAL_TOKENS_MAP = Path("models") / "special_tokens_map.json"

_HOW_TO_GET = ("clone https://github.com/Tencent/TencentPretrain and set TENCENTPRETRAIN_HOME to it "
               "(it is not on PyPI), or make `tencentpretrain` importable")


def locate_host() -> Path:
    """The host's work tree (the folder holding ``tencentpretrain/`` and its scripts), put on sys.path."""
    home = os.environ.get(HOME_VARIABLE)
    if home:
        root = Path(home).expanduser().resolve()
        if not (root / "tencentpretrain" / "__init__.py").is_file():
            raise ChatflowError(f"{HOME_VARIABLE}={home} is not a TencentPretrain work tree "
                                f"(no tencentpretrain/__init__.py there); {_HOW_TO_GET}")
        loaded = sys.modules.get("tencentpretrain")
        if loaded is not None and Path(loaded.__file__).resolve().parents[1] != root:
            raise ChatflowError(f"tencentpretrain is already imported from {Path(loaded.__file__).parent}, "
                                f"not from {HOME_VARIABLE}={root}")
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return root
    spec = importlib.util.find_spec("tencentpretrain")
    if spec is None or spec.origin is None:
        raise ChatflowError(f"TencentPretrain not found: {_HOW_TO_GET}")
    return Path(spec.origin).resolve().parents[1]


def special_tokens_root() -> Path:
    """The folder whose ``models/special_tokens_map.json`` the host should read at import.

    The plugin's own (LLaMA's sentencepiece tokens), shipped with the package (a checkout's top-level
    ``models/``, or the copy a regular install bundles).
    """
    return resource_root()


@contextlib.contextmanager
def _working_directory(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def import_host_constants() -> None:
    """Import the host's constants module with the LLaMA special-token map, from any working directory."""
    if "tencentpretrain.utils.constants" in sys.modules:
        return
    with _working_directory(special_tokens_root()):
        importlib.import_module("tencentpretrain.utils.constants")


def register() -> dict[str, object]:
    """Add the plugin to the host's registries (idempotent). Returns the registered classes."""
    locate_host()
    import_host_constants()
    from . import classes
    import tencentpretrain.targets as host_targets
    import tencentpretrain.trainer as host_trainer
    import tencentpretrain.utils as host_utils

    added = {
        ("str2dataset", DATA_PROCESSOR): classes.ChatflowMixtureDataset,
        ("str2dataloader", DATA_PROCESSOR): classes.ChatflowMixtureDataloader,
        ("str2trainer", DATA_PROCESSOR): classes.ChatflowTrainer,
        ("str2target", TARGET): classes.ChatflowInstructionTarget,
    }
    registries = {"str2dataset": host_utils.str2dataset, "str2dataloader": host_utils.str2dataloader,
                  "str2trainer": host_trainer.str2trainer, "str2target": host_targets.str2target}
    # The host's modules do `from tencentpretrain.utils import *`, so the same dict objects are
    # shared everywhere; mutate them, never rebind.
    for (registry, name), cls in added.items():
        registries[registry][name] = cls
    return {f"{registry}[{name!r}]": cls for (registry, name), cls in added.items()}
