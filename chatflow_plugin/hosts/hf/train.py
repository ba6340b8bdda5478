"""``chatflow train``: a HuggingFace causal LM of the LLaMA family (LLaMA-2/3, Mistral, Qwen2: any
``AutoModelForCausalLM``) trained with ``transformers.Trainer`` on a shard directory, in the dynamic sampler's
order.

The Trainer brings checkpoints, resume, gradient accumulation, bf16, DDP (``torchrun``; gloo on
CPU) and DeepSpeed/FSDP (``--deepspeed ds.json`` or ``accelerate launch``). This module adds what the
mixture needs: rank-disjoint micro-batches in global order whose position is restored exactly on
resume (:mod:`.data`), the loss over all tokens or responses only, per-group training loss
(:mod:`chatflow_plugin.data.metrics`) and the realised mixture in every log line, held-out loss per group
(:mod:`.heldout`), and a JSONL + CSV log (:mod:`.run`, which also owns resume and the final save).

Per step, the loss is the token mean of each micro-batch averaged over micro-batches and ranks (every
window carries the same number of target tokens under the default all-token loss).

Every ``checkpoint-N/`` holds the tokenizer files of the final model (:mod:`.run`) and
records the tokens seen in its ``trainer_state.json``, so ``chatflow eval``/``eval-curve`` and
``from_pretrained`` read it as it is. Re-running a finished run changes nothing and says so; asking for
more steps than it ran continues it from its last checkpoint (same samples as a straight run, the
learning-rate schedule recomputed over the new length).

Every checkpoint (and ``final/``) also holds the run state (``chatflow_state.json``,
:mod:`chatflow_plugin.data.runstate`): the samples consumed, the mixture history and the adaptive policy's
state. A resumed run continues from those, so it may run on another number of processes, micro-batch size or
accumulation (the same samples per optimizer step when their product, the global batch, is kept), with
another global batch (``--allow_change global_batch``: it continues at the exact sample) or with another
mixture from the checkpoint's sample on (``--allow_change mixture``); each change is recorded in the run's
history (the run record, the log and every later checkpoint). A mixture with an ``adaptive`` policy is
re-weighted from the held-out losses every so many samples, each update a recorded revision.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ...data.batches import MixtureDataset
from ...data.heldout import HeldOutSet
from ...data.metrics import GroupLossMeter, data_parallel_sum, first_rank_value
from ...data.revisions import adaptive_update, change, load_mixture_file
from ...data.runstate import CHANGEABLE, check_allowed, first_mixture
from ...data.shards import ShardSet
from ...data.split import check_disjoint
from ...errors import ChatflowError
from ...files import atomic_file, disk_error, path_for_file, read_json
from ...outputs import OutputKind, check_not_input
from ...resources import local_model, named, not_found_hint
from ...options import option
from ..trackers import TRACKER_FILES, TRACKER_FOLDERS, Trackers, parse_report_to, report_to_help
from .console import Console, deepspeed_only_if_used, show_progress
from .data import MixtureTorchDataset, RankBatchSampler, collate_windows
from .models import SIZE_KEYS, check_config, check_memory, check_weights, last_line, pretrained_config
from .progress import RunProgress, global_batch, plan_run
from ...tokenizer import Tokenizer, TokenizerFiles, load_tokenizer, tokenizer_from_options
from ..hyperparameters import LLAMA2, warmup_steps, warmup_warning
from ..resume import apply_resumed_settings
from .run import (RunLog, RunRecord, RunStart, SavesTokenizerFiles, allow_change_help, leave_process_group,
                  quiet_libraries, resume_help, run_directory, save_final_model, start_run, world)

RUN_CONFIG = "chatflow_run.json"
LOG_JSONL = "log.jsonl"
TRAIN_CSV = "train_log.csv"
HELDOUT_CSV = "heldout_log.csv"
SUMMARY_JSON = "train_summary.json"
FINAL_DIR = "final"
FINAL_RECORD = "chatflow_train.json"   # the summary, inside final/ (renamed into place with it)
# Settings that fix what sample t is: a resumed run must not change them. (train_steps does not: sample t is the
# same whatever the run's length, so a run may be continued for longer; the data-parallel layout does not: a
# step reads the samples after the ones consumed, on any number of ranks; the mixture and the global batch may
# change with --allow_change, recorded: the checkpoint's run state says what they were.)
POSITION_KEYS = ("dataset_sha", "seed", "seq_length")
# Settings the checkpoint's optimizer state holds (loading it would silently restore the old values).
OPTIMIZER_KEYS = ("weight_decay", "adam_beta2", "adam_epsilon")
# Settings that change what the run means from the resumed step on (its objective, learning-rate schedule,
# data: the dataset's content checksum): refused unless --allow_change names them, then recorded.
MEANING_KEYS = ("loss", "learning_rate", "lr_scheduler", "warmup_steps", "max_grad_norm", "bf16", "dataset")
# Settings that decide the model the run started from (its architecture, its initialisation): a resumed run
# loads the checkpoint's weights, which have them, and must not claim others.
MODEL_KEYS = ("model_type",) + SIZE_KEYS
START_KEYS = ("init_seed",) + MODEL_KEYS
# the run directory's kind (chatflow_plugin.outputs): the entries a run writes, each a file or a folder
RUN_KIND = OutputKind("train-run",
                      files=(RUN_CONFIG, LOG_JSONL, TRAIN_CSV, HELDOUT_CSV, SUMMARY_JSON, ".*.tmp") + TRACKER_FILES,
                      folders=(FINAL_DIR, f".{FINAL_DIR}.partial", "checkpoint-*") + TRACKER_FOLDERS)


@dataclass
class TrainOptions:
    dataset_dir: str = option(help="shard directory made by `chatflow preprocess`")
    output_dir: str = option(help="run directory: checkpoints, logs, and the final model in <output_dir>/final")
    model_config: str = option("", help="model config JSON to train from scratch: an HF config.json of a causal LM "
                                        "(model_type llama, mistral, qwen2 ...; llama when absent), or a packaged "
                                        "one's name (tiny, small; `chatflow resources`); vocab_size, BOS and EOS are "
                                        "set to the tokenizer's")
    model_path: str = option("", help="HuggingFace model directory to continue from (e.g. a converted LLaMA-2, a "
                                      "LLaMA-3, Qwen2 or Mistral release), or a Hub id in the local Hugging Face cache "
                                      "(meta-llama/Llama-2-7b-hf; nothing is downloaded)")
    tokenizer: str = option("", help="the dataset's tokenizer (a sentencepiece model, a tokenizer.json or a model "
                                     "directory); checked against the dataset and saved with every checkpoint and the "
                                     "final model as HF tokenizer files (default: the dataset's, if still there, else "
                                     "the start model's when it is the dataset's)", aliases=["--spm_model_path"])
    mixture: str = option("", help="mixture file replacing the dataset's recorded one (any of its sources, any "
                                   "grouping and shape), or a history file to re-run as a fixed schedule")
    seed: int = option(-1, help="sampler seed (-1: the mixture's)")
    init_seed: int = option(0, help="seed of the model initialisation and of the Trainer")
    train_steps: int = option(1000, help="optimizer steps")
    micro_batch_size: int = option(8, help="sequences per rank per forward pass")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step")
    # the defaults are Meta's LLaMA-2 settings, which the paper follows (chatflow_plugin/hosts/hyperparameters.py)
    learning_rate: float = option(LLAMA2.learning_rate, help="peak learning rate (LLaMA-2-7B's)")
    lr_scheduler: str = option(LLAMA2.lr_scheduler, choices=["cosine", "linear", "constant_with_warmup",
                                                             "cosine_with_min_lr"],
                               help="learning-rate schedule after warm-up (cosine_with_min_lr: cosine to 10%% of the "
                                    "peak, LLaMA-2's; cosine: to 0)")
    warmup_steps: float = option(LLAMA2.warmup_steps, help="linear warm-up in optimizer steps, a value below 1 a "
                                                           "fraction of the run (LLaMA-2's 2,000 steps are meant for "
                                                           "long runs: give short runs their own)")
    weight_decay: float = option(LLAMA2.weight_decay, help="AdamW weight decay")
    adam_beta2: float = option(LLAMA2.adam_beta2, help="AdamW beta2 (beta1 is 0.9)")
    adam_epsilon: float = option(LLAMA2.adam_epsilon, help="AdamW epsilon")
    max_grad_norm: float = option(LLAMA2.max_grad_norm, help="gradient clipping norm (0: none)")
    loss: str = option("all", choices=["all", "response_only"],
                       help="all: every token carries loss (the paper); response_only: not instruction prompts")
    bf16: bool = option(False, help="bf16 mixed precision (autocast; also on CPU)")
    allow_missing_weights: bool = option(False, help="start from a --model_path that lacks some of the model's "
                                                     "weights (initialised at random) or holds some it has no place "
                                                     "for (dropped); without it such a model is refused, naming them")
    log_every: int = option(10, help="optimizer steps between log lines")
    save_every: int = option(0, help="optimizer steps between checkpoints (0: only at the end)")
    save_total_limit: int = option(2, help="checkpoints kept (oldest deleted first)")
    resume: str = option("auto", help=resume_help("a finished run of --train_steps is left as it is; one of "
                                                  "fewer steps is continued"))
    allow_change: list = option(default_factory=list, repeatable=True, type=str,
                                help=allow_change_help(MEANING_KEYS, RUN_CONFIG) + "; and mixture (--mixture applies "
                                     "from the checkpoint's sample on; samples before it stay), global_batch "
                                     "(micro_batch_size x gradient_accumulation_steps x processes; the run continues "
                                     "at its exact sample), recorded in the run's history and every checkpoint")
    mixture_catch_up: float = option(0.0, help="with a mixture change: samples over which each group's count is "
                                              "brought to what the new schedule, taken from sample 0, would have "
                                              "given it (0: the new schedule applies to the samples from the change "
                                              "on, counts continue as consumed)")
    heldout_dir: str = option("", help="shard directory of held-out documents (same tokenizer and groups)")
    heldout_every: int = option(0, help="optimizer steps between held-out evaluations (0: start and end only)")
    heldout_windows: int = option(64, help="held-out windows per group")
    deepspeed: str = option("", help="DeepSpeed config JSON, or a packaged one's name (zero3_hf) (GPU clusters; "
                                     "launch with torchrun or deepspeed)")
    threads: int = option(0, help="torch CPU threads per process (0: torch's default)")
    verify_data: bool = option(True, help="load the datasets without checking their files' checksums and token ids "
                                          "(for huge datasets already checked; sizes and manifest fields are "
                                          "still checked)")
    report_to: list = option(default_factory=list, repeatable=True, type=str, help=report_to_help())
    tensorboard_dir: str = option("", help="where --report_to tensorboard writes its event files (default: "
                                           "<output_dir>/tensorboard)")
    quiet: bool = option(False, help="no progress bars and no log lines (the libraries' too); a resumed run "
                                      "still says which checkpoint it continues from")


# ---------------------------------------------------------------------------------------------
# Trainer


def _make_trainer_class():
    """The Trainer subclass, built lazily so importing this module does not import transformers."""
    from transformers import Trainer, TrainerCallback

    class MixtureTrainer(SavesTokenizerFiles, Trainer):
        loss_is_scaled_for_ga = False   # compute_loss returns a per-micro-batch mean: let Trainer divide by GA

        def __init__(self, *args, mixture: MixtureDataset, progress: RunProgress, heldout=None,
                     heldout_every: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.mixture = mixture
            self.progress = progress
            self.run_log = progress.run_log
            self.heldout = heldout
            self.heldout_every = heldout_every
            self.group_loss = GroupLossMeter(mixture.group_names)
            self.run_state = lambda: progress.state(self.state.global_step)
            self.console: Console | None = None

        # -- data ----------------------------------------------------------------------
        def samples_at(self, step: int) -> int:
            return self.progress.samples_at(step)

        def get_train_dataloader(self):
            a = self.args
            sampler = RankBatchSampler(
                a.per_device_train_batch_size, a.max_steps * a.gradient_accumulation_steps, rank=a.process_index,
                world_size=a.world_size, start_micro_batch=lambda: self.state.global_step * a.gradient_accumulation_steps,
                first_sample=lambda: self.samples_at(self.state.global_step))
            return torch.utils.data.DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=collate_windows,
                                               num_workers=a.dataloader_num_workers)

        # -- loss ----------------------------------------------------------------------
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            targets, mask, group = inputs["targets"], inputs["loss_mask"], inputs["group"]
            outputs = model(input_ids=inputs["input_ids"])
            logits = outputs.logits
            per_token = torch.nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
            ).view_as(targets)
            weights = mask.to(per_token.dtype)
            loss = (per_token * weights).sum() / weights.sum().clamp(min=1.0)
            if model.training:
                with torch.no_grad():
                    self.group_loss.add(group, (per_token * weights).sum(1), weights.sum(1))
            return (loss, outputs) if return_outputs else loss

        # -- logging -------------------------------------------------------------------
        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:
                group_losses, _ = self.group_loss.reduce_and_reset(data_parallel_sum(world_size=self.args.world_size))
                samples = self.samples_at(self.state.global_step)
                counts = self.mixture.sampler.group_counts(samples)
                logs["samples"] = samples
                logs["tokens"] = samples * self.mixture.seq_length
                for name, value in zip(self.mixture.group_names, group_losses):
                    logs[f"loss_{name}"] = float("nan") if value is None else value
                p = self.mixture.sampler.probabilities(float(max(samples - 1, 0)))    # at the step's last sample
                epochs = self.mixture.group_epochs(samples)
                for g, name in enumerate(self.mixture.group_names):
                    logs[f"mix_{name}"] = float(counts[g] / samples) if samples else 0.0
                    logs[f"p_{name}"] = float(p[g])
                    logs[f"epochs_{name}"] = float(epochs[g])
                if self.run_log is not None and self.is_world_process_zero():
                    record = {"kind": "train", "step": self.state.global_step, "samples": samples,
                              "tokens": logs["tokens"], "learning_rate": logs.get("learning_rate"),
                              "loss": logs["loss"], "grad_norm": logs.get("grad_norm")}
                    record.update({k: v for k, v in logs.items() if k.startswith(("loss_", "mix_", "p_", "epochs_"))})
                    self.run_log.add(record)
            super().log(logs, start_time)

        def evaluate_heldout(self) -> dict[str, float] | None:
            # Every rank evaluates (same windows): ZeRO-3 needs all ranks in each forward; rank 0 logs.
            if self.heldout is None:
                return None
            from .heldout import heldout_losses
            # in micro-batches of the training's size: the pass never needs more memory than a training step
            losses = heldout_losses(self.model, self.heldout, batch_size=self.args.per_device_train_batch_size,
                                    device=self.args.device, autocast_dtype=torch.bfloat16 if self.args.bf16 else None)
            samples = self.samples_at(self.state.global_step)
            if self.run_log is not None and self.is_world_process_zero():
                record = {"kind": "heldout", "step": self.state.global_step, "samples": samples,
                          "tokens": samples * self.mixture.seq_length}
                record.update({f"heldout_{g}": v for g, v in losses.items()})
                self.run_log.add(record)
            return losses

        # -- adaptive mixing -----------------------------------------------------------
        def adaptive_due(self, step: int) -> bool:
            policy = self.mixture.history.designed.adaptive
            return policy is not None and step > 0 and policy.due(self.samples_at(step - 1), self.samples_at(step))

        def adapt(self, step: int, losses: dict[str, float]) -> None:
            """The adaptive policy's update at ``step`` (its held-out ``losses``): a revision of the mixture from
            the next sample on, recorded, when the factors change; at step 0 the losses are only remembered."""
            if self.mixture.history.designed.adaptive is None:
                return
            self.progress.adaptive, revision, entry = adaptive_update(
                self.mixture.history, self.progress.adaptive, losses, self.samples_at(step), step, first_rank_value)
            if revision is not None:
                self.mixture.revise(revision)
                self.progress.add_change(entry)

    class RunCallback(TrainerCallback):
        """Held-out evaluation (and the adaptive policy's updates); ``state.num_input_tokens_seen`` (saved in every
        checkpoint's trainer_state.json, where ``chatflow eval-curve`` reads it) equal to the log's ``tokens``; and,
        on resume, the learning rate of the schedule being run (a run continued for more steps than planned
        recomputes its schedule, while the checkpoint's optimizer holds the old schedule's last rate)."""

        def __init__(self, trainer: MixtureTrainer):
            self.trainer = trainer

        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            if self.trainer.console is not None:     # time per step from here, not from the process's start
                self.trainer.console.start(state.global_step,
                                           self.trainer.samples_at(state.global_step) * self.trainer.mixture.seq_length)
            if state.global_step > 0:
                apply_resumed_settings(optimizer, lr_scheduler, args.learning_rate)
            if state.global_step == 0:
                losses = self.trainer.evaluate_heldout()
                if losses is not None:
                    self.trainer.adapt(0, losses)

        def on_step_end(self, args, state, control, **kwargs):
            trainer = self.trainer
            state.num_input_tokens_seen = trainer.samples_at(state.global_step) * trainer.mixture.seq_length
            every = trainer.heldout_every
            adapt = trainer.adaptive_due(state.global_step)
            if state.global_step == state.max_steps or (every and state.global_step % every == 0) or adapt:
                losses = trainer.evaluate_heldout()
                if adapt:    # at the last step too: a run continued for longer reads the revision from there
                    trainer.adapt(state.global_step, losses)

    return MixtureTrainer, RunCallback


# ---------------------------------------------------------------------------------------------
# Model


def model_config(path: str, vocab_size: int, bos_id: int | None, eos_id: int):
    """The ``transformers`` config of a config JSON of any causal LM (``model_type`` llama when absent), with the
    tokenizer's vocabulary size, BOS and EOS."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = named("model_config", path)       # or a packaged config's name: tiny, small
    if not path.exists():
        raise ChatflowError(f"--model_config {path}: no such file {not_found_hint('model_config')}")
    raw = read_json(path, "model config")
    model_type = raw.get("model_type", "llama")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type not in CONFIG_MAPPING:
        raise ChatflowError(f"{path}: model_type {model_type!r} is not a causal LM transformers knows "
                            f"(e.g. llama, mistral, qwen2)")
    try:
        config = AutoConfig.for_model(model_type, **{k: v for k, v in raw.items() if k != "model_type"})
    except Exception as exc:   # TypeError, ValueError, huggingface_hub's validation errors
        raise ChatflowError(f"{path}: not a valid {model_type} config ({last_line(exc)})") from None
    config.vocab_size = vocab_size
    config.bos_token_id, config.eos_token_id = bos_id, eos_id
    return config


def start_config(options: TrainOptions, vocab_size: int, bos_id: int | None, eos_id: int):
    """The config of the model the run starts from (``--model_config``, or ``--model_path``'s), its sizes and the
    memory its parameters need checked before anything is allocated (:mod:`.models`)."""
    if bool(options.model_config) == bool(options.model_path):
        raise ChatflowError("give exactly one of --model_config (train from scratch) or --model_path")
    if options.model_config:
        config, where = model_config(options.model_config, vocab_size, bos_id, eos_id), options.model_config
    else:
        config, where = pretrained_config(options.model_path), str(Path(options.model_path, "config.json"))
    check_config(config, where)
    check_memory(config, where, training_on_cpu=not torch.cuda.is_available() and not options.deepspeed)
    return config


def build_model(options: TrainOptions, config, vocab_size: int):
    """The model ``config`` (:func:`start_config`) describes: initialised (``--model_config``) or loaded from
    ``--model_path`` once its weights are checked (:func:`.models.check_weights`)."""
    from transformers import AutoModelForCausalLM

    if options.model_config:
        torch.manual_seed(options.init_seed)
        try:
            return AutoModelForCausalLM.from_config(config)
        except (TypeError, ValueError) as exc:   # e.g. a hidden size that the head count does not divide
            raise ChatflowError(f"{options.model_config}: cannot build a {config.model_type} model from it "
                                f"({exc})") from None
    check_weights(options.model_path, config, options.allow_missing_weights)
    model = AutoModelForCausalLM.from_pretrained(options.model_path, dtype=torch.float32)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < vocab_size:
        raise ChatflowError(f"{options.model_path} has {rows} embedding rows but the dataset's tokenizer has "
                            f"{vocab_size} ids; expand the model first (chatflow expand-vocab)")
    return model


# ---------------------------------------------------------------------------------------------
# Run


def _load_data(options: TrainOptions) -> tuple[ShardSet, MixtureDataset]:
    """The training shards and the mixture given (--mixture, else the dataset's) over them."""
    shards = ShardSet(options.dataset_dir,
                      tokenizer=tokenizer_from_options(options.tokenizer, required=False),
                      verify=options.verify_data)
    given = load_mixture_file(options.mixture) if options.mixture else None
    mixture = MixtureDataset(shards, spec=given, seed=None if options.seed < 0 else options.seed,
                             response_only=options.loss == "response_only")
    return shards, mixture


def _heldout(options: TrainOptions, shards: ShardSet, mixture: MixtureDataset) -> HeldOutSet | None:
    """The held-out windows per group of the mixture in force (None without --heldout_dir)."""
    if not options.heldout_dir:
        if mixture.history.designed.adaptive is not None:
            raise ChatflowError(f"mixture {mixture.history.designed.name!r} has an adaptive policy, which needs "
                                f"held-out losses: give --heldout_dir")
        return None
    held_shards = ShardSet(options.heldout_dir, verify=options.verify_data)
    if (held_shards.tokenizer.get("kind"), held_shards.tokenizer["sha256"]) != \
            (shards.tokenizer.get("kind"), shards.tokenizer["sha256"]):
        raise ChatflowError(f"{options.heldout_dir} was tokenized with another tokenizer than {options.dataset_dir}")
    if held_shards.seq_length != shards.seq_length:
        raise ChatflowError(f"{options.heldout_dir}: seq_length {held_shards.seq_length} differs from the "
                            f"training data's {shards.seq_length}")
    check_disjoint(shards, held_shards)
    groups = {g.name: [s.name for s in g.sources] for g in mixture.spec.groups}
    return HeldOutSet(held_shards, options.heldout_windows, groups=groups)


def _layout(options: TrainOptions, world_size: int) -> dict:
    return {"micro_batch_size": options.micro_batch_size, "gradient_accumulation_steps":
            options.gradient_accumulation_steps, "world_size": world_size}


def _plan(options: TrainOptions, start: RunStart, record: RunRecord, mixture: MixtureDataset, world_size: int,
          output_dir: Path) -> tuple[RunProgress, MixtureDataset]:
    return plan_run(start, record, mixture, _layout(options, world_size), str(Path(options.dataset_dir).resolve()),
                    output_dir, allowed=options.allow_change, mixture_file=options.mixture,
                    catch_up=options.mixture_catch_up, deepspeed=options.deepspeed)


def _run_config(options: TrainOptions, shards: ShardSet, mixture: MixtureDataset, world_size: int, config) -> dict:
    """The run record (``chatflow_run.json``): what fixes the sample order, the model it started from, and every
    option."""
    tok = shards.tokenizer
    layout = _layout(options, world_size)
    given = mixture.history
    return {"dataset_dir": str(Path(options.dataset_dir).resolve()),
            "dataset_sha": tok["sha256"] + ":" + str(sorted((s.name, s.windows) for s in shards.sources)),
            "mixture": first_mixture(given), "seed": mixture.spec.seed,
            **layout, "global_batch": global_batch(layout), "seq_length": shards.seq_length,
            "train_steps": options.train_steps,
            **{key: getattr(options, key) for key in MEANING_KEYS + OPTIMIZER_KEYS if key != "dataset"},
            "dataset": shards.content_checksum(), "init_seed": options.init_seed,
            **{key: getattr(config, key, None) for key in MODEL_KEYS}, "options": asdict(options), "history": []}


def _finished_summary(output_dir: Path) -> dict | None:
    """The summary of the finished run in ``output_dir``, or None (``final/`` only exists complete)."""
    record = output_dir / FINAL_DIR / FINAL_RECORD
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None


def _start(options: TrainOptions, output_dir: Path, record: RunRecord, run_config: dict,
           rank: int) -> tuple[RunStart, dict | None]:
    """Where this run starts, and the summary of the finished run of --train_steps it re-runs (None: train).

    A finished run of fewer steps is continued from its last checkpoint (the learning-rate schedule is
    recomputed over the new length); one of more steps is refused.
    """
    start = start_run(options.resume, output_dir, output_dir, output_dir / FINAL_DIR,
                      output_dir / FINAL_DIR / FINAL_RECORD, record, run_config, allowed=options.allow_change)
    finished = _finished_summary(output_dir) if start.finished else None
    if finished is not None:
        if finished["steps"] == options.train_steps:
            return start, finished
        if finished["steps"] > options.train_steps or start.checkpoint is None:
            raise ChatflowError(
                f"{output_dir} holds a finished run of {finished['steps']} steps"
                + (f"; --train_steps {options.train_steps} asks for fewer" if start.checkpoint is not None else
                   " and no checkpoint-* to continue it from") + "; use another --output_dir (with --model_path "
                f"{output_dir / FINAL_DIR} to train its final model further)")
    if start.checkpoint is not None:
        if start.step > options.train_steps:
            raise ChatflowError(f"{start.checkpoint} is at step {start.step}, beyond --train_steps {options.train_steps}")
        planned = (record.read() or {}).get("train_steps")
        if planned is not None and planned != options.train_steps:
            if rank == 0:
                print(f"{output_dir}: continuing from step {start.step} to {options.train_steps} (the run was set "
                      f"for {planned}); the {options.lr_scheduler} learning-rate schedule now spans "
                      f"{options.train_steps} steps", file=sys.stderr)
            start = replace(start, changes=start.changes + (
                {"what": "train_steps", "old": planned, "new": options.train_steps},))
    return start, None


def _run_log(output_dir: Path) -> RunLog:
    return RunLog(output_dir / LOG_JSONL, {"train": output_dir / TRAIN_CSV, "heldout": output_dir / HELDOUT_CSV})


def _record_finish(output_dir: Path, summary: dict, run_log: RunLog) -> None:
    """``train_summary.json`` and the log's summary record, written after ``final/``."""
    with atomic_file(output_dir / SUMMARY_JSON) as handle:
        json.dump(summary, handle, indent=2)
    run_log.add({"kind": "summary", "step": summary["steps"],
                 **{k: v for k, v in summary.items() if not isinstance(v, dict)}})


def _leave_finished(output_dir: Path, finished: dict, rank: int) -> dict:
    """A re-run of a finished run: its records stay as they are (or are completed, if a kill came between
    ``final/`` and them)."""
    if rank == 0:
        path = output_dir / SUMMARY_JSON
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (ValueError, RecursionError):   # torn by a kill: rewritten below
            recorded = None
        if recorded != finished:
            run_log = _run_log(output_dir)
            run_log.restart_at(finished["steps"])
            _record_finish(output_dir, finished, run_log)
    return dict(finished, already_finished=True)


def saved_tokenizer(options, record: dict) -> Tokenizer | None:
    """The tokenizer saved (as HF tokenizer files) with every checkpoint and the final model: ``--tokenizer``
    (already checked against the dataset), else the one the dataset's manifest ``record``
    names if it is unchanged, else the start model's (``--model_path``/``--model``) if it is the dataset's."""
    given = tokenizer_from_options(options.tokenizer, required=False)
    if given is not None:
        return given
    start_model = getattr(options, "model_path", "") or getattr(options, "model", "")
    candidates = [(record.get("path"), record.get("kind")), (start_model, record.get("kind", "sentencepiece"))]
    for path, kind in candidates:
        if not path or not os.path.exists(path):
            continue
        try:
            found = load_tokenizer(path, kind)
        except ChatflowError:
            continue
        if found.differs_from(record) is None:
            return found
    return None


def _tokenizer_files(options: TrainOptions, shards: ShardSet, rank: int, model_max_length: int
                     ) -> tuple[TokenizerFiles | None, list[str]]:
    """The HF tokenizer files saved with every checkpoint (read on rank 0, which saves), and the probe
    texts on which they differ from sentencepiece. ``model_max_length`` is the model's context length (its
    max_position_embeddings), never the training sequence length."""
    if rank != 0:
        return None, []
    tok = shards.tokenizer
    tokenizer = saved_tokenizer(options, tok)
    if tokenizer is None:
        print(f"warning: no tokenizer to save: the dataset's ({tok.get('path')}) is not found or changed and "
              f"--tokenizer is not given; checkpoints and the final model will hold no tokenizer files",
              file=sys.stderr)
        return None, []
    files, mismatches = tokenizer.hf_files(model_max_length)
    if mismatches:
        print(f"warning: the saved HF tokenizer differs from sentencepiece on {len(mismatches)} probe "
              f"text(s), e.g. {mismatches[0][:40]!r}", file=sys.stderr)
    return files, mismatches


def _training_arguments(options: TrainOptions, output_dir: Path, world_size: int):
    from transformers import TrainingArguments

    use_cpu = not torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=options.train_steps,
        per_device_train_batch_size=options.micro_batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        learning_rate=options.learning_rate, lr_scheduler_type=options.lr_scheduler,
        lr_scheduler_kwargs={"min_lr_rate": LLAMA2.min_lr_ratio} if options.lr_scheduler == "cosine_with_min_lr" else {},
        warmup_steps=warmup_steps(options.warmup_steps, options.train_steps), weight_decay=options.weight_decay,
        adam_beta1=LLAMA2.adam_beta1, adam_beta2=options.adam_beta2, adam_epsilon=options.adam_epsilon,
        max_grad_norm=options.max_grad_norm, bf16=options.bf16, logging_steps=options.log_every,
        save_strategy="steps", save_steps=options.save_every or options.train_steps,
        save_total_limit=options.save_total_limit, seed=options.init_seed, report_to="none",
        disable_tqdm=options.quiet, remove_unused_columns=False, dataloader_num_workers=0,
        ignore_data_skip=True,   # the batch sampler restarts at the restored step itself (exact, O(1))
        use_cpu=use_cpu, ddp_backend="gloo" if use_cpu and world_size > 1 else None,
        deepspeed=str(named("deepspeed_config", options.deepspeed)) if options.deepspeed else None,
        save_only_model=False,
    )


