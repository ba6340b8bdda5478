"""Language fidelity: script-based detection, the Latin-script heuristic, scoring, generation, CLI."""
from __future__ import annotations

import json

import pytest

from chatflow_plugin.errors import ChatflowError, DataError
from chatflow_plugin.evaluation.fidelity import (UNDETERMINED, detect_language, evaluate_fidelity,
                                                 generate_responses, language_fidelity, load_prompts,
                                                 normalize_language, script_of_language)
from test_clo_support import tiny_llama_dir, triples_dir, write_jsonl


@pytest.mark.parametrize("text, language, script", [
    ("这是一个关于机器学习的问题。", "zh", "Hani"),
    ("这是Python的一个function", "zh", "Hani"),                       # CJK weight beats Latin letters
    ("東京は日本の首都です。", "ja", "Jpan"),
    ("서울은 한국의 수도입니다.", "ko", "Hang"),
    ("Москва — столица России, и мы были там.", "ru", "Cyrl"),
    ("Київ є столицею України.", "uk", "Cyrl"),
    ("Αθήνα είναι η πρωτεύουσα της Ελλάδας.", "el", "Grek"),
    ("กรุงเทพเป็นเมืองหลวงของประเทศไทย", "th", "Thai"),
    ("The capital of France is Paris, and it is a large city.", "en", "Latn"),
    ("Die Hauptstadt von Deutschland ist Berlin und sie ist groß.", "de", "Latn"),
    ("La capitale de la France est Paris et elle est très belle.", "fr", "Latn"),
    ("La capital de España es Madrid y es una ciudad muy grande.", "es", "Latn"),
    ("Thủ đô của Việt Nam là Hà Nội và đó là một thành phố lớn.", "vi", "Latn"),
])
def test_detect_language(text, language, script):
    found = detect_language(text)
    assert (found.language, found.script) == (language, script)
    assert found.matches(language)


def test_detect_language_edge_cases():
    for text in ("", "   ", "12345 !!", "```\nprint('hi')\n```", "https://example.com/a/b"):
        found = detect_language(text)
        assert found.script == UNDETERMINED and not found.determined and not found.matches("en")
    xyz = detect_language("Xyzzy plugh qwerty")         # Latin letters, no known function words
    assert xyz.script == "Latn" and xyz.language is None
    assert xyz.matches("en") and xyz.matches("de") and not xyz.matches("zh")   # script-level only
    russian_or_other = detect_language("Привет мир")    # no ru/uk-only letters: script level
    assert russian_or_other.language is None and russian_or_other.matches("ru") and russian_or_other.matches("bg")
    assert detect_language("Москва большая").matches("ru") is True
    assert detect_language("Москва большая и ты").matches("uk") is False   # ы: Russian, not Ukrainian


def test_language_codes():
    assert [normalize_language(c) for c in ("zh-Hans", "zh_CN", "zho_Hans", "EN", "eng_Latn")] == ["zh", "zh", "zh", "en", "en"]
    assert script_of_language("zh-CN") == "Hani" and script_of_language("zho_Hans") == "Hani"
    assert script_of_language("sr-Latn") == "Latn" and script_of_language("ru") == "Cyrl"
    assert script_of_language("de") == "Latn" and script_of_language("ar") == "Arab"
    with pytest.raises(ChatflowError, match="not a language code"):
        normalize_language("")


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

    assert chatflow_main(["fidelity", "--model", str(model), "--prompts", str(data), "--max_new_tokens", "3",
                          "--limit", "2", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == 2
    assert chatflow_main(["fidelity", "--model", str(model), "--prompts", str(tmp_path / "none.jsonl")]) == 2
