"""The arena under faults: a --votes file that is not a votes file is refused untouched before the server starts, and
SIGTERM ends the server like every other command (issue 21, "Data lost or changed", "Signals")."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from fault_support import assert_clean_error, cli, start, tree

pytest.importorskip("gradio", reason="needs Gradio: pip install 'chatflow-plugin[arena]'")


def _model_folders(root: Path) -> list[Path]:
    """Two folders that pass the arena's option checks (the refusal comes before any model is loaded)."""
    folders = []
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(json.dumps({"model_type": "llama"}))
        folders.append(root / name)
    return folders


@pytest.mark.parametrize("content", [
    "my notes\nthe last line without a newline",                       # was cut and moved aside
    json.dumps({"model_type": "llama", "hidden_size": 64}),           # a model's config.json: cut, then appended to
], ids=["text", "config"])
def test_a_votes_file_that_is_not_one_is_refused_untouched(tmp_path, content):
    models = _model_folders(tmp_path / "models")
    votes = tmp_path / "votes" / "file.txt"
    votes.parent.mkdir()
    votes.write_text(content, encoding="utf-8")
    proc = cli("arena", "--models", *models, "--votes", votes, "--port", "0", timeout=120)
    assert_clean_error(proc, "arena", f"--votes {votes}: not a votes file")
    assert tree(votes.parent) == {"file.txt": content.encode()}          # not repaired, nothing moved aside
    assert "serving" not in proc.stderr


def test_a_votes_file_the_arena_wrote_is_continued(tmp_path):
    from chatflow_plugin.errors import ChatflowError
    from chatflow_plugin.evaluation.arena.votes import VoteStore

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "a corpus record"}\n{"text": "cut')
    with pytest.raises(ChatflowError, match="not a votes file"):
        VoteStore(corpus)
    assert corpus.read_text() == '{"text": "a corpus record"}\n{"text": "cut'
    votes = tmp_path / "votes.jsonl"
    record = {"model_a": "x", "model_b": "y", "winner": "a"}
    votes.write_text(json.dumps(record) + "\n" + json.dumps(record)[:20])     # the last vote cut short
    store = VoteStore(votes)
    assert votes.read_text() == json.dumps(record) + "\n" and len(store.repaired) == 1
    first_cut = tmp_path / "first.jsonl"
    first_cut.write_text(json.dumps(record)[:15])                             # the very first vote cut short
    VoteStore(first_cut)
    assert first_cut.read_text() == ""
    VoteStore(tmp_path / "new.jsonl")


def test_sigterm_ends_the_arena_with_143_and_one_line(tmp_path, spm_model):
    from arena_support import make_models

    models = make_models(spm_model, tmp_path / "models")
    proc = start("arena", "--models", *models, "--votes", tmp_path / "votes.jsonl", "--port", "0", "--device", "cpu")
    lines = []
    deadline = time.time() + 240
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "serving http" in line:
            break
    assert any("serving http" in line for line in lines), "".join(lines)
    time.sleep(2)                                                          # a server that has been serving a while
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    err = "".join(lines) + err
    assert proc.returncode == 143, (proc.returncode, err[-3000:])
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "chatflow arena: terminated", err[-3000:]
