"""Batched log-likelihood of answer continuations under a HuggingFace causal LM.

What is scored: for a context ending in the answer cue (``Answer:``, ``答案：`` ...) and the
continuations ``" A" ... " D"`` (or ``"A" ... "D"``, or longer answers), the summed log-probability of
each continuation's tokens; the prediction is the arg-max (ties go to the earlier one). A continuation
may also be a token id: its log-probability at the position after the context's own tokens (how
C-Eval's and CMMLU's reference code read ``▁A`` or ``A``). Tokens are split as in
lm-evaluation-harness: encode ``context + continuation`` and ``context``, and the continuation is what
follows the context's tokens (trailing spaces of the context move to the continuation). With a LLaMA
tokenizer every letter continuation is one token (``▁A`` after a space, ``A`` otherwise).

A tokenizer that cannot encode a letter as one token (or merges it with the cue) is handled, not
refused: the scored continuation is every token after the longest common prefix with the context,
and the log-probabilities of all of them are summed. Such questions are counted in
``ScoreStats.multi_token_questions`` and reported.

How the work is cut down (none of it changes a score beyond float rounding; the tests compare every
path with an unbatched full-vocabulary reference and with lm-evaluation-harness):

* **one row per question** when every continuation is one token extending the context: one forward
  pass gives all the log-probabilities (lm-evaluation-harness does the same with its logits cache);
  multi-token continuations take one row each, and their question's context is a shared prefix;
* **one forward per distinct prefix where it pays**: a prefix shared by several rows (a subject's
  header and exemplars; a question's context for its multi-token continuations) is run once and its
  key/value cache reused for every batch of those rows, when :class:`ForwardCost` estimates that
  cheaper than recomputing it in every row (``prefix_cache="auto"``; ``"always"``/``"never"`` force
  it); rows not worth caching are pooled and batched together;
* **batching by length**: rows sorted longest first, left-padded with explicit position ids;
* only the read-out positions' logits are computed (``logits_to_keep``), so memory does not grow
  with vocabulary x sequence length; every request is tokenized in one batched call and the
  log-probabilities are gathered for a whole batch at once (no per-question Python loop over tensors).
"""
from __future__ import annotations

import copy
import inspect
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ChatflowError

PREFIX_CACHE_MODES = ("auto", "always", "never")


@dataclass
class ScoreStats:
    questions: int = 0
    single_token_questions: int = 0     # scored from one forward pass over the context
    multi_token_questions: int = 0      # some continuation is not one token extending the context
    truncated_rows: int = 0             # left-truncated to max_length
    truncated_questions: int = 0        # questions with at least one truncated row
    shared_prefix_rows: int = 0         # rows whose prefix came from a cached forward pass
    prefix_forward_passes: int = 0      # forward passes over a shared prefix (one per cached prefix)
    prefixes_not_cached: int = 0        # shared prefixes the cost rule (or prefix_cache="never") recomputed per row
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


def encode_many(tokenizer, texts: Sequence[str], add_bos: bool) -> list[list[int]]:
    """:func:`encode` of every text, in one batched tokenizer call (the same ids as one call per text)."""
    if not texts:
        return []
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    return [bos + ids for ids in tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]]


def _seam(context: str, continuation: str) -> tuple[str, str]:
    """Trailing spaces of the context move to the continuation (lm-evaluation-harness)."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def _split(ctx: list[int], whole: list[int], context: str, continuation: str) -> tuple[list[int], list[int]]:
    k = len(ctx)
    if whole[:k] != ctx:   # the continuation merged with the context's last token(s): score from the seam
        k = next((i for i, (a, b) in enumerate(zip(whole, ctx)) if a != b), min(len(whole), k))
    if k >= len(whole):
        raise ChatflowError(f"continuation {continuation!r} adds no token after the context ending "
                            f"{context[-30:]!r}; the tokenizer cannot score it")
    return whole[:k], whole[k:]


def split_continuation(tokenizer, context: str, continuation: str, add_bos: bool) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness splits them, robust to merges at the seam."""
    context, continuation = _seam(context, continuation)
    ctx, whole = encode_many(tokenizer, [context, context + continuation], add_bos)
    return _split(ctx, whole, context, continuation)


