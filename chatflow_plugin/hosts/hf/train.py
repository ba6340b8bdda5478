"""``chatflow train``: a HuggingFace ``LlamaForCausalLM`` trained with ``transformers.Trainer`` on a
shard directory, in the dynamic sampler's order.

The Trainer brings checkpoints, resume, gradient accumulation, bf16, DDP (``torchrun``; gloo on
CPU) and DeepSpeed/FSDP (``--deepspeed ds.json`` or ``accelerate launch``). This module adds what the
mixture needs: rank-disjoint micro-batches in global order whose position is restored exactly on
resume (:mod:`.hf_data`), the loss over all tokens or responses only, per-group training loss and the
realised mixture in every log line, held-out loss per group (:mod:`.hf_heldout`), and a JSONL + CSV log.

Per step, the loss is the token mean of each micro-batch averaged over micro-batches and ranks (every
window carries the same number of target tokens under the default all-token loss).

Every ``checkpoint-N/`` holds the tokenizer files of the final model (:mod:`..checkpoint_tokenizer`) and
records the tokens seen in its ``trainer_state.json``, so ``chatflow eval``/``eval-curve`` and
``from_pretrained`` read it as it is. Re-running a finished run changes nothing and says so; asking for
more steps than it ran continues it from its last checkpoint (same samples as a straight run, the
learning-rate schedule recomputed over the new length).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...files import atomic_file, path_for_file, sha256_file
from ...data.batches import MixtureDataset
from .checkpoint_tokenizer_tmp import SavesTokenizerFiles, TokenizerFiles
from ...errors import ChatflowError
from ...data.mixture import load_mixture
from ...options import option, parse_options
from ...data.shards import ShardSet
from .data import MixtureTorchDataset, RankBatchSampler, collate_windows

RUN_CONFIG = "chatflow_run.json"
LOG_JSONL = "log.jsonl"
TRAIN_CSV = "train_log.csv"
HELDOUT_CSV = "heldout_log.csv"
SUMMARY_JSON = "train_summary.json"
FINAL_DIR = "final"
FINAL_RECORD = "chatflow_train.json"   # the summary, inside final/ (renamed into place with it)
# Settings that fix which sample each step reads: a resumed run must not change them. (train_steps
# does not: sample t is the same whatever the run's length, so a run may be continued for longer.)
POSITION_KEYS = ("dataset_sha", "mixture", "seed", "micro_batch_size", "gradient_accumulation_steps",
                 "world_size", "seq_length")


@dataclass
class TrainOptions:
    dataset_dir: str = option(help="shard directory made by `chatflow preprocess`")
    output_dir: str = option(help="run directory: checkpoints, logs, and the final model in <output_dir>/final")
    model_config: str = option("", help="LlamaConfig JSON to train from scratch (e.g. models/hf/demo_tiny.json); "
                                        "vocab_size is set to the tokenizer's")
    model_path: str = option("", help="HuggingFace model directory to continue from (e.g. a converted LLaMA-2)")
    spm_model_path: str = option("", help="sentencepiece model; checked against the dataset and saved with the "
                                          "final model as HF tokenizer files (default: the dataset's, if present)")
    mixture: str = option("", help="mixture file replacing the dataset's recorded schedule (same groups/sources)")
    seed: int = option(-1, help="sampler seed (-1: the mixture's)")
    init_seed: int = option(0, help="seed of the model initialisation and of the Trainer")
    train_steps: int = option(1000, help="optimizer steps")
    micro_batch_size: int = option(8, help="sequences per rank per forward pass")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step")
    learning_rate: float = option(3e-4, help="peak learning rate")
    lr_scheduler: str = option("cosine", choices=["cosine", "linear", "constant_with_warmup", "cosine_with_min_lr"],
                               help="learning-rate schedule after warm-up (cosine_with_min_lr: to 10%% of peak)")
    warmup_steps: int = option(0, help="linear warm-up, optimizer steps")
    weight_decay: float = option(0.1, help="AdamW weight decay")
    adam_beta2: float = option(0.95, help="AdamW beta2")
    max_grad_norm: float = option(1.0, help="gradient clipping norm (0: none)")
    loss: str = option("all", choices=["all", "response_only"],
                       help="all: every token carries loss (the paper); response_only: not instruction prompts")
    bf16: bool = option(False, help="bf16 mixed precision (autocast; also on CPU)")
    log_every: int = option(10, help="optimizer steps between log lines")
    save_every: int = option(0, help="optimizer steps between checkpoints (0: only at the end)")
    save_total_limit: int = option(2, help="checkpoints kept (oldest deleted first)")
    resume: str = option("auto", help="auto: continue from the newest checkpoint in output_dir if any (a "
                                      "finished run of --train_steps is left as it is; one of fewer steps is "
                                      "continued); no: start fresh (output_dir must not hold checkpoints or a "
                                      "final model); or a checkpoint path")
    heldout_dir: str = option("", help="shard directory of held-out documents (same tokenizer and groups)")
    heldout_every: int = option(0, help="optimizer steps between held-out evaluations (0: start and end only)")
    heldout_windows: int = option(64, help="held-out windows per group")
    deepspeed: str = option("", help="DeepSpeed config JSON (GPU clusters; launch with torchrun or deepspeed)")
    threads: int = option(0, help="torch CPU threads per process (0: torch's default)")
    quiet: bool = option(False, help="no progress bar")


# ---------------------------------------------------------------------------------------------
# Log


def _clean(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunLog:
    """``log.jsonl`` (every record) plus ``train_log.csv`` and ``heldout_log.csv`` (one row per record).

    On resume, records after the restored step are dropped, so the log never holds two histories.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.records: list[dict] = []

    def restart_at(self, step: int) -> None:
        path = self.directory / LOG_JSONL
        self.records = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue   # a line cut by a crash
                if record.get("step", 0) <= step and record.get("kind") != "summary":
                    self.records.append(record)
        self._rewrite()

    def add(self, record: dict) -> None:
        record = {k: _clean(v) for k, v in record.items()}
        self.records.append(record)
        with open(self.directory / LOG_JSONL, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        if record["kind"] in ("train", "heldout"):
            self._write_csv(record["kind"])

    def _rewrite(self) -> None:
        with atomic_file(self.directory / LOG_JSONL) as handle:
            for record in self.records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        for kind in ("train", "heldout"):
            self._write_csv(kind)

    def _write_csv(self, kind: str) -> None:
        rows = [r for r in self.records if r.get("kind") == kind]
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k != "kind" and k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
        with atomic_file(self.directory / (TRAIN_CSV if kind == "train" else HELDOUT_CSV)) as handle:
            handle.write(buffer.getvalue())


# ---------------------------------------------------------------------------------------------
# Trainer


def _make_trainer_class():
    """The Trainer subclass, built lazily so importing this module does not import transformers."""
    from transformers import Trainer, TrainerCallback

    class MixtureTrainer(SavesTokenizerFiles, Trainer):
        loss_is_scaled_for_ga = False   # compute_loss returns a per-micro-batch mean: let Trainer divide by GA

        def __init__(self, *args, mixture: MixtureDataset, run_log: RunLog | None, heldout=None,
                     heldout_every: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.mixture = mixture
            self.run_log = run_log
            self.heldout = heldout
            self.heldout_every = heldout_every
            n = len(mixture.group_names)
            self._group_sums = torch.zeros(3, n, dtype=torch.float64)   # loss sum, tokens, samples
            self._last_logged_samples = 0

        # -- data ----------------------------------------------------------------------
        def samples_per_step(self) -> int:
            a = self.args
            return a.per_device_train_batch_size * a.gradient_accumulation_steps * a.world_size

        def get_train_dataloader(self):
            a = self.args
            sampler = RankBatchSampler(
                a.per_device_train_batch_size, a.max_steps * a.gradient_accumulation_steps, rank=a.process_index, world_size=a.world_size,
                start_micro_batch=lambda: self.state.global_step * a.gradient_accumulation_steps)
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
                    sums = torch.stack([(per_token * weights).sum(1), weights.sum(1), torch.ones_like(weights[:, 0])])
                    self._group_sums.index_add_(1, group.cpu(), sums.detach().to("cpu", torch.float64))
            return (loss, outputs) if return_outputs else loss

        # -- logging -------------------------------------------------------------------
        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:
                sums = self._group_sums.clone()
                if torch.distributed.is_available() and torch.distributed.is_initialized() and self.args.world_size > 1:
                    reduced = sums.to(self.args.device)
                    torch.distributed.all_reduce(reduced)
                    sums = reduced.cpu()
                self._group_sums.zero_()
                samples = self.state.global_step * self.samples_per_step()
                counts = self.mixture.sampler.group_counts(samples)
                logs["samples"] = samples
                logs["tokens"] = samples * self.mixture.seq_length
                for g, name in enumerate(self.mixture.group_names):
                    logs[f"loss_{name}"] = float(sums[0, g] / sums[1, g]) if sums[1, g] > 0 else float("nan")
                for g, name in enumerate(self.mixture.group_names):
                    logs[f"mix_{name}"] = float(counts[g] / samples) if samples else 0.0
                if self.run_log is not None and self.is_world_process_zero():
                    record = {"kind": "train", "step": self.state.global_step, "samples": samples,
                              "tokens": logs["tokens"], "learning_rate": logs.get("learning_rate"),
                              "loss": logs["loss"], "grad_norm": logs.get("grad_norm")}
                    record.update({k: v for k, v in logs.items() if k.startswith(("loss_", "mix_"))})
                    self.run_log.add(record)
            super().log(logs, start_time)

        def evaluate_heldout(self) -> dict[str, float] | None:
            # Every rank evaluates (same windows): ZeRO-3 needs all ranks in each forward; rank 0 logs.
            if self.heldout is None:
                return None
            from .heldout import heldout_losses
            losses = heldout_losses(self.model, self.heldout, device=self.args.device,
                                    autocast_dtype=torch.bfloat16 if self.args.bf16 else None)
            samples = self.state.global_step * self.samples_per_step()
            if self.run_log is not None and self.is_world_process_zero():
                record = {"kind": "heldout", "step": self.state.global_step, "samples": samples,
                          "tokens": samples * self.mixture.seq_length}
                record.update({f"heldout_{g}": v for g, v in losses.items()})
                self.run_log.add(record)
            return losses

    class RunCallback(TrainerCallback):
        """Held-out evaluation; ``state.num_input_tokens_seen`` (saved in every checkpoint's
        trainer_state.json, where ``chatflow eval-curve`` reads it) equal to the log's ``tokens``; and, on
        resume, the learning rate of the schedule being run (a run continued for more steps than planned
        recomputes its schedule, while the checkpoint's optimizer holds the old schedule's last rate)."""

        def __init__(self, trainer: MixtureTrainer):
            self.trainer = trainer

        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            if state.global_step > 0 and optimizer is not None and hasattr(lr_scheduler, "lr_lambdas"):
                for group, base, factor in zip(optimizer.param_groups, lr_scheduler.base_lrs,
                                               lr_scheduler.lr_lambdas):
                    group["lr"] = base * factor(lr_scheduler.last_epoch)
                lr_scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
            if state.global_step == 0:
                self.trainer.evaluate_heldout()

        def on_step_end(self, args, state, control, **kwargs):
            state.num_input_tokens_seen = state.global_step * self.trainer.samples_per_step() * \
                self.trainer.mixture.seq_length
            every = self.trainer.heldout_every
            if state.global_step == state.max_steps or (every and state.global_step % every == 0):
                self.trainer.evaluate_heldout()

    return MixtureTrainer, RunCallback


# ---------------------------------------------------------------------------------------------
# Model


def build_model(options: TrainOptions, vocab_size: int, bos_id: int, eos_id: int):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if bool(options.model_config) == bool(options.model_path):
        raise ChatflowError("give exactly one of --model_config (train from scratch) or --model_path")
    if options.model_config:
        try:
            config = LlamaConfig.from_json_file(options.model_config)
        except (OSError, ValueError) as exc:
            raise ChatflowError(f"{options.model_config}: not a LlamaConfig JSON ({exc})") from None
        config.vocab_size = vocab_size
        config.bos_token_id, config.eos_token_id = bos_id, eos_id
        torch.manual_seed(options.init_seed)
        return LlamaForCausalLM(config)
    if not Path(options.model_path, "config.json").is_file():
        raise ChatflowError(f"{options.model_path}: not a HuggingFace model directory (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(options.model_path, dtype=torch.float32)
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < vocab_size:
        raise ChatflowError(f"{options.model_path} has {rows} embedding rows but the dataset's tokenizer has "
                            f"{vocab_size} pieces; expand the model first (chatflow expand-vocab)")
    return model


# ---------------------------------------------------------------------------------------------
# Run


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _find_resume(options: TrainOptions, output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if options.resume == "auto":
        return last
    if options.resume == "no":
        if last is not None:
            raise ChatflowError(f"{output_dir} already holds checkpoints ({last}); use --resume auto or another "
                                f"--output_dir")
        if (output_dir / FINAL_DIR).exists():
            raise ChatflowError(f"{output_dir} already holds a final model ({output_dir / FINAL_DIR}); use another "
                                f"--output_dir")
        return None
    if not Path(options.resume, "trainer_state.json").is_file():
        raise ChatflowError(f"--resume {options.resume}: not a Trainer checkpoint (no trainer_state.json)")
    return options.resume


def _checkpoint_step(checkpoint: str) -> int:
    return int(json.loads(Path(checkpoint, "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def _finished_summary(output_dir: Path) -> dict | None:
    """The summary of the finished run in ``output_dir``, or None (``final/`` only exists complete)."""
    record = output_dir / FINAL_DIR / FINAL_RECORD
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None


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
        except json.JSONDecodeError:
            recorded = None
        if recorded != finished:
            run_log = RunLog(output_dir)
            run_log.restart_at(finished["steps"])
            _record_finish(output_dir, finished, run_log)
    return dict(finished, already_finished=True)


def _spm_path(options: TrainOptions, tok: dict) -> str:
    """The sentencepiece model saved (as HF tokenizer files) with every checkpoint and the final model:
    --spm_model_path, else the dataset's or the start model's ``tokenizer.model`` if it is the dataset's."""
    if options.spm_model_path:
        return options.spm_model_path
    start_model = str(Path(options.model_path, "tokenizer.model")) if options.model_path else ""
    for path in (tok.get("path", ""), start_model):
        if path and os.path.isfile(path) and sha256_file(path) == tok["sha256"]:
            return path
    return ""


def _check_run_config(output_dir: Path, config: dict, resuming: bool) -> None:
    path = output_dir / RUN_CONFIG
    if resuming and path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in POSITION_KEYS if old.get(k) != config.get(k)]
        if changed:
            raise ChatflowError(f"cannot resume {output_dir}: {', '.join(changed)} changed since the run started "
                                f"(they decide which samples each step reads); use a new --output_dir")


def train(options: TrainOptions) -> dict:
    """Run (or resume) one training run; returns the summary also written to ``train_summary.json``."""
    from transformers import TrainingArguments

    for name in ("train_steps", "micro_batch_size", "gradient_accumulation_steps", "log_every", "heldout_windows"):
        if getattr(options, name) <= 0:
            raise ChatflowError(f"--{name} must be positive, got {getattr(options, name)}")
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    rank, world_size = _world()
    output_dir = Path(options.output_dir)

    shards = ShardSet(options.dataset_dir, spm_model_path=options.spm_model_path or None)
    spec = load_mixture(options.mixture) if options.mixture else None
    mixture = MixtureDataset(shards, spec=spec, seed=None if options.seed < 0 else options.seed,
                             response_only=options.loss == "response_only")
    tok = shards.tokenizer
    heldout = None
    if options.heldout_dir:
        from .heldout import HeldOutSet
        held_shards = ShardSet(options.heldout_dir)
        if held_shards.tokenizer["sha256"] != tok["sha256"]:
            raise ChatflowError(f"{options.heldout_dir} was tokenized with another tokenizer than {options.dataset_dir}")
        if held_shards.seq_length != shards.seq_length:
            raise ChatflowError(f"{options.heldout_dir}: seq_length {held_shards.seq_length} differs from the "
                                f"training data's {shards.seq_length}")
        heldout = HeldOutSet(held_shards, options.heldout_windows, groups=mixture.group_names)

    resume_from = _find_resume(options, output_dir)
    finished = _finished_summary(output_dir) if options.resume == "auto" else None
    run_config = {"dataset_dir": str(Path(options.dataset_dir).resolve()),
                  "dataset_sha": tok["sha256"] + ":" + str(sorted((s.name, s.windows) for s in shards.sources)),
                  "mixture": mixture.spec.to_json() | {"data_root": None}, "seed": mixture.spec.seed,
                  "micro_batch_size": options.micro_batch_size, "world_size": world_size,
                  "gradient_accumulation_steps": options.gradient_accumulation_steps,
                  "seq_length": shards.seq_length, "train_steps": options.train_steps, "options": asdict(options)}
    _check_run_config(output_dir, run_config, resume_from is not None or finished is not None)
    if finished is not None:
        if finished["steps"] == options.train_steps:
            return _leave_finished(output_dir, finished, rank)
        if finished["steps"] > options.train_steps or resume_from is None:
            raise ChatflowError(
                f"{output_dir} holds a finished run of {finished['steps']} steps"
                + (f"; --train_steps {options.train_steps} asks for fewer" if resume_from is not None else
                   f" and no checkpoint-* to continue it from") + "; use another --output_dir (with --model_path "
                f"{output_dir / FINAL_DIR} to train its final model further)")
    if resume_from is not None:
        done = _checkpoint_step(resume_from)
        if done > options.train_steps:
            raise ChatflowError(f"{resume_from} is at step {done}, beyond --train_steps {options.train_steps}")
        planned = json.loads((output_dir / RUN_CONFIG).read_text(encoding="utf-8")).get("train_steps") \
            if (output_dir / RUN_CONFIG).is_file() else None
        if planned is not None and planned != options.train_steps and rank == 0:
            print(f"{output_dir}: continuing from step {done} to {options.train_steps} (the run was set for "
                  f"{planned}); the {options.lr_scheduler} learning-rate schedule now spans {options.train_steps} "
                  f"steps", file=sys.stderr)

    model = build_model(options, tok["vocab_size"], tok["bos_id"], tok["eos_id"])
    tokenizer_files, mismatches = None, []
    spm_path = _spm_path(options, tok)
    if rank == 0:
        if spm_path:
            # the tokenizer carries the model's context length, not the training sequence length
            tokenizer_files, mismatches = TokenizerFiles.from_sentencepiece(
                spm_path, getattr(model.config, "max_position_embeddings", None) or shards.seq_length)
            if mismatches:
                print(f"warning: the saved HF tokenizer differs from sentencepiece on {len(mismatches)} probe "
                      f"text(s), e.g. {mismatches[0][:40]!r}", file=sys.stderr)
        else:
            print(f"warning: no tokenizer to save: the dataset's ({tok.get('path')}) is not found or changed and "
                  f"--spm_model_path is not given; checkpoints and the final model will hold no tokenizer files",
                  file=sys.stderr)
    total_samples = options.train_steps * options.gradient_accumulation_steps * options.micro_batch_size * world_size
    use_cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=options.train_steps,
        per_device_train_batch_size=options.micro_batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        learning_rate=options.learning_rate, lr_scheduler_type=options.lr_scheduler,
        lr_scheduler_kwargs={"min_lr_rate": 0.1} if options.lr_scheduler == "cosine_with_min_lr" else {},
        warmup_steps=options.warmup_steps, weight_decay=options.weight_decay, adam_beta2=options.adam_beta2,
        max_grad_norm=options.max_grad_norm, bf16=options.bf16, logging_steps=options.log_every,
        save_strategy="steps", save_steps=options.save_every or options.train_steps,
        save_total_limit=options.save_total_limit, seed=options.init_seed, report_to="none",
        disable_tqdm=options.quiet, remove_unused_columns=False, dataloader_num_workers=0,
        ignore_data_skip=True,   # the batch sampler restarts at the restored step itself (exact, O(1))
        use_cpu=use_cpu, ddp_backend="gloo" if use_cpu and world_size > 1 else None,
        deepspeed=options.deepspeed or None, save_only_model=False,
    )
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(output_dir / RUN_CONFIG) as handle:
            json.dump(run_config, handle, indent=2, default=str)
    run_log = RunLog(output_dir) if rank == 0 else None
    if run_log is not None:
        run_log.restart_at(_checkpoint_step(resume_from) if resume_from is not None else 0)

    MixtureTrainer, RunCallback = _make_trainer_class()
    trainer = MixtureTrainer(model=model, args=args, train_dataset=MixtureTorchDataset(mixture, total_samples),
                             data_collator=collate_windows, mixture=mixture, run_log=run_log, heldout=heldout,
                             heldout_every=options.heldout_every)
    trainer.tokenizer_files = tokenizer_files
    trainer.add_callback(RunCallback(trainer))
    if options.quiet:
        from transformers import PrinterCallback
        trainer.remove_callback(PrinterCallback)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.time() - started
    if trainer.state.global_step < options.train_steps:   # stopped by a callback: no final model
        return {"steps": options.train_steps, "stopped_early_at": trainer.state.global_step,
                "seconds_this_session": round(seconds, 2), "resumed_from": resume_from}

    # Final model (with the tokenizer files): written under a temporary name, renamed into place by rank 0
    # when complete; the run's records follow it.
    partial = output_dir / ".final.partial"
    if trainer.is_world_process_zero() and partial.exists():
        shutil.rmtree(partial)
    trainer.save_model(str(partial))
    samples = options.train_steps * trainer.samples_per_step()
    counts = mixture.sampler.group_counts(samples)
    trained = trainer.state.global_step - (_checkpoint_step(resume_from) if resume_from is not None else 0)
    summary = {"steps": options.train_steps, "samples": samples, "tokens": samples * shards.seq_length,
               "seconds_this_session": round(seconds, 2),
               "train_loss": result.training_loss if trained else None,   # mean over this session's steps
               "resumed_from": resume_from, "world_size": world_size,
               "group_samples": {g: int(c) for g, c in zip(mixture.group_names, counts)},
               "final_model": path_for_file(output_dir / FINAL_DIR, output_dir / "train_summary.json", tree=output_dir)}
    if trainer.is_world_process_zero():
        if tokenizer_files is not None:
            summary["tokenizer_mismatches"] = len(mismatches)
        (partial / FINAL_RECORD).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        final = output_dir / FINAL_DIR
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        _record_finish(output_dir, summary, run_log)
    return summary


def cli_main(argv: list[str], prog: str = "chatflow train") -> int:
    options = parse_options(TrainOptions, argv, prog=prog, description=__doc__.split("\n\n")[0])
    summary = train(options)
    if _world()[0] == 0:
        if summary.get("already_finished"):
            print(f"{options.output_dir}: finished ({summary['steps']} steps); the final model is "
                  f"{Path(options.output_dir) / FINAL_DIR}")
        else:
            print(json.dumps(summary, indent=2))
    return 0
