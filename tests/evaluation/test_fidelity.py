"""Language fidelity: scoring, prompts, generation, CLI (detection itself: tests/test_languages.py)."""
from __future__ import annotations

import json

import pytest

from chatflow_plugin.errors import ChatflowError, DataError
from chatflow_plugin.evaluation.fidelity import (evaluate_fidelity, generate_responses, language_fidelity,
                                                 load_prompts)
from test_clo_support import tiny_llama_dir, triples_dir, write_jsonl


def test_language_fidelity_counts():
    report = language_fidelity(["zh", "zh", "en", "en", "zh-CN"],
                               ["你好，世界。", "Hello, this is the answer.", "This is the answer.", "", "好的"])
    assert report["n"] == 5 and report["matched"] == 3 and report["undetermined"] == 1
    assert report["fidelity"] == pytest.approx(0.6)
    assert report["per_language"]["zh"] == {"n": 3, "matched": 2, "fidelity": pytest.approx(2 / 3)}
    assert report["per_language"]["en"]["fidelity"] == pytest.approx(0.5)
    assert report["detected"]["zh"] == {"zh": 2, "en": 1}
    with pytest.raises(ChatflowError, match="2 expected languages for 1"):
        language_fidelity(["zh", "en"], ["x"])
    with pytest.raises(ChatflowError, match="no responses"):
        language_fidelity([], [])


def test_load_prompts(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Tell me about the river.", "lang": "en"},
                                              {"instruction": "介绍一下", "input": "长江"},
                                              {"prompt": "What is the answer to the question?"}])
    assert load_prompts(path) == [("Tell me about the river.", "en"), ("介绍一下\n长江", "zh"),
                                  ("What is the answer to the question?", "en")]
    for record, message in (({"prompt": "xq zz"}, "add a 'lang' field"), ({"text": "x"}, "'prompt' or 'instruction'"),
                            ({"prompt": " "}, "empty prompt"), ({"prompt": "hi", "lang": 3}, "language code")):
        bad = write_jsonl(tmp_path / "bad.jsonl", [record])
        with pytest.raises(DataError, match=r"bad.jsonl:1: "):
            load_prompts(bad)
    with pytest.raises(ChatflowError, match="no such prompts file"):
        load_prompts(tmp_path / "missing.jsonl")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, spm_model):
    root = tmp_path_factory.mktemp("fidelity")
    return tiny_llama_dir(root / "model", spm_model), triples_dir(root / "data", n=3)


def test_generation_and_evaluation(tiny, tmp_path):
    model, data = tiny
    assert len(load_prompts(data)) == 6   # a clo-data directory: both prompts of every pair
    responses = generate_responses(model, ["the model learns", "模型学习", "a"], max_new_tokens=5, batch_size=2,
                                   progress=False)
    assert len(responses) == 3 and all(isinstance(r, str) for r in responses)
    again = generate_responses(model, ["模型学习"], max_new_tokens=5, progress=False)
    assert again[0] == responses[1]     # greedy, and left padding does not change the answer
    report = evaluate_fidelity(model, data, max_new_tokens=4, batch_size=4, progress=False)
    assert report["n"] == 6 and 0.0 <= report["fidelity"] <= 1.0 and set(report["per_language"]) == {"en", "zh"}
    assert len(report["samples"]) == 6 and report["samples"][0]["lang"] == "en"
    with pytest.raises(ChatflowError, match="template"):
        generate_responses(model, ["x"], template="alpaca", progress=False)

    out = tmp_path / "report.json"
    from chatflow_plugin.cli import main as chatflow_main

    assert chatflow_main(["fidelity", "--model_path", str(model), "--prompts", str(data), "--max_new_tokens", "3",
                          "--limit", "2", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == 2
    assert chatflow_main(["fidelity", "--model_path", str(model), "--prompts", str(tmp_path / "none.jsonl")]) == 2


def test_default_prompts_of_the_language_table(tiny, tmp_path, capsys):
    """``--languages ja,en``: each language's default prompts from chatflow_plugin/languages.py, scored against it."""
    from chatflow_plugin.cli import main as chatflow_main
    from chatflow_plugin.evaluation.fidelity import default_prompts
    from chatflow_plugin.languages import get_language

    assert default_prompts(["ja", "en"]) == [(p, "ja") for p in get_language("ja").prompts] + \
        [(p, "en") for p in get_language("en").prompts]
    model, _ = tiny
    out = tmp_path / "report.json"
    assert chatflow_main(["fidelity", "--model_path", str(model), "--languages", "ja,en", "--max_new_tokens", "3",
                          "--output", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["n"] == 6 and set(report["per_language"]) == {"ja", "en"} and report["prompts"].endswith("ja, en")
    for argv, message in ((["--languages", "ja", "--prompts", "x.jsonl"], "not both"),
                          ([], "give --prompts FILE or --languages"), (["--languages", "xx"], "unknown language 'xx'"),
                          (["--languages", "fr"], "no default prompts for French")):
        assert chatflow_main(["fidelity", "--model_path", str(model), *argv]) == 2
        assert message in capsys.readouterr().err
