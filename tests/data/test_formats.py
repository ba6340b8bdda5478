import pytest

from chatflow_plugin.errors import DataError
from chatflow_plugin.data.formats import record_from_tsv, render


def responses(text, spans):
    return [text[a:b] for a, b in spans]


def test_corpus_and_code_are_verbatim():
    assert render("corpus", {"text": "Hello world."}) == ("Hello world.", [])
    assert render("code", {"content": "def f():\n    return 1\n"}, text_field="content") == ("def f():\n    return 1\n", [])


def test_parallel_joins_the_pair_with_a_line_break_in_the_given_order():
    assert render("parallel", {"en": "Good morning.", "zh": "早上好。"}) == ("Good morning.\n早上好。", [])
    assert render("parallel", {"en": "Good morning.", "zh": "早上好。"}, fields=("zh", "en"))[0] == "早上好。\nGood morning."


def test_single_turn_template_exactly():
    text, spans = render("instruction", {"instruction": "Name a colour.", "input": "", "output": "Blue."})
    assert text == "### Instruction:\nName a colour.### Response: Blue."
    assert responses(text, spans) == ["Blue."]


def test_single_turn_with_input():
    text, spans = render("instruction", {"instruction": "Translate to English.", "input": "你好", "output": "Hello."})
    assert text == "### Instruction:\nTranslate to English.\n你好### Response: Hello."
    assert responses(text, spans) == ["Hello."]


def test_two_rounds_give_the_papers_example():
    record = {"conversations": [{"from": "human", "value": "{question-1}"}, {"from": "gpt", "value": "{answer-1}"},
                                {"from": "human", "value": "{question-2}"}, {"from": "gpt", "value": "{answer-2}"}]}
    text, spans = render("instruction", record)
    assert text == "User: {question-1} Bot: {answer-1}### Instruction:\n{question-2}### Response: {answer-2}"
    assert responses(text, spans) == ["{answer-1}", "{answer-2}"]


def test_three_rounds_separate_history_with_newlines():
    turns = []
    for i in range(1, 4):
        turns += [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]
    text, spans = render("instruction", {"conversations": turns})
    assert text == "User: q1 Bot: a1\nUser: q2 Bot: a2### Instruction:\nq3### Response: a3"
    assert responses(text, spans) == ["a1", "a2", "a3"]


@pytest.mark.parametrize("kind, record, message", [
    ("corpus", {"txt": "x"}, "missing field 'text'"),
    ("corpus", {"text": "   "}, "field 'text' is empty"),
    ("corpus", {"text": 3}, "must be a string"),
    ("corpus", ["text"], "expected a JSON object"),
    ("parallel", {"en": "a"}, "missing field 'zh'"),
    ("parallel", {"en": "same", "zh": "same"}, "identical"),
    ("instruction", {"instruction": "q"}, "missing field 'output'"),
    ("instruction", {"instruction": "q", "output": ""}, "field 'output' is empty"),
    ("instruction", {"conversations": []}, "non-empty list"),
    ("instruction", {"conversations": [{"from": "human", "value": "q"}]}, "ending with gpt"),
    ("instruction", {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
     r"conversations\[0\]: expected from='human'"),
    ("instruction", {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]},
     r"conversations\[1\]: field 'value' is empty"),
])
def test_bad_records(kind, record, message):
    with pytest.raises(DataError, match=message):
        render(kind, record)


def test_tsv_records():
    assert record_from_tsv("Hi\t你好", ("en", "zh")) == {"en": "Hi", "zh": "你好"}
    with pytest.raises(DataError, match="expected 2 tab-separated columns"):
        record_from_tsv("only one", ("en", "zh"))
