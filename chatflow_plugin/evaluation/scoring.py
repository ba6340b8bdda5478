"""Batched log-likelihood of answer continuations under a HuggingFace causal LM.

What is scored: for a context ending in the answer cue (``Answer:``, ``答案：`` ...) and the
continuations ``" A" ... " D"`` (or ``"A" ... "D"``), the summed log-probability of each
continuation's tokens; the prediction is the arg-max (ties go to the earlier letter). A continuation
may also be a token id: its log-probability at the position after the context's own tokens (how
C-Eval's and CMMLU's reference code read ``▁A`` or ``A``). Tokens are split
as in lm-evaluation-harness: encode ``context + continuation`` and ``context``, and the continuation
is what follows the context's tokens (trailing spaces of the context move to the continuation). With
a LLaMA tokenizer every letter continuation is one token (``▁A`` after a space, ``A`` otherwise).

A tokenizer that cannot encode a letter as one token (or merges it with the cue) is handled, not
refused: the scored continuation is every token after the longest common prefix with the context,
and the log-probabilities of all of them are summed. Such questions are counted in
``ScoreStats.multi_token_questions`` and reported, since multi-token letters make the comparison
between letters depend on more than one prediction.

Speed: when all continuations are single tokens that extend the context (the usual case), one forward
pass over the context gives all four log-probabilities (4x fewer tokens than scoring each choice);
the header and exemplars that all questions of a subject share are run once and their key/value cache
reused for every batch of that subject (``prefixes``); rows are sorted by length, left-padded with
explicit position ids, and only the last positions' logits are materialised (``logits_to_keep``), so
memory does not grow with vocabulary x sequence length. None of this changes the scores (tested
against an unbatched full-vocabulary reference and lm-evaluation-harness).
"""
from __future__ import annotations

import copy
import inspect
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ChatflowError


@dataclass
class ScoreStats:
    questions: int = 0
    single_token_questions: int = 0     # scored from one forward pass over the context
    multi_token_questions: int = 0      # some continuation is not one token extending the context
    truncated_rows: int = 0             # left-truncated to max_length
    truncated_questions: int = 0        # questions with at least one truncated row
    shared_prefix_rows: int = 0         # rows whose few-shot prefix came from a cached forward pass
    prefix_forward_passes: int = 0      # forward passes over a shared prefix (one per prefix)
    forward_passes: int = 0
    tokens: int = 0                     # non-padding tokens run through the model
    seconds_tokenize: float = 0.0
    seconds_model: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Row:
    request: int
    input_ids: list[int]
    readouts: list[tuple[int, list[int]]] = field(default_factory=list)  # (choice, targets at the last positions)
    prefix: tuple[int, ...] = ()   # leading input_ids shared with other rows, computed once and cached


def encode(tokenizer, text: str, add_bos: bool) -> list[int]:
    """Token ids of ``text``, with BOS first if ``add_bos`` (no other special tokens; never warns about length)."""
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    return bos + tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def split_continuation(tokenizer, context: str, continuation: str, add_bos: bool,
                       _context_ids: dict | None = None) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness splits them, robust to merges at the seam.

    ``_context_ids``: a dict memoising the context's encoding across the continuations of one question.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(tokenizer, context + continuation, add_bos)
    if _context_ids is not None and context in _context_ids:
        ctx = _context_ids[context]
    else:
        ctx = encode(tokenizer, context, add_bos)
        if _context_ids is not None:
            _context_ids[context] = ctx
    k = len(ctx)
    if whole[:k] != ctx:   # the continuation merged with the context's last token(s): score from the seam
        k = next(i for i, (a, b) in enumerate(zip(whole, ctx)) if a != b)
    if k >= len(whole):
        raise ChatflowError(f"continuation {continuation!r} adds no token after the context ending "
                            f"{context[-30:]!r}; the tokenizer cannot score it")
    return whole[:k], whole[k:]


def _logits_kwarg(model) -> str | None:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return name
    return None


CACHE_KWARGS = ("cache", "past_key_values")   # transformers >= 5.24 names it ``cache``; earlier releases
                                               # ``past_key_values`` (still accepted there, deprecated)


