"""Proxy runs: each one ordinary ``chatflow train`` run in its own folder, run here, or printed for a scheduler.

A :class:`Run` is one training run of the search (a proxy of a sampled schedule, a ladder re-run at a larger
size, a final re-run of the chosen, reference or static schedule): its mixture file, its run folder (the
``--output_dir`` of ``chatflow train``, with its run record) and the command that trains it. The command names
every path absolutely, so it runs from any directory of any machine that shares the filesystem.

- :func:`run_all` trains the unfinished runs here, ``workers`` at a time (each its own process, with
  ``--threads`` torch threads), its output in ``logs/<run>.log``; a finished run is never started again, and an
  interrupted one starts again where ``chatflow train`` resumes it (its newest checkpoint, with ``--save_every``
  in ``--train_args``).
- :func:`command_line` is the line a scheduler runs (``--print_commands``: one line per run).
- :func:`result` reads a finished run folder, wherever it was trained: the held-out loss per group at its last
  step, from its ``log.jsonl``, once its run record (``chatflow_run.json``) shows it was trained as the printed
  command says (data, held-out set, mixture file, seeds, model, steps, batch and optimizer options, one process):
  a folder trained by an edited command (another held-out set, more processes and so more samples per step
  than its mixture file is written for ...) is refused by name, never mixed in.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import ChatflowError
from ..files import read_json, read_jsonl

# chatflow train's run folder (chatflow_plugin.hosts.hf.train): the summary inside final/, which exists only
# complete, and the run record
FINISHED = Path("final") / "chatflow_train.json"
RUN_RECORD = "chatflow_run.json"


@dataclass(frozen=True)
class TrainSettings:
    """The ``chatflow train`` options every run of one size shares (the proxy size, or the ladder's)."""

    dataset_dir: str
    model_config: str = ""
    model_path: str = ""
    tokenizer: str = ""
    train_steps: int = 100
    micro_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-4
    lr_scheduler: str = "cosine"
    warmup_steps: float = 0
    heldout_windows: int = 64
    bf16: bool = False
    threads: int = 1
    train_args: str = ""

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step (a single process: micro_batch_size x accumulation)."""
        return self.micro_batch_size * self.gradient_accumulation_steps

    @property
    def run_samples(self) -> int:
        """Samples one run draws: train_steps x the global batch."""
        return self.train_steps * self.global_batch

    def arguments(self) -> list[str]:
        model = ["--model_config", _absolute(self.model_config)] if self.model_config else \
            ["--model_path", _absolute(self.model_path)]
        out = ["--dataset_dir", _absolute(self.dataset_dir), *model,
               "--train_steps", str(self.train_steps), "--micro_batch_size", str(self.micro_batch_size),
               "--gradient_accumulation_steps", str(self.gradient_accumulation_steps),
               "--learning_rate", repr(float(self.learning_rate)), "--lr_scheduler", self.lr_scheduler,
               "--warmup_steps", _number(self.warmup_steps), "--heldout_windows", str(self.heldout_windows),
               "--threads", str(self.threads), "--save_total_limit", "1", "--quiet"]
        if self.tokenizer:
            out += ["--tokenizer", _absolute(self.tokenizer)]
        if self.bf16:
            out.append("--bf16")
        return out + shlex.split(self.train_args)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


@dataclass(frozen=True)
class Run:
    """One training run of the search: ``name`` (also its log's name), its folder, mixture and held-out set."""

    name: str
    folder: Path
    mixture: Path
    seed: int
    heldout_dir: str
    settings: TrainSettings

    def arguments(self) -> list[str]:
        """``chatflow`` arguments that train it."""
        return ["train", *self.settings.arguments(), "--heldout_dir", _absolute(self.heldout_dir),
                "--output_dir", _absolute(str(self.folder)), "--mixture", _absolute(str(self.mixture)),
                "--seed", str(self.seed), "--init_seed", str(self.seed)]

    def expected(self) -> dict:
        """The run record's ``options`` that :meth:`arguments` sets (those ``--train_args`` overrides left out)."""
        s = self.settings
        out = {"dataset_dir": _absolute(s.dataset_dir), "heldout_dir": _absolute(self.heldout_dir),
               "mixture": _absolute(str(self.mixture)), "seed": self.seed, "init_seed": self.seed,
               "model_config": _absolute(s.model_config) if s.model_config else "",
               "model_path": _absolute(s.model_path) if s.model_path else "",
               "tokenizer": _absolute(s.tokenizer) if s.tokenizer else "", "train_steps": s.train_steps,
               "micro_batch_size": s.micro_batch_size, "gradient_accumulation_steps": s.gradient_accumulation_steps,
               "learning_rate": float(s.learning_rate), "lr_scheduler": s.lr_scheduler,
               "warmup_steps": float(s.warmup_steps), "heldout_windows": s.heldout_windows, "bf16": s.bf16}
        overridden = {word[2:].split("=")[0] for word in shlex.split(s.train_args) if word.startswith("--")}
        return {k: v for k, v in out.items() if k not in overridden}

    def differences(self) -> list[str]:
        """How the finished folder's run record differs from :meth:`expected` and one process (empty: none)."""
        path = self.folder / RUN_RECORD
        if not path.is_file():
            return [f"no {RUN_RECORD}"]
        record = read_json(path, "run record")
        options = record.get("options") if isinstance(record, dict) else None
        if not isinstance(options, dict):
            return [f"{RUN_RECORD} holds no options"]
        out = [f"{key} {options.get(key)!r} (this search: {value!r})" for key, value in self.expected().items()
               if not _same(options.get(key), value)]
        if record.get("global_batch") != self.settings.global_batch:
            out.append(f"{record.get('global_batch')} samples per step on {record.get('world_size')} process(es) "
                       f"(this search: {self.settings.global_batch} on one, the length its mixture file is written "
                       f"for)")
        return out

    @property
    def finished(self) -> bool:
        return (self.folder / FINISHED).is_file()


def _same(recorded, expected) -> bool:
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        return recorded == expected
    return isinstance(recorded, (int, float)) and not isinstance(recorded, bool) and float(recorded) == float(expected)


def command_line(run: Run) -> str:
    """The shell line a scheduler runs for ``run``."""
    return shlex.join(["chatflow", *run.arguments()])


def result(run: Run) -> dict | None:
    """``{"losses": {group: held-out loss at the last step}, "steps", "seconds"}`` of a finished run, else None."""
    if not run.finished:
        return None
    differences = run.differences()
    if differences:
        raise ChatflowError(f"{run.folder}: a finished run that was not trained as this search's command for it says "
                            f"({'; '.join(differences)}); its losses do not answer this search: delete the folder "
                            f"and run the command that --print_commands gives")
    log = run.folder / "log.jsonl"
    summary, last = None, None
    try:
        for _, record in read_jsonl(log):
            if isinstance(record, dict) and record.get("kind") == "heldout":
                last = record
            elif isinstance(record, dict) and record.get("kind") == "summary":
                summary = record
    except FileNotFoundError:
        raise ChatflowError(f"{run.folder}: a finished run without its log.jsonl") from None
    steps = (summary or {}).get("steps", run.settings.train_steps)
    if last is None or last.get("step") != steps:
        raise ChatflowError(f"{log}: no held-out evaluation at the run's last step ({steps}); was it trained with "
                            f"--heldout_dir?")
    losses = {k[len("heldout_"):]: v for k, v in last.items() if k.startswith("heldout_")}
    return {"losses": losses, "steps": steps, "seconds": (summary or {}).get("seconds_this_session")}


def _log_path(logs: Path, run: Run) -> Path:
    return logs / (run.name.replace("/", "_") + ".log")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


Runner = Callable[[Sequence[Run], int, Path, Callable[[str], None]], None]


def run_all(runs: Sequence[Run], workers: int, logs: Path, say: Callable[[str], None]) -> None:
    """Train every unfinished run of ``runs`` here, ``workers`` at a time (see the module docstring). A run that
    fails stops new starts; the running ones finish; then the failure is an error naming its log."""
    pending = [r for r in runs if not r.finished]
    if not pending:
        return
    logs.mkdir(parents=True, exist_ok=True)
    running: list[tuple[Run, subprocess.Popen, object, float]] = []
    failed: list[str] = []
    done = 0
    total = len(pending)
    try:
        while pending or running:
            while pending and len(running) < workers and not failed:
                run = pending.pop(0)
                run.folder.parent.mkdir(parents=True, exist_ok=True)
                handle = open(_log_path(logs, run), "w", encoding="utf-8")
                process = subprocess.Popen([sys.executable, "-m", "chatflow_plugin.cli", *run.arguments()],
                                           stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                running.append((run, process, handle, time.time()))
            if failed and not running:
                break
            time.sleep(0.2)
            still = []
            for run, process, handle, started in running:
                code = process.poll()
                if code is None:
                    still.append((run, process, handle, started))
                    continue
                handle.close()
                if code != 0 or not run.finished:
                    log = _log_path(logs, run)
                    failed.append(f"{run.name} (exit {code}; {log}: {_tail(log)})")
                else:
                    done += 1
                    say(f"{run.name} finished in {time.time() - started:.0f} s ({done}/{total})")
            running = still
    finally:
        for run, process, handle, _ in running:      # interrupted: stop our own children, by their ids
            process.terminate()
        for run, process, handle, _ in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            handle.close()
    if failed:
        raise ChatflowError("training failed for " + "; ".join(failed))
