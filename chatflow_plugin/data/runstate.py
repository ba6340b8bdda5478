"""The run state every checkpoint carries, on both backends: where the run is and which mixture it follows.

``chatflow_state.json`` (in an HF ``checkpoint-N/`` and ``final/``, in a DeepSpeed ``<dir>/<tag>/``, or
as ``O-<step>.chatflow.json`` beside a plain TencentPretrain save) is written before the checkpoint counts as
complete (HF: before ``trainer_state.json``; host: with the DeepSpeed tag or before the rename). It holds:

| key | meaning |
|---|---|
| ``step`` | the backend's step count at the save (HF: optimizer steps; TencentPretrain: its steps, micro-batches) |
| ``samples_done`` | global samples consumed: where the run continues, whatever its layout then |
| ``global_batch`` | samples per optimizer step at the save |
| ``micro_batch_size``, ``world_size``, ``gradient_accumulation_steps`` | the data-parallel layout at the save |
| ``dataset`` | the shard directory (absolute) |
| ``mixture`` | the run's first mixture (a mixture file's or a history file's JSON, without ``data_root``) |
| ``history`` | the run's history of changes up to ``step``: entries ``{"step", "what", "old", "new", "time", ...}`` (mixture revisions with their ``sample`` and ``by``; global-batch and layout changes) |
| ``adaptive`` | the adaptive policy's state after its last update (null: none) |

Resuming reads the state of the checkpoint it loads (never a newer record), so the position, the mixture
history and the policy's state are those of that step. ``chatflow mixture --run RUN`` reads
:func:`find_state`'s answer for any run folder of either backend.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from ..errors import ChatflowError
from ..files import atomic_file
from .batches import MixtureDataset
from .revisions import MixtureHistory, MixtureRevision, change, mixture_change, mixture_json

STATE_FILE = "chatflow_state.json"
STATE_SUFFIX = ".chatflow.json"      # beside a plain TencentPretrain checkpoint file O-<step>
LAYOUT_KEYS = ("micro_batch_size", "gradient_accumulation_steps", "world_size")
CHANGEABLE = ("mixture", "global_batch")     # what --allow_change may name


def write_state(path: str | os.PathLike, **state: Any) -> None:
    with atomic_file(path, mode="w") as handle:
        handle.write(json.dumps(state, indent=2, ensure_ascii=False) + "\n")


def read_state(path: str | os.PathLike, advice: str = "delete it to start from the checkpoint's step alone") -> dict | None:
    """The state at ``path`` (None if there is none); ``step`` and ``samples_done`` are checked."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        int(state["step"]), int(state["samples_done"])
        if not isinstance(state.get("history", []), list):
            raise ValueError("'history' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ChatflowError(f"{path}: unreadable chatflow run state ({exc}); {advice}") from None
    return state


def history_of(state: Mapping[str, Any], where: str) -> MixtureHistory | None:
    """The mixture history a state records (None: a state written before histories were kept)."""
    if state.get("mixture") is None:
        return None
    return MixtureHistory.from_changes(state["mixture"], state.get("history", []), where=f"{where}: history")


def _newest(paths) -> Path | None:
    def step(path: Path) -> int:
        found = re.findall(r"(\d+)", path.name)
        return int(found[-1]) if found else -1
    paths = sorted(paths, key=step)
    return paths[-1] if paths else None


def find_state(run: str | os.PathLike) -> Path:
    """The newest run state of ``run``: a state file; a folder holding one (an HF checkpoint or ``final/``, a
    DeepSpeed tag folder); an HF run folder (``final/`` if finished, else its newest ``checkpoint-N/``); a
    DeepSpeed output folder (the tag in ``latest``); or a plain TencentPretrain ``--output_model_path`` O
    (its newest ``O-<step>.chatflow.json``)."""
    run = Path(run)
    if run.is_file():
        return run
    if run.is_dir():
        candidates = [run / STATE_FILE, run / "final" / STATE_FILE]
        if (run / "latest").is_file():
            candidates.append(run / (run / "latest").read_text(encoding="utf-8").strip() / STATE_FILE)
        newest = _newest(p for p in run.glob(f"checkpoint-*/{STATE_FILE}"))
        candidates += [newest] if newest is not None else []
        for path in candidates:
            if path.is_file():
                return path
    newest = _newest(run.parent.glob(f"{run.name}-*{STATE_SUFFIX}")) if run.parent.is_dir() else None
    if newest is not None:
        return newest
    raise ChatflowError(f"{run}: no chatflow run state found (looked for {STATE_FILE} in the folder, final/, the "
                        f"newest checkpoint-N/ or DeepSpeed tag, and for {run.name}-<step>{STATE_SUFFIX})")


# -- resuming: what may change, and the history entries of what did ------------------------------------

def describe_change(key: str, old: Any, new: Any) -> str:
    """``key: old -> new`` for an error message (just ``key`` when the values are long)."""
    before, after = repr(old), repr(new)
    return key if len(before) + len(after) > 80 else f"{key}: {before} -> {after}"


def refuse_changes(run: Path | str, changed: list[tuple[str, Any, Any]], why: str = "", advice: str = "",
                   allowed: Collection[str] | None = None, described: Mapping[str, str] | None = None) -> None:
    """Refuse to continue ``run`` with the settings ``changed`` ((key, old, new)) that ``allowed`` (the names
    given to ``--allow_change``) does not list; None: settings no flag can change. ``described``: how to say a
    key's change, where ``key: old -> new`` would not say it."""
    refused = [c for c in changed if allowed is None or c[0] not in allowed]
    if refused:
        why = f"; {why}" if why else ""
        names = ", ".join((described or {}).get(c[0]) or describe_change(*c) for c in refused)
        allow = " ".join(f"--allow_change {key}" for key, _, _ in refused)
        raise ChatflowError(f"{run}: cannot resume with different settings ({names}{why}); {advice}"
                            + (f", or allow the change explicitly with {allow}" if allowed is not None else ""))


def json_differences(old: Any, new: Any, where: str = "") -> list[str]:
    """``path: old -> new`` for each value that differs between two JSON values (``groups[1].beta: 0.5 -> 0.3``;
    a key present on one side only: ``(absent)``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in list(old) + [k for k in new if k not in old]:
            lines += json_differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{where}.{key}" if where else key)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in json_differences(a, b, f"{where}[{i}]")]
    if old == new and type(old) is type(new):
        return []
    return [f"{where}: {'(absent)' if old is _ABSENT else repr(old)} -> {'(absent)' if new is _ABSENT else repr(new)}"]


_ABSENT = object()


def mixture_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """How a mixture changed, for a message: its name, and the first fields that differ."""
    lines = json_differences({k: v for k, v in old.items() if k != "name"},
                             {k: v for k, v in new.items() if k != "name"})
    fields = ", ".join(lines[:3]) + (f" and {len(lines) - 3} more" if len(lines) > 3 else "")
    name = (f"{old.get('name')!r}" if old.get("name") == new.get("name") else
            f"{old.get('name')!r} -> {new.get('name')!r}")
    return f"mixture {name}" + (f": {fields}" if fields else "")


def check_change_names(allowed: Collection[str], names: Sequence[str]) -> None:
    """Refuse ``--allow_change`` names that are not among ``names`` (what the command lets a resumed run change)."""
    unknown = sorted(set(allowed) - set(names))
    if unknown:
        raise ChatflowError(f"--allow_change {' '.join(unknown)}: not a setting a resumed run may change (those "
                            f"are: {', '.join(names) or 'none'})")


def check_allowed(allowed: Collection[str], also: Collection[str] = ()) -> None:
    """Refuse ``--allow_change`` names that are neither :data:`CHANGEABLE` nor ``also`` (a trainer's own
    changeable settings: its objective, learning-rate schedule ...)."""
    check_change_names(allowed, list(CHANGEABLE) + [name for name in also if name not in CHANGEABLE])


def layout_changes(state: Mapping[str, Any], layout: Mapping[str, int], run: str, allowed: Collection[str]) -> list[dict]:
    """History entries for a resumed run's data-parallel layout: another global batch (micro-batch x accumulation
    x ranks) only if allowed; the layout's parts, which keep what a step reads when their product is kept."""
    step, samples = int(state["step"]), int(state["samples_done"])
    batch = layout["micro_batch_size"] * layout["gradient_accumulation_steps"] * layout["world_size"]
    entries = []
    if "global_batch" in state and int(state["global_batch"]) != batch:
        refuse_changes(run, [("global_batch", int(state["global_batch"]), batch)], allowed=allowed,
                       advice="keep micro-batch x accumulation x data-parallel ranks at the recorded global batch")
        entries.append(change(step, "global_batch", int(state["global_batch"]), batch, sample=samples))
    return entries + [change(step, key, state[key], layout[key], sample=samples) for key in LAYOUT_KEYS
                      if key in state and state[key] != layout[key]]


