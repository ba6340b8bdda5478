"""Experiment trackers: a run's log records, as ``log.jsonl`` holds them, sent to TensorBoard, Weights & Biases,
MLflow or trackio too (``--report_to``, HF's names; several at once).

One rule maps a record to scalars, so every tracker shows exactly the numbers of ``log.jsonl``: every number of a
record of kind K (``train`` when the record has none, ``heldout``, ...) except ``step`` is the scalar ``K/<key>``
at ``step``: ``train/loss``, ``train/loss_<group>``, ``train/p_<group>`` (the mixture p_k(t) at the step's last
sample), ``train/mix_<group>`` (the realised share of the samples so far), ``train/epochs_<group>``,
``train/learning_rate``, ``train/tokens``, ``train/samples``, ``heldout/heldout_<group>``. A ``change`` record
(a mixture revision, an adaptive update, an allowed change of settings on resume) is a mark: the scalar
``change/<what>`` = 1 at its step, and its old and new values as text where the tracker takes text.

Offline by default: TensorBoard writes event files (``--tensorboard_dir``, default ``<output_dir>/tensorboard``);
W&B runs in offline mode unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads the folder under
``<output_dir>/wandb``); MLflow writes to the SQLite store ``<output_dir>/mlflow.db`` unless ``MLFLOW_TRACKING_URI``
is set (``mlflow ui --backend-store-uri sqlite:///<output_dir>/mlflow.db``; MLflow 3 no longer writes file stores); trackio is local (its database under ``TRACKIO_DIR``, default ``$HF_HOME/trackio``; ``trackio show``). A
resumed run continues its W&B and MLflow runs (their ids are kept in ``<output_dir>/trackers.json``) and its
TensorBoard events after the resumed step replace those a killed run left. Each tracker is an optional dependency,
a missing one a clean error naming its extra, found before the run starts.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ChatflowError
from ..files import atomic_file

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
IDS_FILE = "trackers.json"
PROJECT = "chatflow"
MLFLOW_DB = "mlflow.db"
# what trackers write into a run folder (an output kind's entries, chatflow_plugin.outputs): files, folders
TRACKER_FILES = (MLFLOW_DB, f"{MLFLOW_DB}-journal", IDS_FILE)
TRACKER_FOLDERS = ("tensorboard", "wandb", "mlartifacts")


def report_to_help() -> str:
    return (f"experiment trackers the run's log also goes to: {', '.join(TRACKERS)}, several at once "
            f"(tensorboard,wandb), all (those installed) or none (the default); offline by default")


def parse_report_to(values: Sequence[str] | str | None) -> list[str]:
    """``--report_to`` values (repeatable, comma-separated) -> tracker names, checked installed."""
    if isinstance(values, str):
        values = [values]
    names: list[str] = []
    for value in values or []:
        names += [v.strip().lower() for v in str(value).split(",") if v.strip()]
    if not names or names == ["none"]:
        return []
    if "none" in names:
        raise ChatflowError(f"--report_to none cannot be combined with trackers ({', '.join(names)})")
    if "all" in names:
        return [name for name in TRACKERS if _installed(name)]
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ChatflowError(f"--report_to: unknown tracker(s) {unknown}; choose from {', '.join(TRACKERS)}, all, none")
    for name in names:
        if not _installed(name):
            raise ChatflowError(f"--report_to {name} needs the {name} package: pip install "
                                f"'chatflow-plugin[{name}]' (or pip install {name if name != 'mlflow' else 'mlflow-skinny'})")
    return list(dict.fromkeys(names))


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(_MODULES[name]) is not None


def scalars(record: Mapping[str, Any]) -> tuple[int | None, dict[str, float]]:
    """(step, {tag: value}) of a log record under the module's rule."""
    kind = record.get("kind") or "train"
    step = record.get("step")
    if kind == "change":
        return step, {f"change/{record.get('what')}": 1.0}
    out = {}
    for key, value in record.items():
        if key in ("kind", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[f"{kind}/{key}"] = float(value)
    return step, out


def _describe_change(record: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in record.items() if k not in ("kind", "step")}
    return json.dumps(shown, default=str, ensure_ascii=False)[:2000]


class Trackers:
    """The trackers of one run (on the process that writes the run's log): :meth:`log` every record, :meth:`close`
    at the end. ``start_step``: the step a resumed run starts from (events after it are dropped: the log was cut
    back there too)."""

    def __init__(self, names: Iterable[str], output_dir: str | os.PathLike, run_name: str | None = None,
                 config: Mapping[str, Any] | None = None, start_step: int = 0, tensorboard_dir: str | None = None):
        self.names = list(names)
        self.output_dir = Path(output_dir)
        self.run_name = run_name or self.output_dir.resolve().name
        self.config = json.loads(json.dumps(dict(config or {}), default=str))
        self.start_step = int(start_step)
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir else self.output_dir / "tensorboard"
        self._tb = self._wandb = self._mlflow = self._trackio = None
        self._ids = self._read_ids()
        try:
            for name in self.names:
                getattr(self, f"_open_{name}")()
        except ChatflowError:
            self.close()
            raise
        except Exception as exc:        # a tracker that cannot start (bad credentials, a server down ...)
            self.close()
            raise ChatflowError(f"--report_to {name}: the tracker did not start ({_first_line(exc)})") from None
        if self._ids:
            with atomic_file(self.output_dir / IDS_FILE, encoding="utf-8") as handle:
                json.dump(self._ids, handle, indent=2)

    # -- opening -------------------------------------------------------------------------
    def _read_ids(self) -> dict:
        try:
            ids = json.loads((self.output_dir / IDS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return ids if isinstance(ids, dict) else {}

    def _open_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ChatflowError("--report_to tensorboard needs tensorboard: pip install "
                                "'chatflow-plugin[tensorboard]'") from None
        self._tb = SummaryWriter(log_dir=str(self.tensorboard_dir),
                                 purge_step=self.start_step + 1 if self.start_step > 0 else None)
        if self.start_step == 0:
            self._tb.add_text("config", "```\n" + json.dumps(self.config, indent=2)[:20000] + "\n```", 0)

    def _open_wandb(self) -> None:
        import wandb

        run_id = self._ids.get("wandb") or hashlib.sha1(str(self.output_dir.resolve()).encode()).hexdigest()[:16]
        self._ids["wandb"] = run_id
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT), name=self.run_name, id=run_id,
                                 dir=str(self.output_dir), config=self.config, resume="allow",
                                 mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new")

    def _open_mlflow(self) -> None:
        import logging

        import mlflow

        for name in ("mlflow", "alembic"):        # "Creating initial MLflow database tables..." on every new store
            logging.getLogger(name).setLevel(logging.WARNING)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(self.output_dir / MLFLOW_DB).resolve()}"
        client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(
            name, artifact_location=None if os.environ.get("MLFLOW_TRACKING_URI") else
            (self.output_dir / "mlartifacts").resolve().as_uri())
        run_id = self._ids.get("mlflow")
        if run_id is None:
            run_id = client.create_run(experiment_id, run_name=self.run_name).info.run_id
            for key, value in list(_flat(self.config).items())[:500]:
                client.log_param(run_id, key[:250], str(value)[:6000])
        self._ids["mlflow"] = run_id
        self._mlflow = (client, run_id)

    def _open_trackio(self) -> None:
        import trackio

        self._trackio = trackio.init(project=os.environ.get("TRACKIO_PROJECT", PROJECT), name=self.run_name,
                                     config=self.config, resume="allow", embed=False)

    # -- logging -------------------------------------------------------------------------
    def log(self, record: Mapping[str, Any]) -> None:
        step, values = scalars(record)
        if step is None or not values:
            return
        change = record.get("kind") == "change"
        if self._tb is not None:
            for tag, value in values.items():
                self._tb.add_scalar(tag, value, step)
            if change:
                self._tb.add_text(f"change/{record.get('what')}", _describe_change(record), step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(dict(values, **({f"change/{record.get('what')}_text": _describe_change(record)}
                                            if change else {})), step=step)
        if self._mlflow is not None:
            import mlflow.entities

            client, run_id = self._mlflow
            stamp = int(__import__("time").time() * 1000)
            client.log_batch(run_id, metrics=[mlflow.entities.Metric(_mlflow_key(tag), value, stamp, step)
                                              for tag, value in values.items()])
            if change:
                client.set_tag(run_id, f"change.{record.get('what')}.step{step}"[:250], _describe_change(record)[:5000])
        if self._trackio is not None:
            self._trackio.log(values, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._mlflow is not None:
            client, run_id = self._mlflow
            client.set_terminated(run_id)
            self._mlflow = None
        if self._trackio is not None:
            self._trackio.finish()
            self._trackio = None


def _mlflow_key(tag: str) -> str:
    """MLflow takes letters, digits and ``_-./ `` in metric names."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in tag)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
