"""Greedy answer generation for the generation protocols (GAOKAO-Bench's objective questions).

Prompts are batched longest first with left padding and run through ``model.generate`` greedily. A
row stops at EOS, after its n-th stop text (``<eoa>``: the answer is complete; n is the number of
answers the question asks for), or when its token budget is spent. The budget is
``max_new_tokens``, shortened when the prompt leaves less room in the model's context; a prompt that
leaves fewer than ``min(max_new_tokens, 64, max_length // 2)`` positions is cut from the left to make
that room. Both are reported per answer (:class:`Generated`), never silently.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ChatflowError
from .scoring import encode, model_device

ANSWER_ROOM = 64   # positions a cut prompt leaves for the answer (or max_new_tokens if smaller)


@dataclass
class Generated:
    text: str             # the answer, up to and including the n-th stop text when it was written
    prompt_tokens: int    # tokens the model saw (after any cut)
    new_tokens: int
    budget: int           # tokens the answer was allowed
    cut: bool             # the prompt was cut from the left to leave room for the answer
    stopped: str          # "stop_text" | "eos" | "budget"


@dataclass
class GenerationStats:
    questions: int = 0
    new_tokens: int = 0
    cut_prompts: int = 0
    shortened_budgets: int = 0   # the context left less than max_new_tokens for the answer
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class _StopAfter:
    """Per-row stopping: the n-th ``stop_text`` in the generated part, or the row's budget spent."""

    def __init__(self, tokenizer, width: int, needs: Sequence[int], budgets: Sequence[int], stop_text: str):
        self.tokenizer, self.width, self.needs, self.budgets = tokenizer, width, list(needs), list(budgets)
        self.stop_text, self.stop_last = stop_text, stop_text[-1:]
        self._pieces: dict[int, str] = {}
        self.done = [False] * len(needs)

    def _piece(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self.tokenizer.decode([token])
        return piece

    def __call__(self, input_ids: torch.Tensor, scores=None, **kwargs) -> torch.Tensor:
        new = input_ids.shape[1] - self.width
        for b in range(input_ids.shape[0]):
            if self.done[b]:
                continue
            if new >= self.budgets[b]:
                self.done[b] = True
            elif self.stop_text and self.stop_last in self._piece(int(input_ids[b, -1])):
                text = self.tokenizer.decode(input_ids[b, self.width:].tolist())
                self.done[b] = text.count(self.stop_text) >= self.needs[b]
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)


def _stopping_criteria(stop: _StopAfter):
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Criteria(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return stop(input_ids, scores)

    return StoppingCriteriaList([_Criteria()])


@contextlib.contextmanager
def _quiet_length_reminder():
    """Silence transformers' 'exceeded the model's predefined maximum length' reminder during a batch.

    A left-padded batch is as wide as its longest prompt plus the largest budget, which can pass
    ``max_position_embeddings``; no row does: positions follow each row's attention mask and every row
    stops at its own budget (prompt + answer <= max_length).
    """
    logger = logging.getLogger("transformers.generation.stopping_criteria")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _finish(tokenizer, ids: list[int], eos: int | None, need: int, budget: int, stop_text: str) -> tuple[str, str, int]:
    """(text, why it stopped, tokens) of one generated row."""
    stopped = "budget"
    if eos is not None and eos in ids:
        ids, stopped = ids[:ids.index(eos)], "eos"
    ids = ids[:budget]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if stop_text and text.count(stop_text) >= need:
        end = -1
        for _ in range(need):
            end = text.index(stop_text, end + 1)
        text, stopped = text[:end + len(stop_text)], "stop_text"
    return text, stopped, len(ids)


@dataclass
class PromptRow:
    ids: list[int]        # the prompt's tokens, after any cut
    cut: bool             # cut from the left to leave room for the answer
    budget: int           # answer tokens allowed: max_new_tokens, or what the context leaves


def prompt_rows(tokenizer: Any, prompts: Sequence[tuple[str, bool]], *, max_new_tokens: int, max_length: int,
                add_bos: bool = True) -> list[PromptRow]:
    """Tokenized prompts (text, already has the template's special tokens) fitted to ``max_length``.

    A prompt leaving fewer than ``min(max_new_tokens, 64, max_length // 2)`` positions is cut from the left
    to leave that many; the budget is whatever the context leaves, at most ``max_new_tokens``.
    """
    if max_length < 2 or max_new_tokens < 1:
        raise ChatflowError(f"generation needs max_length >= 2 and max_new_tokens >= 1 "
                            f"(got {max_length} and {max_new_tokens})")
    keep = max_length - min(max_new_tokens, ANSWER_ROOM, max_length // 2)
    rows = []
    for text, has_special in prompts:
        ids = encode(tokenizer, text, add_bos and not has_special)
        cut = len(ids) > keep
        ids = ids[-keep:] if cut else ids
        rows.append(PromptRow(ids, cut, min(max_new_tokens, max_length - len(ids))))
    return rows


def generate_answers(model: Any, tokenizer: Any, prompts: Sequence[tuple[str, bool]] | Sequence[PromptRow],
                     stop_after: Sequence[int], *, max_new_tokens: int, max_length: int, stop_text: str = "",
                     batch_size: int = 8, add_bos: bool = True, stats: GenerationStats | None = None,
                     progress: bool = False, desc: str = "generating") -> list[Generated]:
    """Greedy answers to ``prompts``: (text, has the template's special tokens) pairs or :func:`prompt_rows`."""
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    stats = stats if stats is not None else GenerationStats()
    t0 = time.perf_counter()
    if prompts and isinstance(prompts[0], PromptRow):
        rows = list(prompts)
    else:
        rows = prompt_rows(tokenizer, prompts, max_new_tokens=max_new_tokens, max_length=max_length, add_bos=add_bos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    eos = tokenizer.eos_token_id
    device = model_device(model)
    out: list[Generated | None] = [None] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].ids))
    with torch.inference_mode(), tqdm(total=len(rows), desc=desc, unit="q", disable=not progress, leave=False) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            width = max(len(rows[i].ids) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):
                ids = rows[i].ids
                input_ids[b, width - len(ids):] = torch.tensor(ids)
                mask[b, width - len(ids):] = 1
            budgets = [rows[i].budget for i in batch]
            stop = _StopAfter(tokenizer, width, [stop_after[i] for i in batch], budgets, stop_text)
            config = GenerationConfig(max_new_tokens=max(budgets), do_sample=False, pad_token_id=pad,
                                      eos_token_id=eos)
            with _quiet_length_reminder():
                generated = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                           generation_config=config, stopping_criteria=_stopping_criteria(stop))
            for b, i in enumerate(batch):
                row = rows[i]
                text, why, n = _finish(tokenizer, generated[b, width:].tolist(), eos, stop_after[i], row.budget,
                                       stop_text)
                out[i] = Generated(text, len(row.ids), n, row.budget, row.cut, why)
                stats.new_tokens += n
                stats.cut_prompts += int(row.cut)
                stats.shortened_budgets += int(row.budget < max_new_tokens)
            bar.update(len(batch))
    stats.questions += len(rows)
    stats.seconds += time.perf_counter() - t0
    return out   # type: ignore[return-value]
