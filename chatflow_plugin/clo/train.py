"""``chatflow clo-train``: train a HuggingFace causal LM with the CLO objective or its SFT baseline.

``--objective clo`` trains on the preference triples of ``chatflow clo-data`` with
``lambda * NLL(y_l | x_l) + (1 - lambda) * DPO(both triples)`` (:mod:`chatflow_plugin.clo.objective`) against
reference log-probabilities computed once by the start model and cached next to the data
(:mod:`chatflow_plugin.clo.reference`); by default only the attention projections are trained, as
in the paper. ``--objective sft`` is the baseline: response NLL of the target-language side (or both
sides) of the same pairs, all parameters by default.

Why not TRL's DPOTrainer: CLO's NLL term covers only the target-language triple (TRL's ``rpo_alpha``
adds NLL on every chosen response, so lambda = 1 would not be target-language SFT), the reference
log-probs must persist across runs keyed by model and data checksums (TRL precomputes them per run,
in memory), and TRL is not a dependency of this package. A HF ``Trainer`` subclass with its own
``compute_loss`` keeps the Trainer's optimizer, schedule, mixed precision, distributed and
checkpoint machinery, and the loss is tested against a hand computation.

Output directory, laid out as ``chatflow train``'s: ``chatflow_run.json`` (settings, checksums), ``log.jsonl``
(one line per logging step: loss, nll, contrastive, reward margins/accuracy per language, learning rate),
``checkpoint-N/`` (Trainer checkpoints; ``--resume auto``, the default, continues exactly from the last),
``eval.json`` (response NLL on ``--heldout_dir`` before and after training) and ``final/`` (the final HF model with
its tokenizer, written atomically). Every checkpoint holds the start model's tokenizer files too. A re-run
of a finished run (``final/`` present, same settings) changes nothing and says so. A run folder of the older
layout (``run.json``, ``checkpoints/``, ``model/``) is refused with what to do instead (:func:`_refuse_old_layout`). Resume, the log and
the final save are :mod:`chatflow_plugin.hosts.hf.run`'s, shared with ``chatflow train``.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import ChatflowError
from ..files import atomic_file, disk_error
from ..hosts.hf.console import Console, deepspeed_only_if_used, show_progress
from ..hosts.hf.train import FINAL_DIR, RUN_CONFIG
from ..hosts.hyperparameters import warmup_steps
from ..hosts.resume import apply_resumed_settings
from ..hosts.trackers import TRACKER_FILES, TRACKER_FOLDERS, Trackers, parse_report_to, report_to_help
from ..hosts.hf.run import (RunLog, RunRecord, RunStart, SavesTokenizerFiles, allow_change_help,
                            is_main_process, leave_process_group, quiet_libraries, resume_help, run_directory,
                            save_final_model, start_run)
from ..outputs import OutputKind, check_not_input
from ..resources import local_model
from ..options import option
from .objective import DEFAULT_BETA, DEFAULT_LAMBDA, clo_loss, select_trainable, sequence_logps
from .reference import ReferenceCache, pair_sequences, wait_for_cache
from .tokens import EncodedSequence, encode_prompt_response, pad_sequences
from ..tokenizer import Tokenizer, TokenizerFiles, load_tokenizer
from .triples import TripleSet, load_triples

# options that must not change between a run and its resumption (they decide the items and their order, or
# the checkpoint's optimizer state holds them)
RESUME_INVARIANTS = ("model_path", "data_dir", "objective", "trainable", "max_pairs", "sft_languages", "max_length",
                     "micro_batch_size", "gradient_accumulation_steps", "epochs", "train_steps", "seed",
                     "weight_decay", "bf16")
# options that change the objective or the learning-rate schedule from the resumed step on: refused unless
# --allow_change names them, then recorded in chatflow_run.json's history
MEANING_KEYS = ("lam", "beta", "learning_rate", "lr_scheduler", "warmup_steps")
RUN_RECORD = RUN_CONFIG          # the run folder of chatflow train: chatflow_run.json, checkpoint-N/, final/
LOG_JSONL = "log.jsonl"
EVAL_JSON = "eval.json"
OLD_LAYOUT = ("run.json", "checkpoints", "model")   # before the two trainers shared one layout
# the run directory's kind (chatflow_plugin.outputs): the entries a run writes, each a file or a folder (the old
# layout's too, so that --force replaces an old run folder)
RUN_KIND = OutputKind("clo-run", files=(RUN_RECORD, LOG_JSONL, EVAL_JSON, ".*.tmp", OLD_LAYOUT[0]) + TRACKER_FILES,
                      folders=(FINAL_DIR, f".{FINAL_DIR}.partial", "checkpoint-*") + OLD_LAYOUT[1:]
                      + TRACKER_FOLDERS)


@dataclass
class CLOTrainOptions:
    model_path: str = option(help="start model: a HuggingFace LLaMA directory (config.json, weights, tokenizer.model); "
                             "also the frozen CLO reference", aliases=["--model"])
    data_dir: str = option(help="triples directory from `chatflow clo-data`", aliases=["--data"])
    output_dir: str = option(help="run directory, as chatflow train's: chatflow_run.json, log.jsonl, checkpoint-N/, "
                                  "eval.json, final/")
    objective: str = option("clo", choices=["clo", "sft"], help="clo: lambda*NLL + (1-lambda)*DPO on both triples; sft: response NLL only")
    lam: float = option(DEFAULT_LAMBDA, help="CLO weight of the target-language NLL term, in [0, 1] "
                        "(assumption; not in the public record)")
    beta: float = option(DEFAULT_BETA, help="CLO DPO temperature beta (assumption; DPO's customary value)")
    trainable: str = option("auto", choices=["auto", "all", "attention"], help="all | attention (q/k/v/o projections only) | auto = attention for "
                            "clo, all for sft")
    sft_languages: str = option("target", choices=["target", "source", "both"], help="sft: train on the target-language responses (target), the "
                                "English ones (source) or both")
    max_pairs: Optional[int] = option(None, help="use the first N pairs of the data (CLO: N pairs; SFT target: N "
                                   "samples); default all")
    max_length: int = option(1024, help="tokens per sequence (prompt + response); longer ones are truncated")
    micro_batch_size: int = option(4, help="pairs (clo) or sequences (sft) per rank per forward pass")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step")
    learning_rate: float = option(1e-5, help="peak learning rate")
    epochs: float = option(3.0, help="passes over the data (when --train_steps is -1 or 0)")
    train_steps: int = option(-1, help="optimizer steps; -1 or 0: from --epochs (epochs x the optimizer steps "
                              "of one pass over the data, rounded up)")
    lr_scheduler: str = option("cosine", help="HF scheduler name (cosine, linear, constant_with_warmup, ...)")
    warmup_steps: float = option(0.03, help="linear warm-up in optimizer steps, a value below 1 a fraction of the run",
                                 aliases=["--warmup_ratio"])
    weight_decay: float = option(0.0, help="AdamW weight decay")
    seed: int = option(42, help="seed of initialisation-free randomness (data order)")
    log_every: int = option(10, help="optimizer steps between log lines")
    save_every: int = option(200, help="optimizer steps between checkpoints (0: only at the end)")
    save_total_limit: int = option(2, help="checkpoints kept")
    bf16: bool = option(False, help="bfloat16 mixed precision (GPU)")
    gradient_checkpointing: bool = option(False, help="recompute activations in backward (less memory)")
    heldout_dir: Optional[str] = option(None, help="held-out triples directory whose chosen-response NLL (source and "
                                                   "target language) is measured before and after training",
                                        aliases=["--eval_data"])
    eval_batch_size: int = option(8, help="pairs per batch for reference log-probs and evaluation")
    deepspeed: Optional[str] = option(None, help="DeepSpeed config JSON passed to the HF Trainer (ZeRO for "
                                      "full-parameter SFT of 7B+ models on GPUs)")
    use_cpu: bool = option(False, help="train on CPU even if a GPU is available")
    resume: str = option("auto", help=resume_help())
    allow_change: list = option(default_factory=list, repeatable=True, type=str,
                                help=allow_change_help(MEANING_KEYS, RUN_RECORD))
    force: bool = option(False, help="delete an existing OUTPUT_DIR first (a fresh run in its place); only a "
                                     "clo-train run directory holding nothing else is deleted")
    report_to: list = option(default_factory=list, repeatable=True, type=str, help=report_to_help())
    tensorboard_dir: str = option("", help="where --report_to tensorboard writes its event files (default: "
                                           "<output_dir>/tensorboard)")
    quiet: bool = option(False, help="no progress bars and no log lines (the libraries' too); a resumed run still "
                                      "says which checkpoint it continues from")


# ----------------------------------------------------------------------------------------------
# datasets


class PairDataset:
    """CLO items: the four encoded sequences of a pair and their reference log-probs."""

    def __init__(self, sequences: list[list[EncodedSequence]], reference: np.ndarray):
        if len(sequences) != len(reference):
            raise ValueError("one reference row per pair")
        self.sequences, self.reference = sequences, reference

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict:
        return {"sequences": self.sequences[i], "reference": self.reference[i]}


class SequenceDataset:
    """SFT items: one encoded (prompt, response) sequence."""

    def __init__(self, sequences: list[EncodedSequence]):
        self.sequences = sequences

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict:
        return {"sequences": [self.sequences[i]]}


class Collator:
    """Pads every item's sequences into one batch; CLO rows are pair-major in COLUMNS order."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        import torch

        batch = pad_sequences([s for item in items for s in item["sequences"]], self.pad_id)
        if "reference" in items[0]:
            batch["reference"] = torch.from_numpy(np.stack([item["reference"] for item in items]))
        return batch


