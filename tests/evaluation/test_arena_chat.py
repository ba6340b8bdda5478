"""Arena generation: prompts in ChatFlow's format or the chat template, streaming, stops, the per-model queue."""
from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("transformers")

from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.evaluation.arena import workers as workers_module  # noqa: E402
from chatflow_plugin.evaluation.arena.chat import (ConversationTooLong, Reply, SamplingSettings, _cut,  # noqa: E402
                                                   _held_back, generate_reply, prompt_ids, template_kind)
from chatflow_plugin.evaluation.arena.workers import DONE, FAILED, ModelWorker  # noqa: E402
from chatflow_plugin.data.formats import CHAT_STOP_STRINGS, render_chat_prompt, render_conversation  # noqa: E402

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
CHAT = [{"role": "user", "content": "What is a river?"}, {"role": "assistant", "content": "Water that flows."},
        {"role": "user", "content": "河流是什么？"}]


@pytest.fixture(scope="module")
def tiny(spm_model, tmp_path_factory):
    from chatflow_plugin.evaluation.scoring import load_model

    from test_eval_models import write_tiny_llama

    return load_model(str(write_tiny_llama(spm_model, tmp_path_factory.mktemp("arena_tiny"))), device="cpu")


def test_chatflow_prompt_is_the_training_text_up_to_the_answer():
    prompt = render_chat_prompt([("q1", "a1")], "q2")
    trained, spans = render_conversation({"conversations": [
        {"from": "human", "value": "q1"}, {"from": "gpt", "value": "a1"},
        {"from": "human", "value": "q2"}, {"from": "gpt", "value": "a2"}]})
    assert prompt == "User: q1 Bot: a1### Instruction:\nq2### Response:"
    assert trained == prompt + " a2" and trained[spans[-1][0]:] == "a2"
    assert render_chat_prompt([], "q") == "### Instruction:\nq### Response:"
    with pytest.raises(ChatflowError, match="empty"):
        render_chat_prompt([], "  ")


def test_template_choice_and_prompt_ids(tiny):
    _, tok = tiny
    assert template_kind(tok, "auto") == "chatflow"
    with pytest.raises(ChatflowError, match="no chat template"):
        template_kind(tok, "chat_template")
    with pytest.raises(ChatflowError, match="choose one of"):
        template_kind(tok, "alpaca")
    ids = prompt_ids(tok, "chatflow", CHAT)
    assert ids == tok(render_chat_prompt([("What is a river?", "Water that flows.")], "河流是什么？"))["input_ids"]
    assert ids[0] == tok.bos_token_id
    tok.chat_template = TEMPLATE
    try:
        assert template_kind(tok, "auto") == "chat_template"
        ids = prompt_ids(tok, "chat_template", CHAT)
        assert tok.decode(ids).endswith("<|assistant|>")
        assert "<|user|>What is a river?" in tok.decode(ids)
    finally:
        tok.chat_template = None
    with pytest.raises(ChatflowError, match="alternates"):
        prompt_ids(tok, "chatflow", CHAT[:2])


def test_stop_strings_cut_the_answer_and_partial_stops_are_held_back():
    assert _cut("Fine.\nUser: next", CHAT_STOP_STRINGS) == ("Fine.", True)
    assert _cut("a ### Instruction: b ### Response: c", CHAT_STOP_STRINGS) == ("a ", True)
    assert _cut("no stop", CHAT_STOP_STRINGS) == ("no stop", False)
    assert _held_back("answer ##", CHAT_STOP_STRINGS) == "answer "
    assert _held_back("answer\nUs", CHAT_STOP_STRINGS) == "answer"
    assert _held_back("broken \ufffd", CHAT_STOP_STRINGS) == "broken "


def test_generate_reply_streams_and_ends_with_the_returned_text(tiny):
    model, tok = tiny
    seen = []
    reply = generate_reply(model, tok, "chatflow", CHAT, SamplingSettings(max_new_tokens=16, temperature=0.0),
                           seen.append)
    assert reply.tokens <= 16 and reply.stop in ("eos", "length", "stop_string") and reply.seconds > 0
    assert seen and all(reply.text.startswith(s.rstrip()) or s.strip() == "" for s in seen[:-1])
    again = generate_reply(model, tok, "chatflow", CHAT, SamplingSettings(max_new_tokens=16, temperature=0.0))
    assert again.text == reply.text   # greedy: deterministic
    sampled = generate_reply(model, tok, "chatflow", CHAT, SamplingSettings(max_new_tokens=8, temperature=0.8))
    assert sampled.tokens <= 8