def _build_trainer(options: TrainOptions, model, args, mixture: MixtureDataset, heldout, progress: RunProgress,
                   tokenizer_files: TokenizerFiles | None, console: Console | None):
    MixtureTrainer, RunCallback = _make_trainer_class()
    dataset = MixtureTorchDataset(mixture, progress.samples_at(options.train_steps))
    trainer = MixtureTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate_windows,
                             mixture=mixture, progress=progress, heldout=heldout, heldout_every=options.heldout_every)
    trainer.tokenizer_files = tokenizer_files
    trainer.console = console
    trainer.add_callback(RunCallback(trainer))
    show_progress(trainer, console)
    return trainer


def _finish(trainer, options: TrainOptions, mixture: MixtureDataset, start: RunStart, result, seconds: float,
            world_size: int, mismatches: list[str], run_log: RunLog | None) -> dict:
    """The final model (with the tokenizer files, renamed into place complete), then the run's records."""
    output_dir = Path(options.output_dir)
    samples = trainer.samples_at(options.train_steps)
    counts = mixture.sampler.group_counts(samples)
    trained = trainer.state.global_step - start.step
    summary = {"steps": options.train_steps, "samples": samples, "tokens": samples * mixture.seq_length,
               "seconds_this_session": round(seconds, 2),
               "train_loss": result.training_loss if trained else None,   # mean over this session's steps
               "resumed_from": start.checkpoint, "world_size": world_size,
               "group_samples": {g: int(c) for g, c in zip(mixture.group_names, counts)},
               "mixture_revisions": len(mixture.history) - 1,
               "final_model": path_for_file(output_dir / FINAL_DIR, output_dir / SUMMARY_JSON, tree=output_dir)}
    if trainer.tokenizer_files is not None:
        summary["tokenizer_mismatches"] = len(mismatches)
    save_final_model(trainer, output_dir / FINAL_DIR, FINAL_RECORD, summary)
    if trainer.is_world_process_zero():
        _record_finish(output_dir, summary, run_log)
    return summary


