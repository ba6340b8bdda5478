"""One streamed reply of one model to a conversation, in that model's template.

Templates (``--template``):

* ``chatflow``: the format ChatFlow was trained on (:mod:`chatflow_plugin.data.formats`): earlier rounds as
  ``User: {q} Bot: {a}`` separated by newlines, the last question as ``### Instruction:\\n{q}### Response:``
  (see :func:`~chatflow_plugin.data.formats.render_chat_prompt`); the tokenizer adds BOS as configured. The
  answer ends at EOS or where the model starts a new turn (:data:`~chatflow_plugin.data.formats.CHAT_STOP_STRINGS`).
* ``chat_template``: the tokenizer's own chat template (``apply_chat_template`` with the generation
  prompt); the answer ends at EOS.
* ``auto`` (default): ``chat_template`` when the tokenizer has one, else ``chatflow``.

Sampling settings are the same for every model of an arena and recorded with every vote.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from ...errors import ChatflowError
from ...data.formats import CHAT_STOP_STRINGS, render_chat_prompt

TEMPLATES = ("auto", "chatflow", "chat_template")


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int = 512
    temperature: float = 0.7      # 0: greedy decoding
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    max_seconds: float = 120.0    # wall-clock limit of one answer

    def __post_init__(self):
        problems = [name for name, ok in (("max_new_tokens", self.max_new_tokens >= 1),
                                           ("temperature", self.temperature >= 0),
                                           ("top_p", 0 < self.top_p <= 1),
                                           ("repetition_penalty", self.repetition_penalty > 0),
                                           ("max_seconds", self.max_seconds > 0)) if not ok]
        if problems:
            raise ChatflowError(f"invalid sampling setting(s): {', '.join('--' + p for p in problems)} "
                                "(need max_new_tokens >= 1, temperature >= 0, 0 < top_p <= 1, "
                                "repetition_penalty > 0, max_seconds > 0)")

    def as_dict(self) -> dict:
        return {**asdict(self), "do_sample": self.temperature > 0}


class ConversationTooLong(ChatflowError):
    """The conversation leaves no room for an answer in the model's context window."""


@dataclass
class Reply:
    text: str
    tokens: int          # generated tokens, stop text included
    seconds: float
    stop: str            # eos | stop_string | length | time | cancelled

    def stats(self) -> dict:
        return {"tokens": self.tokens, "seconds": round(self.seconds, 3), "stop": self.stop}


def template_kind(tokenizer, requested: str = "auto") -> str:
    if requested not in TEMPLATES:
        raise ChatflowError(f"--template {requested!r}: choose one of {', '.join(TEMPLATES)}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if requested == "chat_template" and not has_template:
        raise ChatflowError("--template chat_template: the tokenizer has no chat template")
    if requested == "auto":
        return "chat_template" if has_template else "chatflow"
    return requested


def check_messages(messages: list[dict]) -> None:
    roles = [m.get("role") for m in messages]
    expected = ["user", "assistant"] * (len(messages) // 2) + ["user"]
    if not messages or roles != expected[: len(messages)] or roles[-1] != "user":
        raise ChatflowError(f"a conversation alternates user/assistant and ends with the user, got {roles}")


def prompt_ids(tokenizer, kind: str, messages: list[dict]) -> list[int]:
    """Token ids of the generation prompt for ``messages`` (user/assistant alternating, user last)."""
    check_messages(messages)
    if kind == "chat_template":
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    rounds = [(messages[i]["content"], messages[i + 1]["content"]) for i in range(0, len(messages) - 1, 2)]
    return list(tokenizer(render_chat_prompt(rounds, messages[-1]["content"]))["input_ids"])


def stop_strings(kind: str) -> tuple[str, ...]:
    return CHAT_STOP_STRINGS if kind == "chatflow" else ()


def context_window(model) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def _cut(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def _held_back(text: str, stops: tuple[str, ...]) -> str:
    """``text`` without a trailing partial character or a tail that may grow into a stop string."""
    text = text.rstrip("\ufffd")
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                return text[: len(text) - n]
    return text


class _Streamer(BaseStreamer):
    """Receives token ids from ``generate`` (the prompt first), reports the visible answer text so far."""

    def __init__(self, tokenizer, stops: tuple[str, ...], on_text: Callable[[str], None]):
        self.tokenizer, self.stops, self.on_text = tokenizer, stops, on_text
        self.ids: list[int] = []
        self.prompt_seen = False
        self.stopped = False
        self.shown = ""

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text, self.stopped = _cut(self.tokenizer.decode(self.ids, skip_special_tokens=True), self.stops)
        shown = _held_back(text, self.stops).strip()
        if shown != self.shown:
            self.shown = shown
            self.on_text(shown)

    def end(self) -> None:
        pass


class _Stop(StoppingCriteria):
    """Stopping criterion: a stop string was generated, the answer was cancelled, or time ran out."""

    def __init__(self, streamer: _Streamer, cancelled: threading.Event, deadline: float):
        self.streamer, self.cancelled, self.deadline = streamer, cancelled, deadline
        self.reason = ""

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        if self.streamer.stopped:
            self.reason = "stop_string"
        elif self.cancelled.is_set():
            self.reason = "cancelled"
        elif time.monotonic() > self.deadline:
            self.reason = "time"
        return torch.full((input_ids.shape[0],), bool(self.reason), dtype=torch.bool, device=input_ids.device)


def generate_reply(model, tokenizer, kind: str, messages: list[dict], settings: SamplingSettings,
                   on_text: Callable[[str], None] = lambda text: None,
                   cancelled: threading.Event | None = None) -> Reply:
    """Generate the model's answer to the last user message; ``on_text`` sees the visible text as it grows."""
    ids = prompt_ids(tokenizer, kind, messages)
    max_new = settings.max_new_tokens
    window = context_window(model)
    if window:
        room = window - len(ids)
        if room < min(16, max_new):
            raise ConversationTooLong(f"the conversation is {len(ids)} tokens long; the model's context holds "
                                      f"{window}: vote now or start a new round")
        max_new = min(max_new, room)
    stops = stop_strings(kind)
    streamer = _Streamer(tokenizer, stops, on_text)
    criterion = _Stop(streamer, cancelled or threading.Event(), time.monotonic() + settings.max_seconds)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos_ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    eos_ids.discard(None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids, default=0)
    kwargs = {"do_sample": settings.temperature > 0, "max_new_tokens": max_new,
              "repetition_penalty": settings.repetition_penalty, "pad_token_id": pad,
              "eos_token_id": sorted(eos_ids) or None}
    if settings.temperature > 0:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:   # greedy: neutralise sampling defaults a checkpoint's generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), streamer=streamer,
                             stopping_criteria=StoppingCriteriaList([criterion]), **kwargs)
    seconds = time.perf_counter() - t0
    new = out[0, len(ids):].tolist()
    text, found = _cut(tokenizer.decode(new, skip_special_tokens=True), stops)
    if found:
        stop = "stop_string"
    elif criterion.reason:
        stop = criterion.reason
    elif new and new[-1] in eos_ids:
        stop = "eos"
    else:
        stop = "length"
    return Reply(text.strip(), len(new), seconds, stop)
