"""Where an HF run is and which mixture it follows: the position (samples consumed by each optimizer step), the
history of changes, the adaptive policy's state, and how a resumed run picks them up from its checkpoint.

A checkpoint's run state (``chatflow_state.json``, :mod:`chatflow_plugin.data.runstate`) is the authority: a
resumed run continues at its ``samples_done`` with its mixture history, whatever layout (processes, micro-batch,
accumulation) the run has now; :func:`plan_run` adds the changes ``--allow_change`` lets through (another global
batch; another ``--mixture`` from that sample on) and the layout's, and :class:`RunProgress` carries them through
the run (mirrored into the run record and the log as the adaptive policy adds more) and into every checkpoint.
"""
from __future__ import annotations

from pathlib import Path

from ...data.batches import MixtureDataset
from ...data.runstate import (LAYOUT_KEYS, STATE_FILE, first_mixture, layout_changes, read_state, resume_mixture)
from ...errors import ChatflowError
from ..zero import refuse_world_change
from .run import RunLog, RunRecord, RunStart


class RunProgress:
    """The run's position and history: samples consumed by step s (from the resumed checkpoint's on, at the
    current global batch), the first mixture, the history of changes (mirrored into the run record and the
    log as it grows), and the adaptive policy's state; :meth:`state` is the checkpoint's ``chatflow_state.json``.
    """

    def __init__(self, step: int, samples: int, global_batch: int, layout: dict, first_mixture: dict,
                 changes: list[dict], adaptive: dict | None, dataset: str):
        self.step0, self.sample0, self.global_batch = int(step), int(samples), int(global_batch)
        self.layout, self.first_mixture, self.changes, self.adaptive = layout, first_mixture, changes, adaptive
        self.dataset = dataset
        self.pending: list[dict] = []             # changes made by this start, recorded once the records are open
        self.record: RunRecord | None = None     # rank 0: where the history is mirrored
        self.run_config: dict | None = None
        self.run_log: RunLog | None = None

    def samples_at(self, step: int) -> int:
        """Global samples consumed after ``step`` optimizer steps (step >= the resumed step)."""
        return self.sample0 + (int(step) - self.step0) * self.global_batch

    def state(self, step: int) -> dict:
        return {"step": int(step), "samples_done": self.samples_at(step), "global_batch": self.global_batch,
                **self.layout, "dataset": self.dataset, "mixture": self.first_mixture, "history": self.changes,
                "adaptive": self.adaptive}

    def add_change(self, entry: dict) -> None:
        """Record a change: in the history (every rank), the run record and the log (rank 0)."""
        self.changes.append(entry)
        if self.record is not None:
            self.run_config["history"] = self.changes
            self.record.write(self.run_config)
        if self.run_log is not None:
            self.run_log.add({"kind": "change", **entry})


def global_batch(layout: dict) -> int:
    """Samples per optimizer step."""
    return layout["micro_batch_size"] * layout["gradient_accumulation_steps"] * layout["world_size"]


def _resumed_state(start: RunStart, record: RunRecord) -> dict:
    """The run state of the checkpoint a run resumes from: its ``chatflow_state.json``, or for a checkpoint
    written before run states existed, what the run record says (every step then had the recorded batch)."""
    path = Path(start.checkpoint, STATE_FILE)
    state = read_state(path, advice="a checkpoint of another run?")
    if state is not None:
        return state
    old = record.read() or {}
    layout = {k: old.get(k) for k in LAYOUT_KEYS}
    if None in layout.values() or old.get("mixture") is None:
        raise ChatflowError(f"{start.checkpoint}: no {STATE_FILE} and no run record to tell where the run is")
    first = {k: v for k, v in old["mixture"].items() if k != "data_root"}
    return {"step": start.step, "samples_done": start.step * global_batch(layout), "global_batch": global_batch(layout),
            **layout, "mixture": first, "history": list(old.get("history", [])), "adaptive": None}


def plan_run(start: RunStart, record: RunRecord, mixture: MixtureDataset, layout: dict, dataset: str, output_dir: Path,
             allowed: list[str], mixture_file: str = "", catch_up: float = 0.0, deepspeed: str = ""
             ) -> tuple[RunProgress, MixtureDataset]:
    """Where the run starts and on which mixture history: a fresh run from sample 0 on the mixture given
    (``mixture``: the dataset as this start's options build it); a resumed one from its checkpoint's sample and
    history, with the changes ``allowed`` (--allow_change) lets through (another global batch, another mixture
    from that sample on) pending, to be recorded once the run's records are open."""
    world_size = layout["world_size"]
    if start.checkpoint is None:
        return RunProgress(0, 0, global_batch(layout), layout, first_mixture(mixture.history), [], None,
                           dataset), mixture
    state = _resumed_state(start, record)
    if deepspeed:
        refuse_world_change(Path(start.checkpoint, f"global_step{start.step}"), int(state.get("world_size", world_size)),
                            world_size, deepspeed, int(state["samples_done"]))
    new = layout_changes(state, layout, str(output_dir), allowed)
    resumed, revised = resume_mixture(state, mixture, str(output_dir), allowed, by=mixture_file or "the dataset's mixture",
                                      catch_up=catch_up, where=str(Path(start.checkpoint, STATE_FILE)))
    progress = RunProgress(int(state["step"]), int(state["samples_done"]), global_batch(layout), layout,
                           state["mixture"], list(state.get("history", [])), state.get("adaptive"), dataset)
    progress.pending = new + revised
    return progress, resumed
