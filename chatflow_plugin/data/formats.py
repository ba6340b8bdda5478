"""Render one record of each source kind as training text (the paper's Sec. 2.3 formats).

Every renderer returns ``(text, response_spans)``: the document text and the character spans
``[start, end)`` that are model responses. Only instruction records have responses; the spans let a
target train on responses only. The exact templates (whitespace included) are:

- corpus / code: the text as is.
- parallel: ``"{first}\\n{second}"``; the two fields in the order the source lists them
  (default ``en`` then ``zh``).
- single-turn instruction (Alpaca ``instruction``/``input``/``output``)::

      ### Instruction:\\n{instruction}### Response: {output}
      ### Instruction:\\n{instruction}\\n{input}### Response: {output}      (non-empty input)

- multi-turn (``conversations``: human/gpt alternating): earlier rounds as
  ``User: {question} Bot: {answer}``, separated by ``\\n``, then the last round in the single-turn
  template. Two rounds give exactly the paper's example::

      User: {question-1} Bot: {answer-1}### Instruction:\\n{question-2}### Response: {answer-2}

Responses are the ``{answer}``/``{output}`` texts (the spaces before them belong to the prompt).

At inference (:func:`render_chat_prompt`, used by ``chatflow arena``) the prompt is the same text up to
``### Response:``, without the space after it: sentencepiece glues that space to the answer's first
word (``▁word``), so ending the prompt with it would ask for a token sequence the model never saw.
A model that goes on past its answer starts a new turn; :data:`CHAT_STOP_STRINGS` end the answer there.
"""
from __future__ import annotations

from typing import Any

from ..errors import DataError

INSTRUCTION_HEADER = "### Instruction:\n"
RESPONSE_HEADER = "### Response: "
HISTORY_USER = "User: "
HISTORY_BOT = " Bot: "
HISTORY_SEPARATOR = "\n"
PARALLEL_SEPARATOR = "\n"

Rendered = tuple[str, list[tuple[int, int]]]
# text that starts a new turn of the template: an answer ends before any of them
CHAT_STOP_STRINGS = (INSTRUCTION_HEADER.rstrip("\n"), RESPONSE_HEADER.rstrip(), HISTORY_SEPARATOR + HISTORY_USER.rstrip())


def _text_value(record: dict, key: str, allow_empty: bool = False) -> str:
    if key not in record:
        raise DataError(f"missing field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"field {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"field {key!r} is empty")
    return value


def render_text(record: dict, text_field: str = "text") -> Rendered:
    return _text_value(record, text_field), []


def render_parallel(record: dict, fields: tuple[str, str] = ("en", "zh")) -> Rendered:
    first, second = (_text_value(record, f) for f in fields)
    if first.strip() == second.strip():
        raise DataError(f"fields {fields[0]!r} and {fields[1]!r} are identical")
    return first + PARALLEL_SEPARATOR + second, []


def _chat(rounds: list[tuple[str, str]]) -> Rendered:
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0

    def add(text: str, response: bool = False):
        nonlocal length
        if response:
            spans.append((length, length + len(text)))
        parts.append(text)
        length += len(text)

    for i, (question, answer) in enumerate(rounds[:-1]):
        if i:
            add(HISTORY_SEPARATOR)
        add(HISTORY_USER + question + HISTORY_BOT)
        add(answer, response=True)
    question, answer = rounds[-1]
    add(INSTRUCTION_HEADER + question + RESPONSE_HEADER)
    add(answer, response=True)
    return "".join(parts), spans


def render_chat_prompt(rounds: list[tuple[str, str]], question: str) -> str:
    """The generation prompt for ``question`` after the earlier (question, answer) ``rounds``."""
    if not question.strip():
        raise DataError("the question is empty")
    text, _ = _chat([*rounds, (question, "")])
    return text[: len(text) - (len(RESPONSE_HEADER) - len(RESPONSE_HEADER.rstrip()))]


def render_instruction(record: dict) -> Rendered:
    if "conversations" in record:
        return render_conversation(record)
    instruction = _text_value(record, "instruction")
    extra = _text_value(record, "input", allow_empty=True) if record.get("input") is not None else ""   # null: none
    output = _text_value(record, "output")
    question = instruction + ("\n" + extra if extra.strip() else "")
    return _chat([(question, output)])


def render_conversation(record: dict) -> Rendered:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise DataError("field 'conversations' must be a non-empty list")
    if len(turns) % 2:
        raise DataError(f"'conversations' has {len(turns)} turns; expected human/gpt pairs ending with gpt")
    rounds = []
    for i in range(0, len(turns), 2):
        pair = []
        for j, role in ((i, "human"), (i + 1, "gpt")):
            turn = turns[j]
            if not isinstance(turn, dict) or turn.get("from") != role:
                got = turn.get("from") if isinstance(turn, dict) else type(turn).__name__
                raise DataError(f"conversations[{j}]: expected from={role!r}, got {got!r}")
            try:
                pair.append(_text_value(turn, "value"))
            except DataError as exc:
                raise DataError(f"conversations[{j}]: {exc}") from None
        rounds.append(tuple(pair))
    return _chat(rounds)


def render(kind: str, record: dict, *, text_field: str = "text", fields: tuple[str, str] = ("en", "zh")) -> Rendered:
    """Render a parsed record of a source of ``kind``; raises :class:`DataError` on bad records."""
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}")
    if kind in ("corpus", "code"):
        return render_text(record, text_field)
    if kind == "parallel":
        return render_parallel(record, fields)
    if kind == "instruction":
        return render_instruction(record)
    raise ValueError(f"unknown source kind {kind!r}")


def record_from_tsv(line: str, fields: tuple[str, str]) -> dict[str, Any]:
    columns = line.split("\t")
    if len(columns) != 2:
        raise DataError(f"expected 2 tab-separated columns ({fields[0]}, {fields[1]}), got {len(columns)}")
    return dict(zip(fields, columns))
