"""The arena's web page (Gradio): two anonymous chats side by side, four vote buttons, a leaderboard tab.

Only presentation lives here; the rules are :class:`~.rounds.Arena`'s. What the page never does: show a
model's name before the vote (names stay in the server-side session state until the vote record is
written), accept an upload or serve a file (no file components; Gradio serves only its own assets),
load anything from the internet (analytics off, no share link, fonts and scripts from the package), run what
a model or a person wrote: every message is shown as text (:func:`shown_as_text`: Markdown formatting, but
HTML as the characters it is written with and links only to web addresses), with Gradio's sanitiser on as a
second guard.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import gradio as gr

from ...errors import ChatflowError
from .leaderboard import Leaderboard
from .rounds import Arena, Refused, Round, TurnView
from .workers import CANCELLED, DONE, FAILED, QUEUED, RUNNING

VOTE_BUTTONS = (("a", "A is better"), ("b", "B is better"), ("tie", "Tie"), ("bothbad", "Both are bad"))
VOTE_WORDS = {"a": "A is better", "b": "B is better", "tie": "a tie", "bothbad": "both are bad"}
INTRO = """# ChatFlow arena
Chat with two anonymous models side by side, as long as you like, then vote for the better one.
The names are shown only after your vote. Votes build the leaderboard (Elo and Bradley-Terry ratings).
"""
CSS = ".arena-notice {min-height: 1.5em} #chat_a button[aria-label='Clear'], #chat_b button[aria-label='Clear'] {display: none}"


_CODE = re.compile(r"(```.*?(?:```|$)|`[^`\n]*`)", re.S)     # Markdown code: its text is shown as written
_NOT_A_WEB_LINK = re.compile(r"\]\((?!\s*<?(?:https?://|mailto:))")   # [text](javascript:...) and the like


def shown_as_text(text: str) -> str:
    """A message as the page shows it: Markdown (emphasis, lists, code, links to web addresses) is formatted, but
    HTML is shown as the characters it is written with (``<script>``, ``<img onerror=...>`` are text) and a link
    to anything but ``http(s):``/``mailto:`` is shown as written, not made a link. Code spans and blocks are
    left alone: the page shows their text as it is."""
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):      # the text outside code
        parts[i] = _NOT_A_WEB_LINK.sub("&#93;(", parts[i].replace("&", "&amp;").replace("<", "&lt;"))
    return "".join(parts)


def _shown(messages: list[dict]) -> list[dict]:
    return [dict(m, content=shown_as_text(m["content"])) for m in messages]


@dataclass
class Session:
    """Server-side state of one browser session (never sent to the browser)."""
    id: str
    round: Round | None = None


def _turn_text(job, loading: bool) -> str:
    if job.state == QUEUED:
        if loading:
            return "*Loading the model…*"
        if job.ahead:
            return f"*Waiting in this model's queue: {job.ahead} request(s) ahead of yours*"
        return "*Starting…*"
    if job.state == RUNNING:
        return (job.text + " ▌") if job.text else "▌"
    if job.state == DONE:
        return job.text or "*(empty answer)*"
    if job.state == FAILED:
        return f"**Error:** {job.error or 'no answer'}"
    assert job.state == CANCELLED
    return "*(cancelled)*"


def _pane(history: list[dict], view: TurnView | None, key: str) -> list[dict]:
    messages = [dict(m) for m in history]
    if view is not None:
        messages += [{"role": "user", "content": view.user},
                     {"role": "assistant", "content": _turn_text(view.jobs[key], view.loading.get(key, False))}]
    return messages


def status_markdown(arena: Arena) -> str:
    health = arena.health()
    parts = [f"{len(health['ready'])} of {len(arena.workers)} models ready"]
    if health["loading"]:
        parts.append(f"{len(health['loading'])} loading")
    text = "**Models:** " + " · ".join(parts)
    if health["failed"]:
        text += "".join(f"\n\n**Error:** model `{name}` failed to load and is left out: {error}"
                        for name, error in health["failed"])
    if len(arena.workers) - len(health["failed"]) < 2:
        text += "\n\n**Error:** fewer than two working models: no round can start."
    return text


def build_app(arena: Arena, leaderboard: Leaderboard) -> gr.Blocks:
    """The Blocks app; launch it with :func:`~.serve.serve_arena` (local, offline settings)."""

    def closed(session: Session | None) -> None:
        if session is not None:
            arena.close(session.round)

    with gr.Blocks(title="ChatFlow arena", analytics_enabled=False) as demo:
        state = gr.State(None, delete_callback=closed)
        gr.Markdown(INTRO)
        status = gr.Markdown(elem_id="arena_status")
        timer = gr.Timer(2.0)
        with gr.Tab("Arena", id="arena"):
            with gr.Row():
                chat_a = gr.Chatbot(label="Model A", elem_id="chat_a", height=420, buttons=["copy"],
                                    feedback_options=None, sanitize_html=True)
                chat_b = gr.Chatbot(label="Model B", elem_id="chat_b", height=420, buttons=["copy"],
                                    feedback_options=None, sanitize_html=True)
            notice = gr.Markdown(elem_id="notice", elem_classes="arena-notice")
            with gr.Row():
                prompt = gr.Textbox(show_label=False, placeholder="Type a message and press Enter…",
                                    elem_id="prompt", max_lines=8, scale=8,
                                    max_length=arena.limits.max_prompt_chars)
                send = gr.Button("Send", variant="primary", elem_id="send", scale=1)
            with gr.Row():
                votes = [gr.Button(label, elem_id=f"vote_{key}", interactive=False) for key, label in VOTE_BUTTONS]
            new_round = gr.Button("New round", elem_id="new_round")
        with gr.Tab("Leaderboard", id="leaderboard") as board_tab:
            refresh = gr.Button("Refresh", elem_id="refresh")
            board_text = gr.Markdown("Open this tab or press Refresh.", elem_id="leaderboard")
            figure3 = gr.Plot(label="Win rate in non-tie matches (Figure 3)", elem_id="figure3", format="png")
            matrix = gr.Plot(label="Pairwise win rates", elem_id="win_matrix", format="png")

        screen = [chat_a, chat_b, notice, prompt, send, *votes, state, status]

        def show(session: Session, a: list, b: list, note: str, *, text=gr.update(), busy: bool = False,
                 votable: bool = False, names: tuple[str, str] | None = None) -> list:
            label_a, label_b = ((f"Model A: {names[0]}", f"Model B: {names[1]}") if names else ("Model A", "Model B"))
            return [gr.update(value=_shown(a), label=label_a), gr.update(value=_shown(b), label=label_b), note,
                    text,
                    gr.update(interactive=not busy), *[gr.update(interactive=votable) for _ in votes],
                    session, status_markdown(arena)]

        def load():
            session = Session(secrets.token_hex(8))
            return show(session, [], [], "")

        def ask(text: str, session: Session | None):
            session = session or Session(secrets.token_hex(8))
            rnd = session.round
            try:
                if rnd is None or rnd.voted or rnd.broken:
                    arena.close(rnd)
                    rnd = session.round = arena.start_round(session.id)
                base_a, base_b = list(rnd.a.messages), list(rnd.b.messages)
                for view in arena.ask(rnd, text):
                    if not view.done:
                        yield show(session, _pane(base_a, view, "a"), _pane(base_b, view, "b"), "", text="",
                                   busy=True)
                        continue
                    if rnd.broken:
                        a, b = _pane(base_a, view, "a"), _pane(base_b, view, "b")
                    else:
                        a, b = rnd.a.messages, rnd.b.messages
                    note = view.notice or "Keep chatting with both, or vote."
                    yield show(session, a, b, note, text="", votable=not rnd.why_not_votable())
            except Refused as exc:
                a, b = (rnd.a.messages, rnd.b.messages) if rnd is not None else ([], [])
                yield show(session, a, b, f"**Note:** {exc}", votable=rnd is not None and not rnd.why_not_votable())

        def vote_handler(choice: str):
            def vote(session: Session | None):
                rnd = session.round if session else None
                if rnd is None:
                    return show(session, [], [], "**Note:** chat with both models first.")
                try:
                    record = arena.vote(rnd, choice)
                except Refused as exc:
                    return show(session, rnd.a.messages, rnd.b.messages, f"**Note:** {exc}",
                                votable=not rnd.why_not_votable())
                except ChatflowError as exc:   # the vote could not be written
                    return show(session, rnd.a.messages, rnd.b.messages, f"**Error:** your vote could not be saved: {exc}",
                                votable=not rnd.why_not_votable())
                names = (record["model_a"], record["model_b"])
                note = (f"Vote saved ({VOTE_WORDS[choice]}). **Model A was `{names[0]}`, model B was "
                        f"`{names[1]}`.** Type a message to start the next round with two new models.")
                return show(session, rnd.a.messages, rnd.b.messages, note, names=names)
            vote.__name__ = f"vote_{choice}"
            return vote

        def fresh(session: Session | None):
            session = session or Session(secrets.token_hex(8))
            arena.close(session.round)
            session.round = None
            return show(session, [], [], "New round: type a message; two anonymous models will answer.", text="")

        def board():
            b = leaderboard.board()
            return b.markdown, b.figure3, b.matrix

        def tick():
            loading = bool(arena.health()["loading"])
            return status_markdown(arena), gr.Timer(active=loading)

        demo.load(load, None, screen, api_visibility="undocumented")
        timer.tick(tick, None, [status, timer], api_visibility="private", show_progress="hidden")
        gr.on([send.click, prompt.submit], ask, [prompt, state], screen, api_name="ask",
              api_visibility="undocumented", show_progress="hidden", concurrency_limit=None)
        for (key, _), button in zip(VOTE_BUTTONS, votes):
            button.click(vote_handler(key), [state], screen, api_name=f"vote_{key}", api_visibility="undocumented",
                         concurrency_limit=None)
        new_round.click(fresh, [state], screen, api_name="new_round", api_visibility="undocumented",
                        concurrency_limit=None)
        gr.on([refresh.click, board_tab.select], board, None, [board_text, figure3, matrix], api_name="leaderboard",
              api_visibility="undocumented", concurrency_limit=1)
    return demo