def encode_pairs(encoder: Tokenizer, triples: TripleSet, indices: np.ndarray, max_length: int
                 ) -> tuple[list[list[EncodedSequence]], int]:
    """The four sequences of each selected pair, and how many sequences were truncated."""
    out, truncated = [], 0
    for i in indices:
        seqs = [encode_prompt_response(encoder, p, r, max_length) for p, r in pair_sequences(triples.pairs[i])]
        truncated += sum(s.truncated for s in seqs)
        out.append(seqs)
    return out, truncated


def sft_sequences(pair_seqs: list[list[EncodedSequence]], languages: str) -> list[EncodedSequence]:
    """SFT data from the same pairs: target chosen (column 2), source chosen (column 0), or both."""
    columns = {"target": (2,), "source": (0,), "both": (0, 2)}.get(languages)
    if columns is None:
        raise ChatflowError(f"--sft_languages must be 'target', 'source' or 'both', got {languages!r}")
    return [seqs[c] for seqs in pair_seqs for c in columns]


# ----------------------------------------------------------------------------------------------
# the trainer


def _make_trainer_class():
    import torch
    from transformers import Trainer, TrainerCallback

    class CLOTrainer(SavesTokenizerFiles, Trainer):
        """HF Trainer with the CLO / SFT loss; per-term metrics are averaged into every log line."""

        loss_is_scaled_for_ga = False   # compute_loss returns a per-micro-batch mean

        def __init__(self, *args, objective: str, lam: float, beta: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.objective, self.lam, self.beta = objective, lam, beta
            self._sums: dict[str, float] = {}
            self._count = 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, response = inputs["input_ids"], inputs["response_mask"]
            outputs = model(input_ids=ids, attention_mask=inputs["attention_mask"])
            logp, n_tokens = sequence_logps(outputs.logits, ids, response)
            if self.objective == "clo":
                per_pair = logp.view(-1, 4)
                ref = inputs["reference"]
                is_target = torch.tensor([False, True], device=logp.device).repeat(per_pair.shape[0])
                terms = clo_loss(per_pair[:, [0, 2]].reshape(-1), per_pair[:, [1, 3]].reshape(-1),
                                 ref[:, [0, 2]].reshape(-1), ref[:, [1, 3]].reshape(-1),
                                 n_tokens.view(-1, 4)[:, [0, 2]].reshape(-1), is_target, self.lam, self.beta)
                loss, metrics = terms.loss, terms.metrics(is_target)
            else:
                loss = -logp.sum() / n_tokens.sum().clamp_min(1)
                metrics = {"nll": loss.item()}
            metrics.pop("loss", None)   # the Trainer logs its own running loss
            for key, value in metrics.items():
                self._sums[key] = self._sums.get(key, 0.0) + value
            self._count += 1
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, start_time=None):
            if "loss" in logs and self._count:
                logs.update({k: v / self._count for k, v in self._sums.items()})
                self._sums, self._count = {}, 0
            super().log(logs, start_time)

    class LogCallback(TrainerCallback):
        """Every log event as one record of the run log (which only the main process has)."""

        def __init__(self, run_log: RunLog | None, console: Console | None = None):
            self.run_log, self.console = run_log, console

        def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
            if self.console is not None:
                self.console.total = state.max_steps
                self.console.start(state.global_step)
            if state.global_step > 0:       # resumed: this run's learning rate, not the checkpoint's
                apply_resumed_settings(optimizer, lr_scheduler, args.learning_rate)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.run_log is not None and logs:
                self.run_log.add({"step": state.global_step, "epoch": state.epoch, **logs})

    return CLOTrainer, LogCallback