def cache_kwarg(model) -> str | None:
    """The forward's key/value-cache keyword (``cache`` or ``past_key_values``), or None if it has none."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((name for name in CACHE_KWARGS if name in params), None)


def output_cache(output) -> Any:
    """The key/value cache a forward returned, under whichever name this transformers release uses."""
    for name in CACHE_KWARGS:
        cache = getattr(output, name, None)
        if cache is not None:
            return cache
    return None


def context_length(model, max_length: int | None = None) -> int:
    """``max_length`` if given, else the model's ``max_position_embeddings`` (4096 if it has none)."""
    config = getattr(model, "config", None)
    return max_length or getattr(config, "max_position_embeddings", None) or 4096


def model_device(model) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


class LetterScorer:
    """Scores (context, continuations) requests with ``model``; see the module docstring for the method."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, max_length: int | None = None,
                 add_bos: bool = True, progress: bool = False, share_prefix: bool = True):
        if batch_size < 1:
            raise ChatflowError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.add_bos, self.progress = batch_size, add_bos, progress
        self.max_length = context_length(model, max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0)
        self.keep_kwarg = _logits_kwarg(model)
        if self.keep_kwarg is None:
            warnings.warn(f"{type(model).__name__}.forward takes neither logits_to_keep nor num_logits_to_keep: "
                          "logits of every position are computed (same scores, more memory)", stacklevel=2)
        self.device = model_device(model)
        self.cache_kwarg = cache_kwarg(model)
        self.share_prefix = share_prefix and self.cache_kwarg is not None
        if share_prefix and self.cache_kwarg is None:
            warnings.warn(f"{type(model).__name__}.forward takes no key/value cache ({' or '.join(CACHE_KWARGS)}): "
                          "few-shot prefixes are recomputed for every question (same scores, slower)", stacklevel=2)
        self._prefix_ids: dict[str, list[int]] = {}
        self._warned_cache = False
        self.stats = ScoreStats()

    def _attach_prefix(self, row: _Row, prefix_text: str) -> None:
        """Mark ``row``'s leading tokens as the shared prefix if they are exactly ``prefix_text``'s tokens."""
        ids = self._prefix_ids.get(prefix_text)
        if ids is None:
            ids = self._prefix_ids[prefix_text] = encode(self.tokenizer, prefix_text, self.add_bos)
        n = len(ids)
        longest = max(len(t) for _, t in row.readouts)
        # the read-out positions must lie after the prefix; a seam merge or truncation disables sharing
        if n and len(row.input_ids) - n >= longest and row.input_ids[:n] == ids:
            row.prefix = tuple(ids)

    def _rows(self, index: int, context: str, continuations: Sequence[str | int]) -> list[_Row]:
        if all(isinstance(c, int) for c in continuations):   # token ids read at the position after the context
            self.stats.single_token_questions += 1
            return [_Row(index, encode(self.tokenizer, context, self.add_bos),
                         [(j, [c]) for j, c in enumerate(continuations)])]
        memo: dict = {}
        pairs = [split_continuation(self.tokenizer, context, c, self.add_bos, memo) for c in continuations]
        ctx0 = pairs[0][0]
        if all(len(cont) == 1 and ctx == ctx0 for ctx, cont in pairs):
            self.stats.single_token_questions += 1
            return [_Row(index, list(ctx0), [(j, cont) for j, (_, cont) in enumerate(pairs)])]
        self.stats.multi_token_questions += 1
        return [_Row(index, (ctx + cont)[:-1], [(j, cont)]) for j, (ctx, cont) in enumerate(pairs)]

    def _truncate(self, row: _Row) -> bool:
        cut = len(row.input_ids) > self.max_length
        if cut:
            row.input_ids = row.input_ids[-self.max_length:]
            self.stats.truncated_rows += 1
        longest = max(len(t) for _, t in row.readouts)
        if longest > len(row.input_ids):
            raise ChatflowError(f"max_length {self.max_length} is shorter than a continuation ({longest} tokens)")
        return cut

    @torch.inference_mode()
    def _prefix_cache(self, prefix: tuple[int, ...]):
        out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True,
                         **({self.keep_kwarg: 1} if self.keep_kwarg else {}))
        self.stats.prefix_forward_passes += 1
        self.stats.tokens += len(prefix)
        cache = output_cache(out)
        if hasattr(cache, "batch_repeat_interleave"):
            return cache
        if not self._warned_cache:
            self._warned_cache = True
            warnings.warn(f"{type(self.model).__name__} returned a key/value cache of type {type(cache).__name__}, "
                          "which cannot be repeated over a batch: few-shot prefixes are recomputed for every "
                          "question (same scores, slower)", stacklevel=2)
        return None

    @torch.inference_mode()
    def _forward(self, rows: list[_Row], scores: np.ndarray, prefix_cache=None, prefix_len: int = 0) -> None:
        """One batch; with ``prefix_cache`` the rows' first ``prefix_len`` tokens come from the cache."""
        suffixes = [r.input_ids[prefix_len:] for r in rows]
        width = max(len(x) for x in suffixes)
        keep = max(len(t) for r in rows for _, t in r.readouts)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for b, x in enumerate(suffixes):   # left padding: every row ends at the last column
            ids[b, width - len(x):] = torch.tensor(x)
            mask[b, prefix_len + width - len(x):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix_len:]
        kwargs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device),
                  "position_ids": positions.to(self.device)}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)   # the forward appends to the cache it is given
            cache.batch_repeat_interleave(len(rows))
            kwargs.update({self.cache_kwarg: cache, "use_cache": True})
            self.stats.shared_prefix_rows += len(rows)
        if self.keep_kwarg:
            kwargs[self.keep_kwarg] = keep
        out = self.model(**kwargs)
        logits = out.logits if hasattr(out, "logits") else out[0]
        logprobs = logits[:, -keep:, :].float().log_softmax(-1).cpu()
        for b, r in enumerate(rows):
            for choice, targets in r.readouts:
                n = len(targets)
                picked = logprobs[b, keep - n:, :].gather(-1, torch.tensor(targets).unsqueeze(-1))
                scores[r.request, choice] += float(picked.sum())
        self.stats.forward_passes += 1
        self.stats.tokens += int(mask[:, prefix_len:].sum())

    def loglikelihoods(self, requests: Sequence[tuple[str, Sequence[str]]], desc: str = "scoring",
                       prefixes: Sequence[str] | None = None) -> np.ndarray:
        """(len(requests), n_choices) summed log-probabilities of each continuation given its context.

        ``prefixes[i]``, a leading part of request i's context shared by many requests (the header and
        exemplars of a subject), is run through the model once and its key/value cache reused; the
        scores are the same as without it.
        """
        if not requests:
            return np.zeros((0, 0))
        n_choices = len(requests[0][1])
        t0 = time.perf_counter()
        rows: list[_Row] = []
        for i, (context, continuations) in enumerate(requests):
            if len(continuations) != n_choices:
                raise ChatflowError(f"request {i} has {len(continuations)} continuations, expected {n_choices}")
            rows.extend(self._rows(i, context, continuations))
        truncated = {r.request for r in rows if self._truncate(r)}
        self.stats.truncated_questions += len(truncated)
        for r in rows:
            if prefixes is not None and self.share_prefix and prefixes[r.request]:
                self._attach_prefix(r, prefixes[r.request])
        self.stats.questions += len(requests)
        self.stats.seconds_tokenize += time.perf_counter() - t0
        # Rows grouped by shared prefix; longest first within a group: the first batch shows an
        # out-of-memory at once, and similar lengths pad little.
        groups: dict[tuple[int, ...], list[_Row]] = {}
        for r in sorted(rows, key=lambda r: -len(r.input_ids)):
            groups.setdefault(r.prefix, []).append(r)
        scores = np.zeros((len(requests), n_choices), dtype=np.float64)
        t0 = time.perf_counter()
        from tqdm.auto import tqdm

        with tqdm(total=len(requests), desc=desc, unit="q", disable=not self.progress, leave=False) as bar:
            done: set[int] = set()
            for prefix, group in groups.items():
                cache = self._prefix_cache(prefix) if prefix else None
                for start in range(0, len(group), self.batch_size):
                    batch = group[start:start + self.batch_size]
                    self._forward(batch, scores, cache, len(prefix) if cache is not None else 0)
                    new = {r.request for r in batch} - done
                    done |= new
                    bar.update(len(new))
                del cache
        self.stats.seconds_model += time.perf_counter() - t0
        return scores


