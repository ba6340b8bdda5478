"""The classes ``register()`` puts in TencentPretrain's registries (this module imports the host).

* ``ChatflowMixtureDataset`` (``str2dataset['dynamic_mixture']``): the host's ``preprocess.py``
  builds the plugin's shard directory with the core preprocessing.
* ``ChatflowMixtureDataloader`` (``str2dataloader['dynamic_mixture']``): streams the core sampler's
  order, this rank's slice of each step, as ``(src, tgt, seg, group)``.
* ``ChatflowInstructionTarget`` (``str2target['chatflow_instruction']``): the LM loss of eq. (1) over
  every target token with ``seg > 0``, plus per-row sums for per-group loss. Through the launcher
  the model keeps the stock ``target.lm`` module (stock checkpoint keys) and the trainer adopts it.
* ``ChatflowTrainer`` (``str2trainer['dynamic_mixture']``): the host's LM training loop, resuming at
  the checkpoint's step and sample (on any layout; with an allowed change of global batch or mixture) and
  mixture history (:mod:`.mixing`), logging per-group loss and mixture weights, held-out losses and the
  adaptive policy's updates, always saving the last step.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from tencentpretrain.model_saver import save_model
from tencentpretrain.targets.lm_target import LmTarget
from tencentpretrain.trainer import LmTrainer

from ...data.batches import MixtureDataset
from ...data.heldout import HeldOutSet
from ...errors import ChatflowError
from ...data.metrics import GroupLossMeter, data_parallel_sum, first_rank_value
from ...data.mixture import load_mixture, parse_source_overrides
from ...data.preprocess import preprocess, summary
from ...data.revisions import load_mixture_file
from ...data.runstate import STATE_FILE, STATE_SUFFIX, write_state
from ...data.shards import ShardSet
from ...data.split import check_disjoint, parse_split
from ...tokenizer import SENTENCEPIECE, load_tokenizer
from .batches import RankStream, SampleLog
from .mixing import HostRun, heldout_losses
from .names import DATA_PROCESSOR, GIVEN, TARGET
from ..resume import apply_resumed_settings
from ..trackers import Trackers
from ..zero import deepspeed_settings
from .progress import format_report, resume_position, settings_changes

STOCK_TARGET_NAME = "lm"


# ---------------------------------------------------------------------------------------------
# preprocess.py --data_processor dynamic_mixture


class ChatflowMixtureDataset:
    """Called by the host's ``preprocess.py`` as ``cls(args, vocab, tokenizer).build_and_save(processes)``."""

    def __init__(self, args, vocab, tokenizer):
        self.args = args

    def build_and_save(self, workers: int) -> dict:
        args = self.args
        mixture = getattr(args, "mixture_config", None)
        if not mixture:
            raise ChatflowError(f"--data_processor {DATA_PROCESSOR} needs --mixture_config M.json")
        if not args.spm_model_path:
            raise ChatflowError(f"--data_processor {DATA_PROCESSOR} needs --spm_model_path (a sentencepiece model)")
        if int(workers) < 1:
            raise ChatflowError(f"--processes_num must be positive, got {workers}")
        given = getattr(args, GIVEN, set())
        # The host's --seq_length defaults to 128; only an explicit value overrides the mixture's.
        seq_length = args.seq_length if "seq_length" in given else None
        spec = load_mixture(mixture).with_overrides(
            data_root=getattr(args, "data_root", None) or None, seq_length=seq_length,
            source_paths=parse_source_overrides(getattr(args, "source_path", None)))
        for warning in spec.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        tokenizer = load_tokenizer(args.spm_model_path, SENTENCEPIECE)
        split = getattr(args, "split", None)
        split = parse_split(split, int(getattr(args, "split_seed", 0) or 0)) if split else None
        result = preprocess(spec, tokenizer, args.dataset_path, workers=max(int(workers), 1),
                            on_bad_record=getattr(args, "on_bad_record", "skip"),
                            force=bool(getattr(args, "overwrite_dataset", False)), quiet=False, split=split)
        for part, manifest in ({None: result} if split is None else result).items():
            print(summary(manifest))
            print(f"wrote {args.dataset_path if part is None else os.path.join(args.dataset_path, part)}")
        return result


