"""Drive a running arena from Python, through the same endpoints the page uses (``gradio_client``).

One :class:`ArenaClient` is one anonymous session. For smoke runs and tests only: a scripted voter is
not a human evaluation. ``chatflow arena-smoke URL --rounds N`` plays N rounds with a fixed rule (the
longer answer wins, equal lengths tie) and prints the revealed pairs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import ChatflowError
from ...options import option

# the outputs gradio_client returns for the page's screen (buttons and the session state are not among them)
SCREEN = ("chat_a", "chat_b", "notice", "prompt", "status")
REVEAL = re.compile(r"Model A was `([^`]+)`, model B was `([^`]+)`")


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):   # Gradio's normalised form: [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


class ArenaClient:
    def __init__(self, url: str):
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=False)

    def _call(self, api_name: str, *args) -> dict:
        out = self.client.predict(*args, api_name=api_name)
        values = [o.get("value") if isinstance(o, dict) and o.get("__type__") == "update" else o for o in out]
        return dict(zip(SCREEN, values))

    def ask(self, text: str) -> tuple[str, str, str]:
        """(answer of A, answer of B, the page's notice) once both answers are complete."""
        screen = self._call("/ask", text)
        last = [_text(chat[-1]) if chat else "" for chat in (screen["chat_a"] or [], screen["chat_b"] or [])]
        return last[0], last[1], screen["notice"] or ""

    def vote(self, choice: str) -> tuple[str, str]:
        """Vote a | b | tie | bothbad; returns the revealed (model A, model B)."""
        notice = self._call(f"/vote_{choice}")["notice"] or ""
        match = REVEAL.search(notice)
        if not match:
            raise ChatflowError(f"the vote was not accepted: {notice}")
        return match.group(1), match.group(2)

    def new_round(self) -> None:
        self._call("/new_round")

    def leaderboard(self) -> str:
        out = self.client.predict(api_name="/leaderboard")
        return out[0] if isinstance(out, (list, tuple)) else out

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()


def longer_answer(a: str, b: str) -> str:
    """The scripted voter's rule: the longer answer wins; equal lengths tie."""
    return "a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"


@dataclass
class ClientOptions:
    url: str = option(help="the arena's address, e.g. http://127.0.0.1:7860/", positional=True)
    rounds: int = option(10, help="rounds to play")
    turns: int = option(1, help="messages per round")
    prompt: list = option(default_factory=lambda: ["Hello! Who are you?", "Write a short poem about rivers.",
                                                   "用一句话介绍一下长城。"],
                          repeatable=True, type=str, help="messages to send, in turn")


def arena_smoke(opts: ClientOptions) -> None:
    """Play scripted rounds through a running arena's own endpoints (the longer answer wins, equal lengths tie)
    and print the revealed pairs: a smoke test of the arena, never a human evaluation."""
    client = ArenaClient(opts.url)
    try:
        for r in range(opts.rounds):
            for t in range(opts.turns):
                a, b, notice = client.ask(opts.prompt[(r * opts.turns + t) % len(opts.prompt)])
                if notice.startswith(("**Note:**", "**Error:**")):
                    raise ChatflowError(f"round {r + 1}: {notice}")
            choice = longer_answer(a, b)
            model_a, model_b = client.vote(choice)
            print(f"round {r + 1}: A={model_a} B={model_b} vote={choice}", flush=True)
    finally:
        client.close()
