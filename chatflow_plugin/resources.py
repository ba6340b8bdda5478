"""Files the package reads at run time: mixture files, model and DeepSpeed configs, the special-token map
and the bundled synthetic corpora.

They have one home in the repository, the top-level ``models/`` (what host users edit) and ``corpora/``. A
regular install (``pip install .``) copies them into the package as ``chatflow_plugin/_bundled/`` (see
``setup.py``), where :func:`resource` finds them through :mod:`importlib.resources`; a checkout or an editable
install reads the repository's own files. There is never a second hand-kept copy.

A command that takes one of these files also takes its *name* (:data:`NAMED`: ``chatflow mixture table1``,
``chatflow train --model_config tiny``, ``--pieces chatflow_62_symbols``; ``chatflow resources`` lists them), so
the README's commands run from any directory after a regular install; and a command that takes a model folder also
takes a Hugging Face Hub id, read from the local cache only (:func:`local_model`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources as _resources
from pathlib import Path

from .errors import ChatflowError
from .options import option

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


# ---------------------------------------------------------------------------------------------
# Resources by name: `chatflow mixture table1`, `--model_config tiny`, `chatflow resources`

# kind -> name -> (packaged file, what it is). A name stands for the file wherever a command takes one of its kind.
NAMED: dict[str, dict[str, tuple[str, str]]] = {
    "mixture": {
        "table1": ("models/mixtures/chatflow_table1.json", "ChatFlow Table 1: six groups, alpha/beta, T_grow 5M, "
                                                           "seq 2048 (paths are placeholders under data_root)"),
        "japanese_table1": ("models/mixtures/japanese_table1.json", "Table 1's recipe with Japanese sources"),
        "tiny_corpora": ("models/mixtures/tiny_corpora.json", "Table 1's groups over the bundled corpora/ "
                                                              "(seq 256, T_grow 2,000)"),
        "demo_ja": ("models/mixtures/demo_ja.json", "the demo's groups for Japanese"),
    },
    "model_config": {
        "tiny": ("models/hf/demo_tiny.json", "a CPU-sized LLaMA (hidden 64, 2 layers): the demo, the smoke runs"),
        "small": ("models/hf/demo_small.json", "the full demo's 2.2M-parameter LLaMA"),
    },
    "host_config": {
        "llama2-7b": ("models/llama2/7b_config.json", "LLaMA-2-7B for the TencentPretrain host (--config_path), "
                                                      "40,763 pieces"),
        "llama2-tiny": ("models/llama2/tiny_config.json", "the tiny LLaMA for the host (--config_path)"),
    },
    "deepspeed_config": {
        "zero3_hf": ("models/hf/deepspeed_zero3_hf.json", "ZeRO-3 for chatflow train --deepspeed"),
        "zero3": ("models/deepspeed_zero3_config.json", "ZeRO-3 with CPU offload for the host (--deepspeed_config)"),
        "zero2": ("models/deepspeed_zero2_config.json", "ZeRO-2 for the host"),
        "cpu": ("models/deepspeed_cpu_config.json", "ZeRO-1, fp32: the host on CPUs"),
    },
    "pieces": {
        "chatflow_62_symbols": ("models/vocab/chatflow_62_symbols.txt", "the 62 symbols (our reconstruction) for "
                                                                        "chatflow expand-vocab --pieces"),
    },
}


def names(kind: str) -> list[str]:
    return list(NAMED[kind])


def named(kind: str, value: str | os.PathLike) -> Path:
    """The file ``value`` names where a file of ``kind`` is expected: itself when it exists; else the packaged file
    of that name (``table1``, ``tiny``) or at that packaged path (``models/hf/demo_tiny.json``, from any working
    directory); else ``value`` unchanged, for the caller's own "not found" (:func:`not_found_hint` adds the
    names)."""
    path = Path(os.path.expanduser(os.fspath(value)))
    if path.exists() or not os.fspath(value):
        return path
    entry = NAMED[kind].get(os.fspath(value))
    if entry is not None:
        return resource(entry[0])
    relative = Path(os.fspath(value)).as_posix()
    if not path.is_absolute() and relative.startswith("models/") and ".." not in Path(relative).parts:
        try:
            return resource(relative)
        except ChatflowError:
            pass
    return path


def not_found_hint(kind: str) -> str:
    """What to say after "not found": the packaged names of ``kind``."""
    return f"(or the name of a packaged {kind.replace('_', ' ')}: {', '.join(NAMED[kind])}; `chatflow resources`)"


@dataclass
class ResourcesOptions:
    json: bool = option(False, help="print the table as JSON: {kind: {name: {path, about}}}")


def list_resources(opts: ResourcesOptions) -> dict:
    """List the packaged files a command takes by name (chatflow mixture table1, --model_config tiny), with where
    they are and what they hold."""
    table = {kind: {name: {"path": str(resource(rel)), "about": about} for name, (rel, about) in entries.items()}
             for kind, entries in NAMED.items()}
    if opts.json:
        print(json.dumps(table, indent=2))
        return table
    takes = {"mixture": "--mixture, chatflow mixture/plan/baselines, the host's --mixture_config",
             "model_config": "chatflow train --model_config", "host_config": "the host's --config_path",
             "deepspeed_config": "chatflow train --deepspeed, the host's --deepspeed_config",
             "pieces": "chatflow expand-vocab --pieces"}
    for kind, entries in table.items():
        print(f"{kind} ({takes[kind]}):")
        width = max(len(n) for n in entries)
        for name, entry in entries.items():
            print(f"  {name:<{width}}  {entry['about']}")
            print(f"  {'':<{width}}  {entry['path']}")
    return table


# ---------------------------------------------------------------------------------------------
# Models by Hugging Face Hub id, from the local cache only

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def local_model(value: str | os.PathLike, flag: str = "--model_path") -> Path:
    """A model (or tokenizer) folder: ``value`` when it exists; a Hugging Face Hub id (``meta-llama/Llama-2-7b-hf``)
    resolves to its snapshot in the local cache (``HF_HOME`` / ``HF_HUB_CACHE``), offline: nothing is downloaded;
    one not in the cache is an error saying how to download it."""
    path = Path(os.path.expanduser(os.fspath(value)))
    text = os.fspath(value)
    if path.exists() or not _HUB_ID.match(text) or text.endswith((".json", ".model", ".bin", ".safetensors")):
        return path
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ChatflowError(f"{flag} {text}: no such folder; reading a Hugging Face Hub id from the local cache needs "
                            f"huggingface_hub (pip install 'chatflow-plugin[hf]')") from None
    try:
        return Path(snapshot_download(text, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        raise ChatflowError(f"{flag} {text}: no such folder here, and not in the local Hugging Face cache "
                            f"({constants.HF_HUB_CACHE}); nothing is downloaded at run time: download it first "
                            f"with `hf download {text}` (gated models such as Llama-2 need `hf auth login` and the "
                            f"licence accepted on huggingface.co), or give the model's folder") from None