# ---------------------------------------------------------------------------------------------
# pretrain.py --data_processor dynamic_mixture


def data_parallel_position(global_rank: int, world_size: int, args) -> tuple[int, int, object]:
    """This process's data-parallel rank, world and process group (None: the default group),
    from the live process group when there is one.

    The host passes (0, 1) whenever ``--world_size`` is left at 1, e.g. under ``torchrun`` with
    DeepSpeed; trusting it would make every rank read the same samples.
    """
    if dist.is_available() and dist.is_initialized():
        if getattr(args, "tensor_model_parallel_size", 1) > 1 or getattr(args, "pipeline_model_parallel_size", 1) > 1:
            from tencentpretrain import mpu
            return mpu.get_data_parallel_rank(), mpu.get_data_parallel_world_size(), mpu.get_data_parallel_group()
        return dist.get_rank(), dist.get_world_size(), None
    return int(global_rank or 0), int(world_size or 1), None


class ChatflowMixtureDataloader(RankStream):
    """Yields this rank's micro-batches in the sampler's global order, from ``samples_before`` on
    (:class:`~.batches.RankStream`), built the way the host builds its dataloaders.

    The trainer sets ``samples_before`` (what a resumed checkpoint consumed) before iterating.
    """

    def __init__(self, args, dataset_path, batch_size, global_rank, world_size, local_rank,
                 shuffle=False, model_for_dataloader=None):
        if not getattr(args, "spm_model_path", None):
            raise ChatflowError(f"--data_processor {DATA_PROCESSOR} needs --spm_model_path, the tokenizer "
                                f"the dataset was built with")
        if getattr(args, "pipeline_model_parallel_size", 1) > 1:
            raise ChatflowError(f"--data_processor {DATA_PROCESSOR} does not support pipeline parallelism")
        shards = ShardSet(dataset_path, tokenizer=load_tokenizer(args.spm_model_path, SENTENCEPIECE),
                          verify=not getattr(args, "no_verify_data", False))
        spec = load_mixture_file(args.mixture_config) if getattr(args, "mixture_config", None) else None
        dataset = MixtureDataset(shards, spec=spec, response_only=bool(getattr(args, "response_only_loss", False)))
        vocab_size = len(args.tokenizer.vocab)
        configured = getattr(args, "vocab_size", None)
        if configured is not None and int(configured) != vocab_size:
            raise ChatflowError(f"{args.config_path} is for a {configured}-piece vocabulary but {args.spm_model_path} "
                                f"has {vocab_size} pieces (expand the tokenizer first: chatflow expand-vocab)")
        if shards.tokenizer["vocab_size"] != vocab_size:
            raise ChatflowError(f"{dataset_path}: built with a {shards.tokenizer['vocab_size']}-piece tokenizer, "
                                f"the model has {vocab_size}")
        max_len = getattr(args, "max_seq_length", None)
        if max_len is not None and shards.seq_length > max_len:
            raise ChatflowError(f"{dataset_path}: sequences of {shards.seq_length} tokens exceed the model's "
                                f"max_seq_length {max_len} ({args.config_path})")
        rank, dp_world, self.group = data_parallel_position(global_rank, world_size, args)
        if dp_world != int(world_size or 1) and rank == 0:
            print(f"note: {dp_world} data-parallel processes but --world_size {world_size}; "
                  f"the data is split over the {dp_world} processes", file=sys.stderr)
        super().__init__(dataset, int(batch_size), rank, dp_world)
        sample_log = getattr(args, "sample_log", None)
        self.sample_log = SampleLog(sample_log, self.rank, self.world_size) if sample_log else None
        self.seq_length = shards.seq_length


