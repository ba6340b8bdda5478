"""The arena's rules on two tiny models: turns, limits, one vote per round, the vote record, broken rounds."""
from __future__ import annotations

import json
import threading

import pytest

pytest.importorskip("transformers")

from arena_support import NAMES, make_models  # noqa: E402

from chatflow_plugin.evaluation.arena.chat import SamplingSettings  # noqa: E402
from chatflow_plugin.evaluation.arena.pairing import BalancedPairing  # noqa: E402
from chatflow_plugin.evaluation.arena.rounds import Arena, Limits, Refused  # noqa: E402
from chatflow_plugin.evaluation.arena.votes import VoteStore  # noqa: E402
from chatflow_plugin.evaluation.arena.workers import ModelWorker  # noqa: E402
from chatflow_plugin.evaluation.elo import read_votes  # noqa: E402


@pytest.fixture(scope="module")
def models(spm_model, tmp_path_factory):
    return make_models(spm_model, tmp_path_factory.mktemp("arena_models"))


@pytest.fixture
def arena(models, tmp_path):
    from chatflow_plugin.evaluation.scoring import load_model

    lock = threading.Lock()
    workers = {name: ModelWorker(name, str(path), lambda p=str(path): load_model(p, device="cpu"), load_lock=lock).start()
               for name, path in zip(NAMES, models)}
    arena = Arena(workers, VoteStore(tmp_path / "votes.jsonl"), BalancedPairing(list(NAMES), seed=0),
                  SamplingSettings(max_new_tokens=8, temperature=0.0), Limits(max_prompt_chars=50, max_turns=2),
                  poll_seconds=0.05)
    yield arena
    for worker in workers.values():
        worker.stop()


def play(arena, rnd, text):
    views = list(arena.ask(rnd, text))
    assert views[-1].done and all(not v.done for v in views[:-1])
    return views


def test_two_turns_then_a_vote_writes_the_whole_round(arena, tmp_path):
    rnd = arena.start_round("sess1")
    assert {rnd.a.model, rnd.b.model} == set(NAMES)
    with pytest.raises(Refused, match="Chat with both models first"):
        arena.vote(rnd, "a")
    play(arena, rnd, "Hello there")
    play(arena, rnd, "  And now?  ")
    assert rnd.turns == 2 and [m["role"] for m in rnd.a.messages] == ["user", "assistant"] * 2
    assert rnd.a.messages[2]["content"] == "And now?"
    with pytest.raises(Refused, match="reached 2 turns"):
        list(arena.ask(rnd, "third"))
    record = arena.vote(rnd, "bothbad")
    with pytest.raises(Refused, match="voted on already"):
        arena.vote(rnd, "a")
    line = json.loads((tmp_path / "votes.jsonl").read_text(encoding="utf-8"))
    assert line == record
    assert line["winner"] == "tie (bothbad)" and line["turns"] == 2 and line["session"] == "sess1"
    assert {line["model_a"], line["model_b"]} == set(NAMES) and line["conversation_a"] == rnd.a.messages
    assert line["sampling"] == {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "repetition_penalty": 1.0,
                                "max_seconds": 120.0, "do_sample": False}
    assert line["template_a"] == line["template_b"] == "chatflow"
    assert [g["tokens"] <= 8 for g in line["generation_a"]] == [True, True]
    assert line["started"] <= line["voted"] and line["schema"] == 1
    votes, _ = read_votes(tmp_path / "votes.jsonl", strict=True)
    assert len(votes) == 1 and arena.pairing.votes[frozenset(NAMES)] == 1


def test_limits_and_empty_messages_are_refused_with_a_message(arena):
    rnd = arena.start_round("sess2")
    with pytest.raises(Refused, match="Type a message"):
        list(arena.ask(rnd, "   "))
    with pytest.raises(Refused, match="51 characters; the limit is 50"):
        list(arena.ask(rnd, "x" * 51))
    assert rnd.turns == 0 and not rnd.busy


def test_a_failed_model_breaks_the_round_and_frees_its_slot(arena, monkeypatch):
    from chatflow_plugin.evaluation.arena import workers as workers_module

    rnd = arena.start_round("sess3")
    real = workers_module.generate_reply

    def flaky(model, tokenizer, *args, **kwargs):
        if model is arena.workers[rnd.b.model].model:
            raise RuntimeError("device lost")
        return real(model, tokenizer, *args, **kwargs)

    monkeypatch.setattr(workers_module, "generate_reply", flaky)
    views = play(arena, rnd, "Hello")
    assert views[-1].jobs["b"].error == "RuntimeError: device lost"
    assert "Model B could not answer" in views[-1].notice and rnd.broken
    with pytest.raises(Refused, match="cannot be voted on"):
        arena.vote(rnd, "a")
    assert arena.pairing.open_rounds(rnd.a.model, rnd.b.model) == 0 and rnd.closed


def test_a_turn_too_long_for_the_context_is_taken_back(arena, monkeypatch):
    from chatflow_plugin.evaluation.arena import chat

    rnd = arena.start_round("sess4")
    play(arena, rnd, "Hello")
    monkeypatch.setattr(chat, "context_window", lambda model: 20)
    views = play(arena, rnd, "A much longer second message than before")
    assert "no longer fits" in views[-1].notice and rnd.turns == 1 and not rnd.broken
    arena.vote(rnd, "tie")


def test_a_page_that_goes_away_mid_turn_cancels_and_keeps_the_round_usable(arena):
    rnd = arena.start_round("sess5")
    turn = arena.ask(rnd, "Hello")
    first = next(turn)
    assert not first.done and rnd.busy
    turn.close()   # what Gradio does when the browser disconnects
    assert not rnd.busy and rnd.turns == 0
    play(arena, rnd, "Hello again")
    assert rnd.turns == 1


def test_a_second_round_waits_visibly_in_each_models_queue(arena, monkeypatch):
    import time

    from chatflow_plugin.evaluation.arena import workers as workers_module
    from chatflow_plugin.evaluation.arena.app import _turn_text
    from chatflow_plugin.evaluation.arena.chat import Reply

    def slow(model, tokenizer, kind, messages, settings, on_text, cancelled):
        on_text("thinking")
        time.sleep(0.3)
        return Reply("done", 1, 0.3, "eos")

    monkeypatch.setattr(workers_module, "generate_reply", slow)
    first, second = arena.start_round("s1"), arena.start_round("s2")
    turn1 = arena.ask(first, "one")
    next(turn1)   # both requests of the first round are in the queues
    turn2 = arena.ask(second, "two")
    view = next(turn2)
    assert {view.jobs[k].ahead for k in "ab"} == {1}
    assert _turn_text(view.jobs["a"], False) == "*Waiting in this model's queue: 1 request(s) ahead of yours*"
    list(turn1)
    assert list(turn2)[-1].done and second.turns == 1
    assert _turn_text(view.jobs["a"], False) == "done"
