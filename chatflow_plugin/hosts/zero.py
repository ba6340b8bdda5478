"""DeepSpeed ZeRO checkpoints and the number of data-parallel ranks (both backends).

ZeRO partitions the optimizer state over the data-parallel ranks, and DeepSpeed refuses to load it on another
number of them ("Automatic adjustment of ZeRO's optimizer state partitioning with a new world size is not
currently supported"). The data side of a resume is exact on any layout (the run state counts samples), so
the only obstacle is DeepSpeed's own state: DeepSpeed converts a checkpoint to its *universal* format
(``python -m deepspeed.checkpoint.ds_to_universal``), which loads on any number of ranks when the DeepSpeed
config says ``"checkpoint": {"load_universal": true}``. Both backends check this before the model is built and
say exactly what to run.

DeepSpeed is imported only by a run that uses it (:func:`deepspeed_hidden`): accelerate imports it whenever it is
installed (``extract_model_from_parallel``, called as every ``transformers.Trainer`` is built), which costs start-up
time and prints DeepSpeed's accelerator warning in commands that never use it.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

from ..errors import ChatflowError


def deepspeed_settings(config: str | dict | None) -> tuple[int, bool]:
    """(ZeRO stage, loads universal checkpoints) of a DeepSpeed config (a file, or its JSON as a dict)."""
    if isinstance(config, str) and config and os.path.isfile(config):
        try:
            config = json.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ChatflowError(f"DeepSpeed config {config}: unreadable ({exc})") from None
    if not isinstance(config, dict):
        return 0, False
    stage = int((config.get("zero_optimization") or {}).get("stage", 0) or 0)
    return stage, bool((config.get("checkpoint") or {}).get("load_universal", False))


def refuse_world_change(tag_folder: Path, saved: int, world: int, config: str | dict | None, samples: int) -> None:
    """Refuse to load the ZeRO checkpoint ``tag_folder`` (saved by ``saved`` data-parallel ranks) on ``world`` ranks
    unless the config loads universal checkpoints or ZeRO partitions nothing; the error gives the conversion."""
    stage, universal = deepspeed_settings(config)
    if saved == world or stage == 0 or universal:
        return
    where = config if isinstance(config, str) else "the DeepSpeed config"
    raise ChatflowError(
        f"{tag_folder} was saved by {saved} data-parallel ranks and this run has {world}: DeepSpeed cannot load ZeRO "
        f"stage {stage} optimizer state on another number of ranks. Convert it once with `python -m "
        f"deepspeed.checkpoint.ds_to_universal --input_folder {tag_folder} --output_folder {tag_folder}_universal "
        f"--inject_missing_state` and add \"checkpoint\": {{\"load_universal\": true}} to {where}; the run then "
        f"continues at sample {samples}")


def deepspeed_requested(config: str | None) -> bool:
    """Whether this process runs under DeepSpeed: a ``--deepspeed`` config, or ``accelerate launch`` with DeepSpeed
    (it sets ``ACCELERATE_USE_DEEPSPEED``)."""
    return bool(config) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true", "yes")


@contextlib.contextmanager
def deepspeed_hidden(config: str | None = None) -> Iterator[None]:
    """Run the body with DeepSpeed invisible unless it is requested (:func:`deepspeed_requested`) or already
    imported: ``sys.modules["deepspeed"] = None`` makes ``importlib.util.find_spec`` answer None, so accelerate and
    transformers take DeepSpeed for absent and never import it. Restored afterwards."""
    if deepspeed_requested(config) or "deepspeed" in sys.modules:
        yield
        return
    sys.modules["deepspeed"] = None
    try:
        yield
    finally:
        if "deepspeed" in sys.modules and sys.modules["deepspeed"] is None:
            del sys.modules["deepspeed"]