# ---------------------------------------------------------------------------------------------
# --target chatflow_instruction


class ChatflowInstructionTarget(LmTarget):
    """The host's LM target (its ``output_layer`` and log-softmax) that can also report per-row loss.

    The loss is the mean token negative log-likelihood over positions with ``seg > 0`` (``seg > 1``
    with --prefix_lm_loss), exactly the stock ``lm`` loss and the paper's eq. (1) when ``seg`` marks
    every token (``--response_only_loss`` narrows it to responses on instruction sources). With
    ``report_rows`` set, ``forward`` returns ``(loss, row_loss_sum (B,), row_tokens (B,))``.

    The launcher builds the model with the stock ``lm`` target under its stock name (so every
    checkpoint has the stock ``target.lm.`` keys and every host loader, ZeRO-3 included, fills it)
    and the trainer then adopts that module: see :meth:`adopt`.
    """

    report_rows = False

    def __init__(self, args, vocab_size):
        super().__init__(args, vocab_size)
        self.check(args)

    def check(self, args) -> None:
        if self.tensor_model_parallel_size > 1 or self.pipeline_model_parallel_size > 1:
            raise ChatflowError(f"--target {TARGET} does not support tensor or pipeline parallelism; use --target lm")
        if self.label_smoothing is not None:
            raise ChatflowError(f"--target {TARGET} has no label smoothing; drop --label_smoothing or use --target lm")

    @classmethod
    def adopt(cls, target: LmTarget, args) -> "ChatflowInstructionTarget":
        """Turn the model's stock ``LmTarget`` into this class in place (same parameters and keys)."""
        if not isinstance(target, LmTarget):
            raise ChatflowError(f"--target {TARGET} needs the model's target.lm to be an LM target")
        target.__class__ = cls
        target.check(args)
        target.report_rows = True
        return target

    def forward(self, memory_bank, tgt, seg):
        batch, length = seg.shape
        keep = (seg > (1 if self.prefix_lm_loss else 0)).reshape(-1)
        hidden = memory_bank.reshape(-1, self.hidden_size)[keep]
        log_probs = self.softmax(self.output_layer(hidden))
        token_loss = -log_probs.gather(1, tgt.reshape(-1)[keep].unsqueeze(1)).squeeze(1)
        if token_loss.numel():
            loss = token_loss.mean()
        else:                                        # no loss-bearing token: a zero that keeps the graph
            loss = log_probs.sum() * 0.0
        if not self.report_rows:
            return loss
        rows = torch.div(keep.nonzero().squeeze(1), length, rounding_mode="floor")
        row_loss = torch.zeros(batch, dtype=torch.float32, device=token_loss.device)
        row_loss.index_add_(0, rows, token_loss.detach().float())
        row_tokens = torch.bincount(rows, minlength=batch)
        return loss, row_loss, row_tokens


# ---------------------------------------------------------------------------------------------
# the trainer