def resume_mixture(state: Mapping[str, Any], given: MixtureDataset, run: str, allowed: Collection[str],
                   by: str, catch_up: float = 0.0, where: str = "") -> tuple[MixtureDataset, list[dict]]:
    """The dataset a resumed run reads: the checkpoint's mixture history (``given``'s shards and settings), and
    if the mixture given now differs from the last one given to the run, a revision from the checkpoint's
    sample on (only if ``allowed``), with its history entry. ``given``: the dataset as this start's options
    build it."""
    history = history_of(state, where or run)
    resumed = MixtureDataset(given.shards, spec=history, seed=given.seed, response_only=given.response_only)
    wanted = given.history
    if len(wanted) > 1:          # a history file: it must be the start of the run's history
        if wanted.to_json()["revisions"] != resumed.history.to_json()["revisions"][:len(wanted)]:
            raise ChatflowError(f"{by} is a history file, which can only start a run; to change the mixture of {run} "
                                f"give a mixture file")
        return resumed, []
    spec = wanted.current
    if mixture_json(spec) == mixture_json(resumed.history.designed):
        return resumed, []
    refuse_changes(run, [("mixture", resumed.history.designed.name, spec.name)], allowed=allowed,
                   advice="resume with the run's mixture",
                   described={"mixture": mixture_difference(mixture_json(resumed.history.designed),
                                                             mixture_json(spec))})
    revision = MixtureRevision(int(state["samples_done"]), spec, step=int(state["step"]), by=by, catch_up=catch_up)
    entry = mixture_change(resumed.history, revision)
    resumed.revise(revision)
    return resumed, [entry]


def first_mixture(history: MixtureHistory) -> dict[str, Any]:
    """How a state records the mixture a run starts with: a mixture's JSON, or a history file's."""
    return mixture_json(history.current) if len(history) == 1 else history.to_json()