def test_cancel_and_context_window(tiny):
    model, tok = tiny
    cancelled = threading.Event()
    cancelled.set()
    reply = generate_reply(model, tok, "chatflow", CHAT, SamplingSettings(max_new_tokens=50, temperature=0.0),
                           cancelled=cancelled)
    assert reply.stop == "cancelled" and reply.tokens == 1
    window = model.config.max_position_embeddings
    long = [{"role": "user", "content": "river water " * (window // 2)}]
    with pytest.raises(ConversationTooLong, match="context holds"):
        generate_reply(model, tok, "chatflow", long, SamplingSettings(max_new_tokens=50))
    with pytest.raises(ChatflowError, match="--temperature"):
        SamplingSettings(temperature=-1)


def _fake_generation(active: list, log: list, seconds: float = 0.15):
    def fake(model, tokenizer, kind, messages, settings, on_text, cancelled):
        active.append(1)
        log.append((model, len(active)))
        on_text("partial")
        time.sleep(seconds)
        active.pop()
        return Reply(f"answer to {messages[-1]['content']}", 3, seconds, "eos")
    return fake


def test_one_generation_per_model_at_a_time_with_queue_positions(monkeypatch):
    active, log = [], []
    monkeypatch.setattr(workers_module, "generate_reply", _fake_generation(active, log))
    w1 = ModelWorker("one", "/m/one", lambda: ("model-one", type("T", (), {"chat_template": None})())).start()
    w2 = ModelWorker("two", "/m/two", lambda: ("model-two", type("T", (), {"chat_template": None})())).start()
    listener = threading.Event()
    settings = SamplingSettings()
    jobs1 = [w1.submit([{"role": "user", "content": f"q{i}"}], settings, listener) for i in range(4)]
    jobs2 = [w2.submit([{"role": "user", "content": f"q{i}"}], settings, listener) for i in range(2)]
    assert [j.ahead for j in jobs1] == [0, 1, 2, 3]
    deadline = time.monotonic() + 30
    while not all(j.finished for j in jobs1 + jobs2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(j.state == DONE for j in jobs1 + jobs2)
    assert [j.text for j in jobs1] == [f"answer to q{i}" for i in range(4)]
    assert max(n for _, n in log) == 2   # the two models did run at the same time
    assert [m for m, _ in log if m == "model-one"] == ["model-one"] * 4 and all(j.ahead == 0 for j in jobs1)
    w1.stop()
    w2.stop()


def test_one_model_never_runs_two_generations(monkeypatch):
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def fake(model, tokenizer, kind, messages, settings, on_text, cancelled):
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.05)
        with lock:
            running["now"] -= 1
        return Reply("ok", 1, 0.05, "eos")

    monkeypatch.setattr(workers_module, "generate_reply", fake)
    worker = ModelWorker("one", "/m/one", lambda: ("m", type("T", (), {"chat_template": None})())).start()
    listener = threading.Event()
    jobs = []
    threads = [threading.Thread(target=lambda: jobs.append(worker.submit([{"role": "user", "content": "q"}],
                                                                         SamplingSettings(), listener)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while not all(j.finished for j in jobs):
        time.sleep(0.02)
    assert running["max"] == 1 and len(jobs) == 8
    worker.stop()


def test_load_and_generation_failures_become_messages_without_the_name(monkeypatch, capsys):
    def broken_loader():
        raise ChatflowError("--model /secret/path/osprey: cannot load the model: bad safetensors header")

    failed = ModelWorker("osprey", "/secret/path/osprey", broken_loader).start()
    while failed.state in ("waiting", "loading"):
        time.sleep(0.01)
    assert failed.state == "failed" and "bad safetensors header" in failed.error and not failed.available
    job = failed.submit([{"role": "user", "content": "q"}], SamplingSettings(), threading.Event())
    assert job.state == FAILED and "failed to load" in job.error

    def explode(*args, **kwargs):
        raise RuntimeError("CUDA out of memory while running /secret/path/kestrel (kestrel)")

    monkeypatch.setattr(workers_module, "generate_reply", explode)
    worker = ModelWorker("kestrel", "/secret/path/kestrel", lambda: ("m", type("T", (), {"chat_template": None})()))
    worker.start()
    job = worker.submit([{"role": "user", "content": "q"}], SamplingSettings(), threading.Event())
    while not job.finished:
        time.sleep(0.01)
    assert job.state == FAILED and job.error.startswith("RuntimeError: CUDA out of memory")
    assert "kestrel" not in job.error and "/secret" not in job.error
    assert "Traceback" in capsys.readouterr().err   # the details go to the server log
    worker.stop()
    failed.stop()
