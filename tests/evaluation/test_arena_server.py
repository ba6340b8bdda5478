"""The served arena over HTTP on 127.0.0.1: parallel voters, no file access, failed models, CLI, restart."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("gradio")
pytest.importorskip("transformers")

from arena_support import NAMES, make_models, start_arena, wait_ready  # noqa: E402

from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from chatflow_plugin.evaluation.arena.client import ArenaClient, longer_answer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
THREE = (*NAMES, "heron-chat")


@pytest.fixture(scope="module")
def models(spm_model, tmp_path_factory):
    return make_models(spm_model, tmp_path_factory.mktemp("arena_server_models"), THREE)


@pytest.fixture(scope="module")
def served(models, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    votes = tmp_path_factory.mktemp("arena_server") / "votes.jsonl"
    server = start_arena(models, votes)
    wait_ready(server)
    yield server, votes
    server.close()
    torch.set_num_threads(threads)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_parallel_sessions_lose_no_vote_and_corrupt_no_line(served, capsys):
    server, votes = served
    assert server.url.startswith("http://127.0.0.1:")
    sessions, rounds = 12, 2
    results, errors = [], []

    def voter(k: int) -> None:
        try:
            client = ArenaClient(server.url)
            for r in range(rounds):
                a, b, notice = client.ask(f"Question {r} from session {k}: tell me about rivers.")
                assert a and b and "Note" not in notice, notice
                choice = ["a", "b", "tie", "bothbad"][(k + r) % 4]
                results.append((k, r, choice, client.vote(choice)))
            client.close()
        except Exception as exc:   # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=voter, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    assert len(results) == sessions * rounds
    raw = votes.read_bytes()
    assert raw.endswith(b"\n")
    lines = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert len(lines) == sessions * rounds
    assert len({line["round"] for line in lines}) == len(lines) and len({line["session"] for line in lines}) == sessions
    revealed = Counter((a, b) for _, _, _, (a, b) in results)
    assert revealed == Counter((line["model_a"], line["model_b"]) for line in lines)   # reveal = record
    pairs = Counter(frozenset((line["model_a"], line["model_b"])) for line in lines)
    assert len(pairs) == 3 and max(pairs.values()) - min(pairs.values()) <= 2, pairs   # balanced pairing
    assert all(line["turns"] == 1 and len(line["conversation_a"]) == 2 for line in lines)
    # `chatflow elo` reads what the arena wrote
    assert chatflow_main(["elo", str(votes), "--prior", "1", "--bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert f"{sessions * rounds} votes, 3 models" in out and "Non-tie win rate" in out
    board = ArenaClient(server.url).leaderboard()
    assert f"{sessions * rounds} votes, 3 models" in board and "chatflow elo" in board


def test_no_file_can_be_read_or_uploaded_through_the_page(served, models):
    server, votes = served
    votes.touch()
    base = server.url.rstrip("/")
    for target in (votes.resolve(), Path("/etc/passwd"), models[0].resolve() / "config.json"):
        for route in ("/gradio_api/file=", "/file="):
            status, body = get(base + route + str(target))
            assert status in (403, 404) or (b"model_a" not in body and b"root:" not in body
                                            and b"num_hidden_layers" not in body), (route, target, status)
            assert status != 200, (route, target)
    status, _ = get(base + "/docs")
    assert status == 404
    request = urllib.request.Request(base + "/gradio_api/upload", data=b"--x\r\n" + b"0" * 4096, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403


def test_answers_stream_into_the_page(served):
    server, _ = served
    client = ArenaClient(server.url)
    job = client.client.submit("Stream a long answer, please.", api_name="/ask")
    job.result(timeout=120)
    screens = job.outputs()
    assert len(screens) >= 2   # at least one partial screen before the final one
    partial = screens[0][0]["value"][-1]["content"]
    assert any(mark in str(partial) for mark in ("▌", "Starting", "Waiting", "Loading"))
    client.new_round()


def test_the_page_never_holds_a_name_before_the_vote(served):
    server, _ = served
    status, page = get(server.url)
    assert status == 200
    status, config = get(server.url.rstrip("/") + "/config")
    assert status == 200
    for name in THREE:
        assert name.encode() not in page and name.encode() not in config
    client = ArenaClient(server.url)
    screen = client._call("/ask", "Hello")
    assert all(name not in json.dumps(screen, ensure_ascii=False) for name in THREE)
    a, b = client.vote("tie")
    assert {a, b} <= set(THREE)


def test_a_model_that_fails_to_load_is_reported_on_the_page_and_left_out(models, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json", encoding="utf-8")
    server = start_arena([*models[:2], broken], tmp_path / "votes.jsonl")
    try:
        wait_ready(server)
        client = ArenaClient(server.url)
        for _ in range(3):
            a, b, notice = client.ask("Hello")
            screen = client._call("/new_round")
        assert "failed to load and is left out" in screen["status"] and "broken-model" in screen["status"]
        assert "2 of 3 models ready" in screen["status"]
        client.ask("Hello")
        assert set(client.vote("a")) == set(NAMES)   # rounds go on between the two working models
    finally:
        server.close()


def test_cli_refuses_bad_input_with_a_message(models, tmp_path, capsys):
    assert chatflow_main(["arena", "--model_path", str(models[0]), "--votes", str(tmp_path / "v.jsonl")]) == 2
    assert "two or more" in capsys.readouterr().err
    assert chatflow_main(["arena", "--model_path", str(models[0]), str(tmp_path), "--votes", "v.jsonl"]) == 2
    assert "not a HuggingFace model directory" in capsys.readouterr().err
    assert chatflow_main(["arena", "--model_path", str(models[0]), str(models[1])]) == 2
    assert "--votes is required" in capsys.readouterr().err
    assert chatflow_main(["arena", "--model_path", str(models[0]), str(models[1]), "--votes", "v.jsonl",
                          "--template", "alpaca"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_the_command_serves_stops_on_sigterm_and_a_restart_continues_the_votes_file(models, tmp_path):
    votes = tmp_path / "v.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def run(port_file: Path, n_votes: int) -> str:
        proc = subprocess.Popen([sys.executable, "-m", "chatflow_plugin.cli", "arena", "--model_path", *map(str, models),
                                 "--votes", str(votes), "--port", "0", "--max_new_tokens", "8", "--device", "cpu"],
                                stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        url = ""
        try:
            deadline = time.monotonic() + 180
            while not url and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if "serving " in line:
                    url = line.split("serving ", 1)[1].split(" ", 1)[0]
            assert url.startswith("http://127.0.0.1:"), "the arena did not start"
            client = ArenaClient(url)
            for _ in range(n_votes):
                a, b, _ = client.ask("Hi!")
                client.vote(longer_answer(a, b))
            client.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143 and "shutting down" in err, err[-2000:]
        assert err.strip().splitlines()[-1] == "chatflow arena: terminated", err[-2000:]
        return url

    run(tmp_path / "p1", 2)
    run(tmp_path / "p2", 1)
    lines = [json.loads(line) for line in votes.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 and len({line["session"] for line in lines}) == 2


@pytest.mark.slow
def test_table3_script_tiny_runs_the_arena_and_stops_on_its_own(tmp_path):
    out = tmp_path / "t3"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "table3_elo.sh"), "--tiny", "--output_dir", str(out),
                           "--rounds", "4", "--bootstrap", "20"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "votes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 4 and {lines[0]["model_a"], lines[0]["model_b"]} == {"tiny-chat-a", "tiny-chat-b"}
    assert "4 votes, 2 models" in done.stdout and "| Rank | Model |" in done.stdout
    for name in ("table3.json", "table3.md", "table3_win_rates.png", "table3_non_tie_win_rates.png"):
        assert (out / name).stat().st_size > 0
    assert "shutting down" in (out / "arena.log").read_text(encoding="utf-8")