def predictions(scores: np.ndarray) -> np.ndarray:
    """Index of the best continuation per row; ties go to the earliest (``np.argmax``)."""
    return np.argmax(scores, axis=1)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ChatflowError(f"--device {device}: no CUDA device is available")
    return device


DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Files a HuggingFace tokenizer is built from (besides tokenizer_config.json / special_tokens_map.json).
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt",
                         "spiece.model", "sentencepiece.bpe.model")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _tokenizer_error(path, exc: BaseException) -> ChatflowError:
    """What is wrong with the tokenizer files of ``path``, in its own terms (transformers' message names
    sentencepiece or tiktoken whenever it finds nothing it can build a tokenizer from)."""
    import json
    from pathlib import Path

    path = Path(path)
    present = [name for name in TOKENIZER_VOCAB_FILES if (path / name).is_file()]
    if not present:
        sources = [d for d in (path.parent / "final", path.parent.parent / "model")
                   if (d / "tokenizer.model").is_file() or (d / "tokenizer.json").is_file()]
        hint = f"; copy them from {sources[0]}, the final model of its run" if sources else ""
        return ChatflowError(f"{path}: no tokenizer files (none of {', '.join(TOKENIZER_VOCAB_FILES)}){hint}")
    if "tokenizer.json" in present:
        try:
            json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as bad:
            return ChatflowError(f"{path / 'tokenizer.json'}: not valid JSON ({bad}); the file is cut short or damaged")
    if "tokenizer.model" in present and "tokenizer.json" not in present:
        from ..tokenizer import load_sentencepiece

        try:
            load_sentencepiece(path / "tokenizer.model")
        except ChatflowError as bad:
            return bad
    return ChatflowError(f"{path}: cannot load its tokenizer from {', '.join(present)}: {_first_line(exc)}")