def _check_options(options: TrainOptions) -> None:
    for name in ("train_steps", "micro_batch_size", "gradient_accumulation_steps", "log_every", "heldout_windows"):
        if getattr(options, name) <= 0:
            raise ChatflowError(f"--{name} must be positive, got {getattr(options, name)}")
    for name in ("save_every", "save_total_limit", "heldout_every", "threads"):
        if getattr(options, name) < 0:
            raise ChatflowError(f"--{name} must be 0 or more, got {getattr(options, name)}")
    warmup_steps(options.warmup_steps, options.train_steps)       # checks it
    if options.warmup_steps == int(options.warmup_steps):
        options.warmup_steps = int(options.warmup_steps)          # recorded as the whole number it is (0 too)
    for name in ("learning_rate", "weight_decay", "adam_beta2", "adam_epsilon", "max_grad_norm"):
        value = getattr(options, name)
        if not math.isfinite(value) or value < 0 or (name == "adam_beta2" and value >= 1):
            raise ChatflowError(f"--{name} must be a finite number >= 0{' and < 1' if name == 'adam_beta2' else ''}, "
                                f"got {value}")
    check_allowed(options.allow_change, also=MEANING_KEYS)
    parse_report_to(options.report_to)
    if options.mixture_catch_up < 0:
        raise ChatflowError(f"--mixture_catch_up must be >= 0, got {options.mixture_catch_up}")
    inputs = [options.dataset_dir, options.heldout_dir, options.model_path, options.model_config,
              options.tokenizer, options.mixture]
    check_not_input(options.output_dir, inputs, what="--output_dir")