class ChatflowTrainer(LmTrainer):
    """The host's LM loop for ``dynamic_mixture``: exact resume, per-group loss, a final checkpoint."""

    def forward_propagation(self, batch, model):
        src, tgt, seg, group = batch
        out = model(src, tgt, seg)
        if isinstance(out, tuple):               # chatflow_instruction: per-row sums for per-group loss
            loss, row_loss, row_tokens = out
            self.group_meter.add(group, row_loss, row_tokens)
        else:                                    # the stock lm target
            loss = out
        self.total_loss += loss.item()
        return loss / self.accumulation_steps

    def train(self, args, local_rank, global_rank, loader, model, optimizer, scheduler):
        if args.pipeline_model_parallel_size > 1:
            raise ChatflowError(f"--data_processor {DATA_PROCESSOR} does not support pipeline parallelism")
        if not isinstance(loader, ChatflowMixtureDataloader):
            raise ChatflowError(f"the {DATA_PROCESSOR} trainer needs the {DATA_PROCESSOR} dataloader")
        self.loader = loader
        self.optimizer_for_report = optimizer
        self.dp_world = loader.world_size
        self.is_logger = loader.rank == 0 and (global_rank in (None, 0))
        self.device = torch.device("cuda", local_rank) if local_rank is not None else None
        step_samples = self.batch_size * self.dp_world
        position = resume_position(step_samples, resume_from_checkpoint=getattr(args, "resume_from_checkpoint", None)
                                   if args.deepspeed else None, start_step=getattr(args, "start_step", None),
                                   pretrained_model_path=args.pretrained_model_path,
                                   universal=deepspeed_settings(getattr(args, "deepspeed_config", None))[1]
                                   if args.deepspeed else False)
        self.run = HostRun(loader.dataset, {"micro_batch_size": self.batch_size, "gradient_accumulation_steps":
                                            self.accumulation_steps, "world_size": self.dp_world},
                           os.path.abspath(args.dataset_path), log=self.logger.info if self.is_logger else None)
        if self.is_logger and getattr(args, "tensorboard_dir", None):
            self.run.tracker = Trackers(["tensorboard"], os.path.dirname(os.path.abspath(self.output_model_path)),
                                        config={k: v for k, v in vars(args).items() if _plain(v)},
                                        start_step=position.steps_done, tensorboard_dir=args.tensorboard_dir)
        steps_done = self.run.resume(position.steps_done, position.state, list(getattr(args, "allow_change", None) or []),
                                     getattr(args, "mixture_config", None), float(getattr(args, "mixture_catch_up", 0.0)),
                                     position.origin)
        loader.dataset = self.dataset = self.run.dataset
        self.run.heldout = _heldout_set(args, loader.dataset)
        self.group_meter = GroupLossMeter(self.dataset.group_names)
        loader.samples_before = position.samples_done
        loader.step = 0
        self.current_step = steps_done + 1
        self.run.settings = run_settings(args, self.dataset)
        for entry in settings_changes(position.state, self.run.settings, getattr(args, "allow_change", None) or [],
                                      steps_done, position.origin):
            self.run.record(entry)
        if steps_done > 0:     # this run's learning-rate schedule at the resumed step
            apply_resumed_settings(optimizer, scheduler, args.learning_rate,
                                   None if args.deepspeed else steps_done // self.accumulation_steps)
        if self.is_logger:
            self.logger.info(f"chatflow: {self.dataset.group_names} from {args.dataset_path}; starting at step "
                             f"{self.current_step} = global sample {position.samples_done} ({position.origin}); "
                             f"{step_samples} samples per step over {self.dp_world} data-parallel ranks, "
                             f"{self.run.global_batch} per optimizer step")
        # The host saves into a folder it never creates: fail now, not after the first save interval.
        folder = self.output_model_path if args.deepspeed and not args.use_lora else os.path.dirname(
            os.path.abspath(self.output_model_path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ChatflowError(f"--output_model_path {self.output_model_path}: cannot create {folder} ({exc})") from None
        if self.current_step > self.total_steps:
            if self.is_logger:
                self.logger.info(f"chatflow: nothing to do, {steps_done} of {self.total_steps} steps done")
            return
        if getattr(args, "chatflow_instruction", False):
            host_target = getattr(_unwrap(model).target, STOCK_TARGET_NAME, None)
            ChatflowInstructionTarget.adopt(host_target, args)
        own = getattr(_unwrap(model).target, TARGET, None)      # built under the plugin's own name
        if isinstance(own, ChatflowInstructionTarget):
            own.report_rows = True
        model.train()
        if steps_done == 0:
            self.heldout(model, 0, 0, adapt=True)
        self.steps_since_report = 0            # a resumed run's first report covers fewer steps
        loader_iter = iter(loader)
        self.start_time = time.time()
        while self.current_step <= self.total_steps:
            batch = list(next(loader_iter))
            if loader.sample_log is not None:
                loader.sample_log.write(self.current_step, loader.last_indices, batch[3].tolist())
            self.seq_length = batch[0].size(1)
            if local_rank is not None:
                batch = [b.cuda(local_rank) if torch.is_tensor(b) else b for b in batch]
            loss = self.forward_propagation(batch, model)
            self.steps_since_report += 1
            if args.deepspeed:
                model.backward(loss)
            else:
                loss.backward()
            if self.current_step % self.accumulation_steps == 0:
                if args.deepspeed:
                    model.step()
                else:
                    if getattr(args, "max_grad_norm", None):     # DeepSpeed clips by its config's gradient_clipping
                        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    model.zero_grad()
                self.after_optimizer_step(args, model)
            if self.current_step % self.report_steps == 0:
                self.report(args)
            if self.current_step % self.save_checkpoint_steps == 0 or self.current_step == self.total_steps:
                self.save(args, model, global_rank)
            self.current_step += 1
        if loader.sample_log is not None:
            loader.sample_log.close()
        if self.run.tracker is not None:
            self.run.tracker.close()

    # -- held-out losses and the adaptive policy ------------------------------------------
    def after_optimizer_step(self, args, model) -> None:
        """Held-out losses every --heldout_steps, at the last step and when the adaptive policy is due, which
        then updates the mixture from the next sample on."""
        after = self.loader.samples_done
        adapt = self.run.adaptive_due(after - self.run.global_batch, after)
        every = int(getattr(args, "heldout_steps", 0) or 0)
        last = self.current_step + self.accumulation_steps > self.total_steps
        if adapt or last or (every and self.current_step % every == 0):
            self.heldout(model, self.current_step, after, adapt=adapt)

    def heldout(self, model, step: int, samples: int, adapt: bool) -> None:
        if self.run.heldout is None:
            return
        losses = heldout_losses(model, self.run.heldout, self.batch_size, self.device)     # every rank: ZeRO-3
        if self.is_logger:
            self.logger.info(f"| {step:8d}/{self.total_steps:8d} steps| heldout: " +
                             " ".join(f"{g} {v:.4f}" for g, v in losses.items()))
            if self.run.tracker is not None:
                self.run.tracker.log({"kind": "heldout", "step": step, "samples": samples,
                                      "tokens": samples * self.dataset.seq_length,
                                      **{f"heldout_{g}": v for g, v in losses.items()}})
        if adapt:
            self.run.adapt(step, samples, losses, first_rank_value)

    # -- logging -------------------------------------------------------------------------
    def report(self, args) -> None:
        """Every rank takes part (the sums are all-reduced); the first rank writes the line."""
        reduce = data_parallel_sum(self.loader.group, self.dp_world)
        total = torch.tensor([self.total_loss], dtype=torch.float64)
        if reduce is not None:
            reduce(total)
            total /= self.dp_world
        group_losses, _ = self.group_meter.reduce_and_reset(reduce)
        has_groups = any(value is not None for value in group_losses)
        if self.is_logger:
            steps = max(self.steps_since_report, 1)
            done_tokens = self.batch_size * self.seq_length * steps * self.dp_world
            p = self.loader.dataset.sampler.probabilities(float(self.loader.samples_done))
            self.logger.info(format_report(self.current_step, self.total_steps,
                                           done_tokens / max(time.time() - self.start_time, 1e-9),
                                           float(total[0]) / steps, self.dataset.group_names,
                                           group_losses if has_groups else None, p.tolist()))
            if self.run.tracker is not None:
                self.run.tracker.log(self.tracker_record(float(total[0]) / steps, group_losses, p))
        self.total_loss = 0.0
        self.steps_since_report = 0
        self.start_time = time.time()

    def tracker_record(self, loss: float, group_losses, p) -> dict:
        """The report's numbers as a log record (:mod:`chatflow_plugin.hosts.trackers`): the loss, per group its
        loss, p_k(t), realised share and epochs, the learning rate, samples and tokens."""
        dataset, samples = self.loader.dataset, self.loader.samples_done
        counts, epochs = dataset.sampler.group_counts(samples), dataset.group_epochs(samples)
        record = {"kind": "train", "step": self.current_step, "samples": samples,
                  "tokens": samples * dataset.seq_length, "loss": loss, "learning_rate": self.learning_rate()}
        for g, name in enumerate(dataset.group_names):
            record[f"loss_{name}"] = group_losses[g]
            record[f"p_{name}"] = float(p[g])
            record[f"mix_{name}"] = float(counts[g] / samples) if samples else 0.0
            record[f"epochs_{name}"] = float(epochs[g])
        return record

    def learning_rate(self) -> float | None:
        optimizer = getattr(self, "optimizer_for_report", None)
        try:
            return float(optimizer.param_groups[0]["lr"]) if optimizer is not None else None
        except (AttributeError, IndexError, KeyError, TypeError):
            return None

    # -- checkpoints ---------------------------------------------------------------------
    def save(self, args, model, global_rank) -> None:
        step, samples = self.current_step, self.loader.samples_done
        first = self.loader.rank == 0 and global_rank in (None, 0)
        state = self.run.state(step, samples)
        if args.deepspeed and not args.use_lora:
            model.save_checkpoint(self.output_model_path, str(step), client_state={"chatflow": state})
            if first:
                write_state(Path(self.output_model_path) / str(step) / STATE_FILE, **state)
            return
        if first:
            target = f"{self.output_model_path}-{step}"
            partial = f"{target}.partial"         # a killed save never leaves a file that loads as valid
            save_model(model, partial, args.use_lora)
            os.replace(partial, target)
            write_state(target + STATE_SUFFIX, **state)


def run_settings(args, dataset: MixtureDataset) -> dict:
    """The settings a resumed run must not change without --allow_change (progress.MEANING_KEYS), and its
    length."""
    target = "chatflow_instruction" if getattr(args, "chatflow_instruction", False) else list(args.target)
    return {"target": target, "response_only_loss": bool(getattr(args, "response_only_loss", False)),
            "learning_rate": args.learning_rate, "scheduler": args.scheduler, "warmup": args.warmup,
            "warmup_steps": getattr(args, "warmup_steps", None),
            "dataset": dataset.shards.content_checksum(), "total_steps": args.total_steps}


def _plain(value) -> bool:
    """A value a tracker's config shows as it is."""
    return value is None or isinstance(value, (str, int, float, bool)) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _heldout_set(args, dataset: MixtureDataset) -> HeldOutSet | None:
    """--heldout_dataset_path's windows per group of the mixture in force (an adaptive mixture needs them)."""
    path = getattr(args, "heldout_dataset_path", None)
    if not path:
        if dataset.history.designed.adaptive is not None:
            raise ChatflowError(f"mixture {dataset.history.designed.name!r} has an adaptive policy, which needs "
                                f"held-out losses: give --heldout_dataset_path")
        return None
    shards = ShardSet(path, tokenizer=load_tokenizer(args.spm_model_path, SENTENCEPIECE),
                      verify=not getattr(args, "no_verify_data", False))
    if shards.seq_length != dataset.seq_length:
        raise ChatflowError(f"--heldout_dataset_path {path}: seq_length {shards.seq_length} differs from the "
                            f"training data's {dataset.seq_length}")
    check_disjoint(dataset.shards, shards, "--dataset_path", "--heldout_dataset_path")
    groups = {g.name: [s.name for s in g.sources] for g in dataset.spec.groups}
    return HeldOutSet(shards, int(getattr(args, "heldout_windows", 64)), groups=groups)

