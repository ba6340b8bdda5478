"""The arena's rules, independent of the web page: rounds, turns, limits, votes.

A *round* pairs two anonymous models (A and B, drawn by :class:`~.pairing.BalancedPairing`). Each turn
sends the person's message to both, each model seeing its own earlier answers; both answers stream
back. After at least one complete turn the person votes once (A, B, tie, both bad); only the vote
record, written before anything is revealed, holds the names. A round can no longer be voted on when a
model failed to answer (its answers would not be comparable); a turn that no longer fits a model's
context window is taken back instead, so the round can still be voted on.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

from ...errors import ChatflowError
from .chat import SamplingSettings
from .pairing import BalancedPairing
from .votes import SCHEMA, WINNERS, VoteStore
from .workers import DONE, ModelWorker, QueueFull


class Refused(ChatflowError):
    """An action the page must refuse with a message to the person (not a server fault)."""


@dataclass(frozen=True)
class Limits:
    max_prompt_chars: int = 4000   # one message
    max_turns: int = 8             # messages per round


@dataclass
class Side:
    model: str
    messages: list[dict] = field(default_factory=list)      # {"role": "user"|"assistant", "content": str}
    generations: list[dict] = field(default_factory=list)   # per answer: tokens, seconds, stop


@dataclass
class Round:
    session: str
    a: Side
    b: Side
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    started: float = field(default_factory=time.time)
    busy: bool = False
    broken: str = ""       # why the round cannot be voted on
    voted: str = ""        # the button pressed: a | b | tie | bothbad
    closed: bool = False   # its pairing slot was given back
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.a.messages)

    def why_not_votable(self) -> str:
        if self.voted:
            return "This round has been voted on already; start a new round."
        if self.broken:
            return self.broken
        if self.busy:
            return "Wait until both answers are complete."
        if not self.turns:
            return "Chat with both models first."
        return ""


@dataclass
class TurnView:
    """Both sides of the turn in progress: job state, visible text, requests ahead, error."""
    user: str
    jobs: dict                 # side -> Job
    loading: dict              # side -> the model is still loading
    done: bool = False
    notice: str = ""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


class Arena:
    def __init__(self, workers: dict[str, ModelWorker], store: VoteStore, pairing: BalancedPairing,
                 settings: SamplingSettings, limits: Limits = Limits(), poll_seconds: float = 0.5):
        self.workers, self.store, self.pairing = workers, store, pairing
        self.settings, self.limits, self.poll_seconds = settings, limits, poll_seconds

    # -- models -----------------------------------------------------------------------------------

    def health(self) -> dict[str, list]:
        out: dict[str, list] = {"ready": [], "loading": [], "failed": []}
        for name, worker in self.workers.items():
            if worker.state == "failed":
                out["failed"].append((name, worker.error))
            else:
                out["ready" if worker.state == "ready" else "loading"].append(name)
        return out

    # -- rounds -----------------------------------------------------------------------------------

    def start_round(self, session: str) -> Round:
        available = [name for name, worker in self.workers.items() if worker.available]
        if len(available) < 2:
            raise Refused("The arena needs two working models and has "
                          f"{len(available)}; see the model status above.")
        a, b = self.pairing.draw(available)
        return Round(session, Side(a), Side(b))

    def close(self, rnd: Round | None) -> None:
        """The round ends without a vote (new round, page closed): give its pairing slot back."""
        if rnd is None:
            return
        with rnd.lock:
            if not rnd.closed:
                rnd.closed = True
                self.pairing.close(rnd.a.model, rnd.b.model, voted=bool(rnd.voted))

    def check_prompt(self, rnd: Round, text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise Refused("Type a message first.")
        if len(text) > self.limits.max_prompt_chars:
            raise Refused(f"Your message has {len(text)} characters; the limit is {self.limits.max_prompt_chars}.")
        if rnd.voted or rnd.broken:
            raise Refused(rnd.why_not_votable())
        if rnd.busy:
            raise Refused("Wait until both answers are complete.")
        if rnd.turns >= self.limits.max_turns:
            raise Refused(f"This round has reached {self.limits.max_turns} turns: vote, or start a new round.")
        return text

    def ask(self, rnd: Round, text: str) -> Iterator[TurnView]:
        """Send ``text`` to both models; yields the turn as it progresses (the last view has ``done``)."""
        with rnd.lock:
            text = self.check_prompt(rnd, text)
            rnd.busy = True
        listener = threading.Event()
        user = {"role": "user", "content": text}
        sides = {"a": rnd.a, "b": rnd.b}
        jobs: dict = {}
        complete = False
        try:
            for key, side in sides.items():
                jobs[key] = self.workers[side.model].submit(side.messages + [user], self.settings, listener)
            while not all(job.finished for job in jobs.values()):
                yield TurnView(text, jobs, {k: self.workers[s.model].state in ("waiting", "loading")
                                            for k, s in sides.items()})
                listener.wait(self.poll_seconds)
                listener.clear()
            notice = self._finish_turn(rnd, user, jobs)
            complete = True
            rnd.busy = False
            yield TurnView(text, jobs, {"a": False, "b": False}, done=True, notice=notice)
        except QueueFull as exc:
            raise Refused(str(exc)) from None
        finally:
            if not complete:   # the page went away mid-turn, or the queue was full: take the turn back
                for job in jobs.values():
                    job.cancel()
            rnd.busy = False

    def _finish_turn(self, rnd: Round, user: dict, jobs: dict) -> str:
        if any(job.too_long for job in jobs.values()):
            for job in jobs.values():
                job.cancel()
            return ("The conversation no longer fits one of the models' context window; that message was "
                    "not kept. Vote now, or start a new round.")
        failed = [k for k, job in jobs.items() if job.state != DONE]
        if failed:
            rnd.broken = " ".join(f"Model {k.upper()} could not answer ({jobs[k].error or jobs[k].state})."
                                  for k in failed) + " This round cannot be voted on; start a new round."
            self.close(rnd)
            return rnd.broken
        for key, side in (("a", rnd.a), ("b", rnd.b)):
            side.messages += [user, {"role": "assistant", "content": jobs[key].reply.text}]
            side.generations.append(jobs[key].reply.stats())
        return ""

    # -- votes ------------------------------------------------------------------------------------

    def vote(self, rnd: Round, choice: str) -> dict:
        """Record the vote (durably) and return the record; the names may be shown only after this."""
        if choice not in WINNERS:
            raise Refused(f"unknown vote {choice!r}")
        with rnd.lock:
            reason = rnd.why_not_votable()
            if reason:
                raise Refused(reason)
            record = vote_record(rnd, WINNERS[choice], self.settings,
                                 {k: self.workers[s.model].template for k, s in (("a", rnd.a), ("b", rnd.b))})
            self.store.append(record)
            rnd.voted = choice
        self.close(rnd)
        return record


def vote_record(rnd: Round, winner: str, settings: SamplingSettings, templates: dict[str, str]) -> dict:
    """One line of the votes file (fields documented in docs/arena.md)."""
    return {"model_a": rnd.a.model, "model_b": rnd.b.model, "winner": winner,
            "turns": rnd.turns,
            "conversation_a": rnd.a.messages, "conversation_b": rnd.b.messages,
            "generation_a": rnd.a.generations, "generation_b": rnd.b.generations,
            "template_a": templates["a"], "template_b": templates["b"],
            "sampling": settings.as_dict(),
            "session": rnd.session, "round": rnd.id,
            "started": _iso(rnd.started), "voted": _iso(time.time()),
            "schema": SCHEMA}