def load_model(path: str, device: str = "auto", dtype: str = "auto", device_map: str = ""):
    """(model, tokenizer) from a HuggingFace causal LM directory, in eval mode, offline.

    Errors name the directory (or file) and what is missing or damaged in it.
    """
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not Path(path).is_dir() or not (Path(path) / "config.json").is_file():
        raise ChatflowError(f"{path}: not a HuggingFace model directory (no config.json)")
    if dtype not in DTYPES:
        raise ChatflowError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    try:
        json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ChatflowError(f"{Path(path) / 'config.json'}: not valid JSON ({exc})") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:   # transformers raises OSError, ValueError, TypeError, tokenizers' Exception...
        raise _tokenizer_error(path, exc) from None
    torch_dtype = DTYPES[dtype]
    if torch_dtype == "auto" and resolve_device(device) == "cpu":
        torch_dtype = torch.float32   # half-precision matmuls on CPU are slow and imprecise
    import transformers

    # transformers < 4.56 spells the argument torch_dtype
    major_minor = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    kwargs: dict = {"dtype" if major_minor >= (4, 56) else "torch_dtype": torch_dtype, "local_files_only": True}
    if device_map:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as exc:   # also safetensors' SafetensorError for a weight file cut short
        weights = sorted(p.name for p in Path(path).iterdir()
                         if p.suffix == ".safetensors" or (p.suffix == ".bin" and p.name != "training_args.bin"))
        raise ChatflowError(f"{path}: cannot load the model " + (f"from {', '.join(weights)}" if weights else
                            "(no weight files)") + f": {_first_line(exc)}") from None
    if not device_map:
        model.to(resolve_device(device))
    model.eval()
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise ChatflowError(f"{path}: tokenizer has {len(tokenizer)} tokens but the embedding only "
                            f"{vocab} rows (a vocabulary expansion without resized weights?)")
    return model, tokenizer
