"""GAOKAO-Bench's objective-question protocol: prompt, answer extraction and scoring rules.

Re-implemented from the behaviour of OpenLMLab/GAOKAO-Bench (commit 6dbb24f):

* prompt: ``Bench/objective_bench.py`` sends the subject's ``prefix_prompt`` (``Obj_Prompt.json``) as the
  system message and ``question.strip() + "\\n"`` as the user message (``Bench/bench_function.py``
  ``choice_test``), zero-shot; the model is asked to write ``【解析】 ... <eoe>`` then ``【答案】 ... <eoa>``.
* extraction (``bench_function.py extract_choice_answer``), by question type:

  - ``single_choice``: the last letter A-D of the output;
  - ``multi_question_choice`` (n sub-questions): the letters after ``【答案】`` (optional colon and
    spaces) when there are exactly n of them, else the first n capital letters of the output;
  - ``multi_choice``: after deleting all whitespace, every A-D after the first ``【答案】`` (when it is
    not at position 0), else every A-D of the last 10 characters, joined into one answer;
  - ``five_out_of_seven``: the first five letters A-G.

* scoring (``Bench/OBJ_score_evaluation.py``): an extracted answer whose length differs from the gold
  list counts as wrong everywhere (``["Z"] * n``); each sub-question is worth the item's ``score``;
  multiple-answer (Physics) questions earn full marks for the exact letter string and half for a
  non-empty subset of the gold letters (the reference hard-codes 6 and 3 points, which is score and
  score / 2 on every Physics item); the headline is the scoring rate, earned / possible points over
  all questions.
"""
from __future__ import annotations

import re

from ..data.formats import INSTRUCTION_HEADER, RESPONSE_HEADER
from .benchmarks import Question, Subject

END_OF_ANSWER = "<eoa>"
CHAT_FORMATS = ("auto", "raw", "chatflow")
# Answer tokens per question: GAOKAO-Bench's API wrapper sent max_tokens=1024 (models/openai.py, as of commit
# c214b47, the code that produced its completion-model results); its later GPT-4 wrapper (Models/openai_gpt4.py)
# declares 4096 but never sends it, leaving GPT-4 unbounded. Generation also stops after the n-th <eoa>.
MAX_NEW_TOKENS = 1024


def user_message(q: Question) -> str:
    return q.question.strip() + "\n"


def prompt_text(subject: Subject, q: Question, tokenizer, chat_format: str = "auto") -> tuple[str, bool]:
    """(prompt, has_special_tokens): the system + user messages as text for a causal LM.

    ``auto``: the tokenizer's chat template when it has one (system + user message, generation
    prompt), else ``raw``; ``raw``: ``prefix_prompt + "\\n" + question``; ``chatflow``: ChatFlow's
    instruction format with the prefix prompt as the instruction and the question as its input.
    ``has_special_tokens``: the text already carries the template's BOS (do not add another).
    """
    system, user = subject.header, user_message(q)
    if chat_format == "auto" and getattr(tokenizer, "chat_template", None):
        for messages in ([{"role": "system", "content": system}, {"role": "user", "content": user}],
                         [{"role": "user", "content": system.rstrip("\n") + "\n" + user}]):
            try:   # templates without a system role raise; the system prompt then leads the user message
                return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
            except Exception:   # noqa: BLE001 (jinja raises its own exception types)
                continue
    if chat_format == "chatflow":
        return INSTRUCTION_HEADER + system.rstrip("\n") + "\n" + user + RESPONSE_HEADER, False
    return system.rstrip("\n") + "\n" + user, False


def answers_expected(kind: str, q: Question) -> int:
    """How many ``<eoa>`` close a complete answer (generation stops there)."""
    return len(q.answers) if kind == "multi_question_choice" else 1


def extract(output: str, kind: str, n_answers: int) -> list[str]:
    """The model's answer list for a question of ``kind`` with ``n_answers`` gold answers."""
    if kind == "single_choice":
        letters = re.findall(r"[A-D]", output)
        return letters[-1:]
    if kind == "multi_question_choice":
        tagged = re.findall(r"【答案】\s*[:：]*\s*[A-Z]", output)
        if len(tagged) == n_answers:
            return [re.findall(r"[A-Z]", t)[0] for t in tagged]
        return re.findall(r"[A-Z]", output)[:n_answers]
    if kind == "multi_choice":
        content = re.sub(r"\s+", "", output)
        at = content.find("【答案】")
        answer = "".join(re.findall(r"[A-D]", content[at:] if at > 0 else content[-10:]))
        return [answer] if answer else []
    if kind == "five_out_of_seven":
        return re.findall(r"[A-G]", output)[:5]
    raise ValueError(f"unknown GAOKAO question type {kind!r}")


def score(kind: str, model_answers: list[str], gold: tuple[str, ...], points: float) -> tuple[float, float]:
    """(earned, possible) points of one question."""
    if len(model_answers) != len(gold):
        model_answers = ["Z"] * len(gold)
    possible = len(gold) * points
    earned = 0.0
    for mine, want in zip(model_answers, gold):
        if mine == want:
            earned += points
        elif kind == "multi_choice" and all(ch in want for ch in mine):
            earned += points / 2
    return earned, possible


def chance(kind: str, gold: tuple[str, ...]) -> float:
    """Expected share of the points earned by a uniformly random answer of the question's form."""
    if kind == "multi_choice":   # a random non-empty subset of A-D: exact (1/15) full, proper subset half
        shares = [(1 + (2 ** len(set(g)) - 2) / 2) / 15 for g in gold]
        return sum(shares) / len(shares)
    if kind == "five_out_of_seven":
        return 1 / 7
    return 1 / 4