# ----------------------------------------------------------------------------------------------
# evaluation


def response_nll(model, encoder: Tokenizer, triples: TripleSet, max_length: int, batch_size: int = 8,
                 limit: int | None = None) -> dict[str, float]:
    """Token-mean NLL of the chosen responses: ``source_nll`` (y_en | x_en), ``target_nll`` (y_l | x_l)."""
    import torch

    pairs = triples.pairs[:limit]
    sums = {"source": [0.0, 0.0], "target": [0.0, 0.0]}
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            seqs, names = [], []
            for pair in pairs[start:start + batch_size]:
                seqs.append(encode_prompt_response(encoder, pair.source_prompt, pair.source_response, max_length))
                seqs.append(encode_prompt_response(encoder, pair.target_prompt, pair.target_response, max_length))
                names += ["source", "target"]
            batch = {k: v.to(device) for k, v in pad_sequences(seqs, encoder.padding_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logp, n = sequence_logps(logits, batch["input_ids"], batch["response_mask"])
            for name, lp, count in zip(names, logp.tolist(), n.tolist()):
                sums[name][0] -= lp
                sums[name][1] += count
    model.train(was_training)
    return {f"{name}_nll": total / max(count, 1) for name, (total, count) in sums.items()} | {"pairs": len(pairs)}


# ----------------------------------------------------------------------------------------------


def _check_options(options: CLOTrainOptions) -> str:
    """Refuse impossible settings before anything is loaded; returns the trainable-parameter mode."""
    if options.objective not in ("clo", "sft"):
        raise ChatflowError(f"--objective must be 'clo' or 'sft', got {options.objective!r}")
    if not 0.0 <= options.lam <= 1.0:
        raise ChatflowError(f"--lam must be in [0, 1], got {options.lam}")
    if options.beta <= 0:
        raise ChatflowError(f"--beta must be positive, got {options.beta}")
    for name in ("micro_batch_size", "gradient_accumulation_steps", "log_every", "eval_batch_size"):
        if getattr(options, name) <= 0:
            raise ChatflowError(f"--{name} must be positive, got {getattr(options, name)}")
    if options.train_steps < -1:
        raise ChatflowError(f"--train_steps must be positive, or -1 or 0 (from --epochs), got {options.train_steps}")
    if options.train_steps <= 0 and options.epochs <= 0:
        raise ChatflowError(f"--epochs must be positive when --train_steps is {options.train_steps}, got {options.epochs}")
    if options.save_every < 0:
        raise ChatflowError(f"--save_every must be 0 (only at the end) or positive, got {options.save_every}")
    warmup_steps(options.warmup_steps, max(options.train_steps, 0))     # checks it
    parse_report_to(options.report_to)
    if not (Path(options.model_path) / "config.json").is_file():
        raise ChatflowError(f"{options.model_path}: not a HuggingFace model directory (no config.json)")
    if options.trainable == "auto":
        return "attention" if options.objective == "clo" else "all"
    return options.trainable


def _settings(options: CLOTrainOptions) -> dict:
    """The settings a resumed run must keep or may change, as the run record holds them (-1 and 0 steps are
    one setting)."""
    settings = {k: getattr(options, k) for k in RESUME_INVARIANTS + MEANING_KEYS}
    settings["train_steps"] = max(settings["train_steps"], 0) or -1
    return settings


def _start(options: CLOTrainOptions, out: Path, record: RunRecord) -> RunStart:
    """Apply --resume to OUTPUT_DIR (``final/`` is written last, complete: its presence means the run has
    finished); with --force (OUTPUT_DIR already deleted by the main process) the run starts fresh."""
    if options.force:
        record.check_names(options.allow_change)
        return RunStart(checkpoint=None, step=0, finished=False)
    return start_run(options.resume, out, out, out / FINAL_DIR, out / FINAL_DIR / "config.json",
                     record, _settings(options), elsewhere="another --output_dir, or --force to replace the run",
                     allowed=options.allow_change)


def _datasets(options: CLOTrainOptions, triples: TripleSet, indices: np.ndarray, encoder: Tokenizer,
              progress: bool):
    """The training items (CLO pairs with their cached reference log-probs, or SFT sequences), the
    number of truncated sequences, and what the reference cache did (None for SFT)."""
    pair_seqs, truncated = encode_pairs(encoder, triples, indices, options.max_length)
    if options.objective == "sft":
        return SequenceDataset(sft_sequences(pair_seqs, options.sft_languages)), truncated, None
    cache = ReferenceCache(triples, Path(options.model_path), options.max_length, dtype="float32")
    if is_main_process():
        device = "cpu" if options.use_cpu else "auto"
        reference = cache.ensure(indices, batch_size=options.eval_batch_size, device=device, progress=progress)
    else:
        reference = wait_for_cache(cache, indices)
    reference_info = {"cache": str(cache.path), "computed_pairs": cache.computed_pairs}
    return PairDataset(pair_seqs, reference), truncated, reference_info


def _load_model(options: CLOTrainOptions, trainable: str):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(options.model_path, dtype=torch.float32)
    counts = select_trainable(model, trainable)
    if options.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, counts


def _evaluate_before(options: CLOTrainOptions, out: Path, model, encoder: Tokenizer, eval_set: TripleSet | None,
                     start: RunStart) -> dict:
    """Held-out NLL of the start model: measured by a fresh run (and kept in eval.json), read back by a
    resumed one."""
    evaluation = {}
    if start.checkpoint is not None:
        previous = out / EVAL_JSON
        if previous.is_file():
            evaluation["before"] = json.loads(previous.read_text(encoding="utf-8")).get("before")
    elif eval_set is not None and is_main_process():
        evaluation["before"] = response_nll(model, encoder, eval_set, options.max_length, options.eval_batch_size)
        with atomic_file(out / EVAL_JSON, encoding="utf-8") as handle:   # kept for a resumed run
            json.dump(evaluation, handle, indent=2)
    return evaluation


def _training_arguments(options: CLOTrainOptions, out: Path, progress: bool):
    from transformers import TrainingArguments

    steps = options.train_steps if options.train_steps > 0 else -1
    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=options.micro_batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps, learning_rate=options.learning_rate,
        num_train_epochs=options.epochs, max_steps=steps, lr_scheduler_type=options.lr_scheduler,
        warmup_steps=options.warmup_steps if options.warmup_steps < 1 else int(options.warmup_steps),  # < 1: a ratio
        weight_decay=options.weight_decay, seed=options.seed, data_seed=options.seed,
        logging_steps=options.log_every, save_strategy="steps",
        save_steps=options.save_every or (steps if steps > 0 else 2 ** 31 - 1),   # the last step is always saved
        save_total_limit=options.save_total_limit, bf16=options.bf16, use_cpu=options.use_cpu,
        deepspeed=options.deepspeed, remove_unused_columns=False, report_to="none", dataloader_num_workers=0,
        disable_tqdm=not progress, save_only_model=False)


def _finish(trainer, options: CLOTrainOptions, out: Path, encoder: Tokenizer, eval_set: TripleSet | None,
            evaluation: dict, summary: dict) -> dict:
    """Held-out NLL of the trained model (main process), then the final model, renamed into place complete."""
    if eval_set is not None and is_main_process():
        evaluation["after"] = response_nll(trainer.model, encoder, eval_set, options.max_length,
                                           options.eval_batch_size)
        evaluation["heldout_dir"] = str(options.heldout_dir)
        with atomic_file(out / EVAL_JSON, encoding="utf-8") as handle:
            json.dump(evaluation, handle, indent=2)
        summary["eval"] = evaluation
    save_final_model(trainer, out / FINAL_DIR)
    return summary


def run_training(options: CLOTrainOptions, callbacks: list | None = None) -> dict:
    """Train as ``chatflow clo-train`` does; returns the run summary. ``callbacks`` are extra
    ``TrainerCallback``s (tests use one to interrupt a run)."""
    options = replace(options, model_path=str(local_model(options.model_path, "--model_path")))   # a Hub id: the local cache's
    trainable = _check_options(options)
    if options.quiet:
        quiet_libraries()
    triples = load_triples(options.data_dir)
    n_pairs = len(triples) if options.max_pairs is None else options.max_pairs
    if n_pairs < 1 or n_pairs > len(triples):
        raise ChatflowError(f"--max_pairs {options.max_pairs}: the data has {len(triples)} pairs")
    out = Path(options.output_dir)
    check_not_input(out, [options.model_path, options.data_dir, options.heldout_dir], what="--output_dir")
    if not options.force:
        _refuse_old_layout(out)
    with run_directory(out, RUN_KIND, replace=options.force):
        try:
            return _run_training(options, callbacks, triples, n_pairs, trainable, out)
        except Exception as exc:     # a full or read-only disk while the Trainer saves: no traceback
            problem = disk_error(exc, out)
            if problem is None:
                raise
            raise problem from None


def _refuse_old_layout(out: Path) -> None:
    """A run folder written before clo-train shared chatflow train's layout is neither resumed nor touched: its
    checkpoints are Trainer checkpoints under ``checkpoints/``, its final model ``model/``."""
    old = [name for name in OLD_LAYOUT if (out / name).exists()]
    if old:
        final = f"; to train its final model further, give --model_path {out / 'model'}" if "model" in old else ""
        raise ChatflowError(f"{out} is a clo-train run folder of the older layout ({', '.join(old)}); this version "
                            f"writes {RUN_RECORD}, checkpoint-N/ and {FINAL_DIR}/ as chatflow train does and does not "
                            f"resume it: use another --output_dir, or --force to replace it{final}")


def _run_training(options: CLOTrainOptions, callbacks, triples: TripleSet, n_pairs: int, trainable: str,
                  out: Path) -> dict:
    record = RunRecord(out / RUN_RECORD, RESUME_INVARIANTS, section="settings", changeable=MEANING_KEYS)
    start = _start(options, out, record)
    if start.finished:   # its records are left as they are
        return dict(record.read() or {}, global_step=start.step if start.checkpoint else None,
                    already_finished=True, model=str(out / FINAL_DIR))

    encoder = load_tokenizer(Path(options.model_path))
    progress = not options.quiet and is_main_process()
    dataset, truncated, reference_info = _datasets(options, triples, np.arange(n_pairs), encoder, progress)
    model, counts = _load_model(options, trainable)
    eval_set = load_triples(options.heldout_dir) if options.heldout_dir else None
    run = {"settings": _settings(options), "trainable_mode": trainable, "parameters": counts, "pairs": int(n_pairs),
           "items": len(dataset), "truncated_sequences": truncated, "data_sha256": triples.sha256,
           "source_lang": triples.source_lang, "target_lang": triples.target_lang, "reference": reference_info}
    with contextlib.ExitStack() as stack:
        run_log, console = None, None
        if is_main_process():
            record.write(run, step=start.step, changes=start.changes)
            console = Console(0) if progress else None
            trackers = Trackers(parse_report_to(options.report_to), out, config=run, start_step=start.step,
                                tensorboard_dir=options.tensorboard_dir or None)
            stack.callback(trackers.close)
            run_log = RunLog(out / LOG_JSONL, sinks=[s for s in (console, trackers) if s is not None])
            run_log.restart_at(start.step)
        evaluation = _evaluate_before(options, out, model, encoder, eval_set, start)

        trainer_cls, log_callback = _make_trainer_class()
        stack.enter_context(deepspeed_only_if_used(bool(options.deepspeed)))
        trainer = trainer_cls(model=model, args=_training_arguments(options, out, progress), train_dataset=dataset,
                              data_collator=Collator(encoder.padding_id),
                              callbacks=[log_callback(run_log, console)] + list(callbacks or []),
                              objective=options.objective, lam=options.lam, beta=options.beta)
        show_progress(trainer, console)
        trainer.tokenizer_files = TokenizerFiles.read(options.model_path)
        result = trainer.train(resume_from_checkpoint=start.checkpoint)
        summary = dict(run, global_step=trainer.state.global_step, train_loss=result.training_loss)
        if trainer.state.global_step < trainer.state.max_steps:   # stopped early (callback): no final model
            summary["stopped_early"] = True
            return summary
        return _finish(trainer, options, out, encoder, eval_set, evaluation, summary)


def run_clo_train(options: CLOTrainOptions) -> dict:
    """Train a HuggingFace causal LM with the CLO objective (or its SFT baseline) on preference triples, and
    print one line: steps, training loss and the held-out NLL before and after (rank 0)."""
    summary = run_training(options)
    leave_process_group()   # not on an error: the peers may never reach the barrier; torchrun stops them
    if not is_main_process():
        return summary
    if summary.get("already_finished"):
        steps = f" ({summary['global_step']} steps)" if summary.get("global_step") is not None else ""
        print(f"{options.output_dir}: finished{steps}; the final model is {summary['model']}")
        return summary
    line = (f"{options.output_dir}: {options.objective} on {summary['items']} items, "
            f"{summary['global_step']} steps, train loss {summary['train_loss']:.4f}")
    if "eval" in summary:
        b, a = summary["eval"].get("before") or {}, summary["eval"]["after"]
        line += "; eval NLL " + ", ".join(
            f"{k.split('_')[0]} {b.get(k, float('nan')):.4f} -> {a[k]:.4f}" for k in ("target_nll", "source_nll"))
    print(line)
    return summary