def train(options: TrainOptions) -> dict:
    """Run (or resume) one training run; returns the summary also written to ``train_summary.json``."""
    if options.model_path:      # a Hub id: its folder in the local cache
        options = replace(options, model_path=str(local_model(options.model_path, "--model_path")))
    _check_options(options)
    if options.quiet:
        quiet_libraries()
    warning = warmup_warning(warmup_steps(options.warmup_steps, options.train_steps), options.train_steps)
    if warning and world()[0] == 0:
        print(warning, file=sys.stderr)
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    output_dir = Path(options.output_dir)
    with run_directory(output_dir, RUN_KIND):
        try:
            return _train(options, output_dir)
        except Exception as exc:     # a full or read-only disk while the Trainer saves: no traceback
            problem = disk_error(exc, output_dir)
            if problem is None:
                raise
            raise problem from None


def _train(options: TrainOptions, output_dir: Path) -> dict:
    rank, world_size = world()
    shards, mixture = _load_data(options)
    tok = shards.tokenizer
    bos = tok["bos_id"] if tok.get("bos_id") is not None and tok["bos_id"] >= 0 else None
    config = start_config(options, tok["vocab_size"], bos, tok["eos_id"])
    run_config = _run_config(options, shards, mixture, world_size, config)
    record = RunRecord(output_dir / RUN_CONFIG, POSITION_KEYS + OPTIMIZER_KEYS + START_KEYS, changeable=MEANING_KEYS,
                       also_changeable=CHANGEABLE,
                       why="they decide what each sample is, or the checkpoint's optimizer state holds them")
    start, finished = _start(options, output_dir, record, run_config, rank)
    if finished is not None:
        return _leave_finished(output_dir, finished, rank)
    progress, mixture = _plan(options, start, record, mixture, world_size, output_dir)
    # the changes of meaning --allow_change let through, in the one history with the mixture's and the layout's
    progress.pending = [change(start.step, c["what"], c["old"], c["new"], sample=progress.sample0)
                        for c in start.changes] + progress.pending
    heldout = _heldout(options, shards, mixture)

    model = build_model(options, config, shards.tokenizer["vocab_size"])
    tokenizer_files, mismatches = _tokenizer_files(
        options, shards, rank, getattr(model.config, "max_position_embeddings", None) or shards.seq_length)
    if options.deepspeed:
        from ..extensions import clear_stale_build_locks

        clear_stale_build_locks()     # DeepSpeed builds its CPU ops under a lock that never times out
    args = _training_arguments(options, output_dir, world_size)
    run_log, console = None, None
    with contextlib.ExitStack() as stack:
        if rank == 0:
            run_config["history"] = progress.changes
            progress.record, progress.run_config = record, run_config
            record.write(run_config)
            run_log = _run_log(output_dir)
            run_log.restart_at(start.step)
            console = None if options.quiet else Console(options.train_steps, mixture.group_names)
            trackers = Trackers(parse_report_to(options.report_to), output_dir, config=run_config,
                                start_step=start.step, tensorboard_dir=options.tensorboard_dir or None)
            stack.callback(trackers.close)
            run_log.sinks = [s for s in (console, trackers) if s is not None]
            for entry in progress.changes:        # the checkpoint's changes at its own step (the log dropped them)
                if entry.get("step") == start.step and start.checkpoint is not None:
                    run_log.add({"kind": "change", **entry})
            progress.run_log = run_log
        for entry in progress.pending:
            progress.add_change(entry)
        stack.enter_context(deepspeed_only_if_used(bool(options.deepspeed)))
        trainer = _build_trainer(options, model, args, mixture, heldout, progress, tokenizer_files, console)
        started = time.time()
        result = trainer.train(resume_from_checkpoint=start.checkpoint)
        seconds = time.time() - started
        if trainer.state.global_step < options.train_steps:   # stopped by a callback: no final model
            return {"steps": options.train_steps, "stopped_early_at": trainer.state.global_step,
                    "seconds_this_session": round(seconds, 2), "resumed_from": start.checkpoint}
        return _finish(trainer, options, mixture, start, result, seconds, world_size, mismatches, run_log)


def run_train(options: TrainOptions) -> dict:
    """Train (or resume, or leave alone when finished) a HuggingFace LLaMA on a shard directory in the dynamic
    sampler's order, and print the run's summary (rank 0)."""
    summary = train(options)
    leave_process_group()   # not on an error: the peers may never reach the barrier; torchrun stops them
    if world()[0] == 0:
        if summary.get("already_finished"):
            print(f"{options.output_dir}: finished ({summary['steps']} steps); the final model is "
                  f"{Path(options.output_dir) / FINAL_DIR}")
        else:
            print(json.dumps(summary, indent=2))
    return summary