def _accepts(model, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


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


@dataclass(frozen=True)
class ForwardCost:
    """Estimated cost (FLOPs) of forward passes, to decide whether computing a shared prefix once pays.

    Per input token ``2 x`` the parameters outside the embeddings (the matrix products); per (query,
    key) pair ``4 x hidden x layers`` (attention scores and values); per cached token copied into a
    batch row its keys and values in every layer, twice (repeated over the batch, then concatenated
    with the row's own), at ``COPY_FLOPS_PER_BYTE``; per forward call a fixed part plus reading every
    weight once (``CALL_FLOPS_PER_BYTE``: a call over few tokens is bound by memory, not arithmetic).
    The constants were measured on a 2-core CPU (a forward of one token of a 33M-parameter LLaMA costs
    what ~1.3 GFLOPs of large matrix products do; a byte copied what ~30 FLOPs do); the decision only
    needs their order of magnitude: a prefix longer than a few tokens and shared by several rows pays
    unless the model is so small that its calls cost more than its arithmetic.
    """
    per_token: float
    per_pair: float
    per_cached_token: float
    per_call: float

    COPY_FLOPS_PER_BYTE = 30.0
    CALL_FLOPS_PER_BYTE = 8.0
    CALL_FLOPS = 2.0e7

    @classmethod
    def of(cls, model) -> "ForwardCost | None":
        config = getattr(model, "config", None)
        try:
            hidden, layers = int(config.hidden_size), int(config.num_hidden_layers)
            heads = int(config.num_attention_heads)
            kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
            head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
            params = sum(p.numel() for p in model.parameters())
            embeddings = {id(m.weight): m.weight.numel() for m in (model.get_input_embeddings(),
                                                                     model.get_output_embeddings()) if m is not None}
            element = next(model.parameters()).element_size()
        except (AttributeError, TypeError, ValueError, StopIteration):
            return None
        body = max(params - sum(embeddings.values()), 1)
        return cls(per_token=2.0 * body, per_pair=4.0 * hidden * layers,
                   per_cached_token=2 * 2 * layers * kv_heads * head_dim * element * cls.COPY_FLOPS_PER_BYTE,
                   per_call=cls.CALL_FLOPS + params * element * cls.CALL_FLOPS_PER_BYTE)

    def plain(self, lengths: Sequence[int], batch_size: int) -> float:
        """Rows of these lengths, each computed whole (causal attention: n^2 / 2 pairs), batched with others."""
        return (sum(n * self.per_token + n * n / 2 * self.per_pair for n in lengths)
                + len(lengths) / batch_size * self.per_call)

    def cached(self, prefix: int, suffixes: Sequence[int], batch_size: int) -> float:
        """The prefix once (one call), then its own batches of rows attending to its cached keys and values."""
        return (prefix * self.per_token + prefix * prefix / 2 * self.per_pair + self.per_call
                + sum(n * self.per_token + (n * prefix + n * n / 2) * self.per_pair + prefix * self.per_cached_token
                      for n in suffixes)
                + math.ceil(len(suffixes) / batch_size) * self.per_call)

    def prefix_pays(self, prefix: int, suffixes: Sequence[int], batch_size: int) -> bool:
        return self.cached(prefix, suffixes, batch_size) < self.plain([prefix + n for n in suffixes], batch_size)


class LetterScorer:
    """Scores (context, continuations) requests with ``model``; see the module docstring for the method.

    ``max_length``: the longest input passed uncut (default: the model's ``max_position_embeddings``);
    a longer row is cut from the left and counted. ``prefix_cache``: ``auto`` (the cost rule),
    ``always`` or ``never``.
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 8, max_length: int | None = None,
                 add_bos: bool = True, progress: bool = False, prefix_cache: str = "auto"):
        if batch_size < 1:
            raise ChatflowError(f"batch_size must be >= 1, got {batch_size}")
        if prefix_cache not in PREFIX_CACHE_MODES:
            raise ChatflowError(f"prefix_cache must be one of {', '.join(PREFIX_CACHE_MODES)}, got {prefix_cache!r}")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.add_bos, self.progress = batch_size, add_bos, progress
        self.context = context_length(model)
        self.max_length = context_length(model, max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0)
        self.keep_kwarg = _logits_kwarg(model)
        if self.keep_kwarg is None:
            warnings.warn(f"{type(model).__name__}.forward takes neither logits_to_keep nor num_logits_to_keep: "
                          "logits of every position are computed (same scores, more memory)", stacklevel=2)
        self.device = model_device(model)
        self.cache_kwarg = cache_kwarg(model)
        self._use_cache_kwarg = _accepts(model, "use_cache")
        self.prefix_cache = prefix_cache if self.cache_kwarg is not None else "never"
        if prefix_cache != "never" and self.cache_kwarg is None:
            warnings.warn(f"{type(model).__name__}.forward takes no key/value cache ({' or '.join(CACHE_KWARGS)}): "
                          "shared prefixes are recomputed in every row (same scores, slower)", stacklevel=2)
        self.cost = ForwardCost.of(model)
        self._prefix_ids: dict[str, list[int]] = {}
        self._warned_cache = False
        self.stats = ScoreStats()

    @property
    def share_prefix(self) -> bool:
        """Whether shared prefixes may come from a key/value cache at all."""
        return self.prefix_cache != "never"

    # ------------------------------------------------------------------ rows

    def _rows(self, requests: Sequence[tuple[str, Sequence[str | int]]]) -> list[_Row]:
        """One row per question whose continuations are single tokens (or token ids), else one per continuation,
        sharing the question's context as their prefix; every text tokenized in one batched call."""
        texts: list[str] = []
        plans = []
        for context, continuations in requests:
            if all(isinstance(c, int) for c in continuations):
                plans.append((len(texts), None))
                texts.append(context)
                continue
            seams = [_seam(context, c) for c in continuations]
            start = len(texts)
            contexts = list(dict.fromkeys(ctx for ctx, _ in seams))
            texts += contexts + [ctx + cont for ctx, cont in seams]
            plans.append((start, (seams, contexts)))
        encoded = encode_many(self.tokenizer, texts, self.add_bos)
        rows: list[_Row] = []
        for index, ((context, continuations), (start, detail)) in enumerate(zip(requests, plans)):
            if detail is None:   # token ids read at the position after the context
                self.stats.single_token_questions += 1
                rows.append(_Row(index, encoded[start], [(j, [c]) for j, c in enumerate(continuations)]))
                continue
            seams, contexts = detail
            ctx_ids = {ctx: encoded[start + i] for i, ctx in enumerate(contexts)}
            wholes = encoded[start + len(contexts): start + len(contexts) + len(seams)]
            pairs = [_split(ctx_ids[ctx], whole, ctx, cont) for (ctx, cont), whole in zip(seams, wholes)]
            ctx0 = pairs[0][0]
            if all(len(cont) == 1 and ctx == ctx0 for ctx, cont in pairs):
                self.stats.single_token_questions += 1
                rows.append(_Row(index, list(ctx0), [(j, cont) for j, (_, cont) in enumerate(pairs)]))
                continue
            self.stats.multi_token_questions += 1
            for j, (ctx, cont) in enumerate(pairs):
                # the question's context (up to its last token, whose logits are read) is shared by its rows
                rows.append(_Row(index, (ctx + cont)[:-1], [(j, cont)], tuple(ctx[:-1]) if len(pairs) > 1 else ()))
        return rows

    def _truncate(self, row: _Row, limit: int) -> bool:
        cut = len(row.input_ids) > limit
        if cut:
            row.input_ids = row.input_ids[-limit:]
            row.prefix = ()   # its positions moved: nothing is shared
            self.stats.truncated_rows += 1
        longest = max(len(t) for _, t in row.readouts)
        if longest > len(row.input_ids):
            raise ChatflowError(f"max_length {limit} is shorter than a continuation ({longest} tokens)")
        return cut

    def _attach_prefix(self, row: _Row, prefix_text: str) -> None:
        """Mark ``row``'s leading tokens as the shared prefix if they are exactly ``prefix_text``'s tokens."""
        ids = self._prefix_ids.get(prefix_text)
        if ids is None:
            ids = self._prefix_ids[prefix_text] = encode(self.tokenizer, prefix_text, self.add_bos)
        n = len(ids)
        longest = max(len(t) for _, t in row.readouts)
        # the read-out positions must lie after the prefix; a seam merge disables sharing
        if n and len(row.input_ids) - n >= longest and row.input_ids[:n] == ids:
            row.prefix = tuple(ids)

    def _worth_caching(self, prefix: tuple[int, ...], rows: list[_Row]) -> bool:
        if not prefix or self.prefix_cache == "never":
            return False
        if self.prefix_cache == "always":
            return True
        if len(rows) < 2:
            return False
        if self.cost is None:   # a model whose size cannot be read: share whenever several rows do
            return True
        return self.cost.prefix_pays(len(prefix), [len(r.input_ids) - len(prefix) for r in rows], self.batch_size)

    # ------------------------------------------------------------------ model

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
                          "which cannot be repeated over a batch: shared prefixes are recomputed in every row "
                          "(same scores, slower)", stacklevel=2)
        return None

    @torch.inference_mode()
    def _forward(self, rows: list[_Row], scores: np.ndarray, prefix_cache=None, prefix_len: int = 0) -> None:
        """One batch; with ``prefix_cache`` the rows' first ``prefix_len`` tokens come from the cache."""
        suffixes = [r.input_ids[prefix_len:] for r in rows]
        lengths = np.fromiter((len(x) for x in suffixes), dtype=np.int64, count=len(rows))
        width = int(lengths.max())
        keep = max(len(t) for r in rows for _, t in r.readouts)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), prefix_len + width), dtype=np.int64)
        mask[:, :prefix_len] = 1
        for b, x in enumerate(suffixes):   # left padding: every row ends at the last column
            ids[b, width - len(x):] = x
            mask[b, prefix_len + width - len(x):] = 1
        positions = (mask.cumsum(-1) - 1).clip(min=0)[:, prefix_len:]
        kwargs = {"input_ids": torch.from_numpy(ids).to(self.device),
                  "attention_mask": torch.from_numpy(mask).to(self.device),
                  "position_ids": torch.from_numpy(positions).to(self.device)}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)   # the forward appends to the cache it is given
            cache.batch_repeat_interleave(len(rows))
            kwargs.update({self.cache_kwarg: cache, "use_cache": True})
            self.stats.shared_prefix_rows += len(rows)
        elif self._use_cache_kwarg:
            kwargs["use_cache"] = False   # no cache built for rows computed whole
        if self.keep_kwarg:
            kwargs[self.keep_kwarg] = keep
        out = self.model(**kwargs)
        logits = out.logits if hasattr(out, "logits") else out[0]
        logprobs = logits[:, -keep:, :].float().log_softmax(-1)
        # every read-out of the batch gathered at once: (row, position, token) -> (request, choice)
        b_idx, p_idx, t_idx, req, choice, = [], [], [], [], []
        for b, r in enumerate(rows):
            for j, targets in r.readouts:
                n = len(targets)
                b_idx += [b] * n
                p_idx += range(keep - n, keep)
                t_idx += targets
                req += [r.request] * n
                choice += [j] * n
        picked = logprobs[torch.tensor(b_idx), torch.tensor(p_idx), torch.tensor(t_idx)].double().cpu().numpy()
        np.add.at(scores, (np.array(req), np.array(choice)), picked)
        self.stats.forward_passes += 1
        self.stats.tokens += int(lengths.sum())

    def loglikelihoods(self, requests: Sequence[tuple[str, Sequence[str | int]]], desc: str = "scoring",
                       prefixes: Sequence[str] | None = None, max_length: int | None = None) -> np.ndarray:
        """(len(requests), n_choices) summed log-probabilities of each continuation given its context.

        ``prefixes[i]``, a leading part of request i's context shared by many requests (the header and
        exemplars of a subject), may be run through the model once and its key/value cache reused (see
        the cost rule); the scores are the same as without it. ``max_length`` overrides the scorer's
        cut length for this call.
        """
        if not requests:
            return np.zeros((0, 0))
        n_choices = len(requests[0][1])
        for i, (_, continuations) in enumerate(requests):
            if len(continuations) != n_choices:
                raise ChatflowError(f"request {i} has {len(continuations)} continuations, expected {n_choices}")
        limit = max_length or self.max_length
        t0 = time.perf_counter()
        rows = self._rows(requests)
        truncated = {r.request for r in rows if self._truncate(r, limit)}
        self.stats.truncated_questions += len(truncated)
        if prefixes is not None and self.share_prefix:
            for r in rows:
                if not r.prefix and prefixes[r.request] and r.request not in truncated:
                    self._attach_prefix(r, prefixes[r.request])
        self.stats.questions += len(requests)
        # Rows grouped by shared prefix; a group is cached when the cost rule says so, else its rows join the
        # pool batched by length. Longest first: the first batch shows an out-of-memory at once.
        groups: dict[tuple[int, ...], list[_Row]] = {}
        for r in rows:
            groups.setdefault(r.prefix, []).append(r)
        cached, pool = [], list(groups.pop((), []))
        for prefix, group in groups.items():
            if self.share_prefix and self._worth_caching(prefix, group):
                cached.append((prefix, sorted(group, key=lambda r: -len(r.input_ids))))
            else:
                self.stats.prefixes_not_cached += 1
                pool += group
        pool.sort(key=lambda r: -len(r.input_ids))
        self.stats.seconds_tokenize += time.perf_counter() - t0
        scores = np.zeros((len(requests), n_choices), dtype=np.float64)
        t0 = time.perf_counter()
        from tqdm.auto import tqdm

        with tqdm(total=len(rows), desc=desc, unit="row", disable=not self.progress, leave=False) as bar:
            for prefix, group in cached:
                cache = self._prefix_cache(prefix)
                for start in range(0, len(group), self.batch_size):
                    batch = group[start:start + self.batch_size]
                    self._forward(batch, scores, cache, len(prefix) if cache is not None else 0)
                    bar.update(len(batch))
                del cache
            for start in range(0, len(pool), self.batch_size):
                batch = pool[start:start + self.batch_size]
                self._forward(batch, scores)
                bar.update(len(batch))
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
