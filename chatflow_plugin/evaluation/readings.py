"""How a letter protocol reads a question's answer from log-likelihoods, by question type.

* ``choice`` (single-choice questions: every MMLU / C-Eval / CMMLU question, GAOKAO's single-choice
  subjects): the best of the letters A-D after the answer cue, read by the protocol's letter rule;
* ``subset`` (GAOKAO's multiple-answer questions, ``multi_choice``): the best of the 15 non-empty
  sets of A-D, each written as the exemplars write an answer and closed by their end marker
  (``" BD <eoa>"``), so a set is never preferred for being the beginning of a longer one; scored as
  the official code scores it (a proper subset of the gold letters earns half);
* ``sequence`` (GAOKAO's multi-question items, ``multi_question_choice``, and ``five_out_of_seven``):
  one letter per sub-question, left to right, each the best letter given the prompt and the letters
  already read, as a model writing ``【答案】: A C D`` letter by letter would (greedy), among A-D
  (A-G for 5-of-7, whose seven options are lettered A-G).

Exemplars write these answers the same way (:meth:`.prompts.PromptFormat.exemplar`: the gold answers
joined by spaces). Which question types a benchmark has is stated by its reader (``Subject.kind``).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np

from .benchmarks import LETTERS, Question, Subject
from .prompts import PlannedPrompt
from .protocols import LetterProtocol
from .scoring import LetterScorer, split_continuation

READINGS = {"single_choice": "choice", "multi_choice": "subset", "multi_question_choice": "sequence",
            "five_out_of_seven": "sequence"}
SEQUENCE_LETTERS = {"multi_question_choice": "ABCD", "five_out_of_seven": "ABCDEFG"}


def letter_sets(letters: str = "".join(LETTERS)) -> list[str]:
    """The non-empty sets of ``letters`` as answer strings, shortest first, each in letter order (ties -> first)."""
    return ["".join(c) for n in range(1, len(letters) + 1) for c in combinations(letters, n)]


@dataclass
class Read:
    answers: list[str]      # one letter, one letter set, or one letter per sub-question
    loglikelihoods: list    # the candidates' summed log-probabilities (per step for sequences)


def _continuation_tokens(tokenizer, protocol: LetterProtocol, text: str, add_bos: bool) -> int:
    return len(split_continuation(tokenizer, "Question\n" + protocol.format.answer_cue, text, add_bos)[1])


def extra_tokens(tokenizer, protocol: LetterProtocol, owners: Sequence[tuple[Subject, Question]],
                 letter_tokens: int, add_bos: bool) -> list[int]:
    """Input positions each question needs beyond its prompt (read-out tokens after the first)."""
    fmt = protocol.format
    subset = _continuation_tokens(tokenizer, protocol, fmt.answer_sep + "ABCD" + fmt.exemplar_suffix, add_bos)
    out = []
    for subject, q in owners:
        reading = READINGS[subject.kind]
        if reading == "choice":
            out.append(letter_tokens - 1)
        elif reading == "subset":
            out.append(subset - 1)
        else:
            out.append(len(q.answers) * letter_tokens - 1)
    return out


def read(scorer: LetterScorer, protocol: LetterProtocol, owners: Sequence[tuple[Subject, Question]],
         plans: Sequence[PlannedPrompt], targets: list, limit: int, desc: str) -> list[Read]:
    """The answer each question's prompt leads the model to, read as its question type says."""
    out: list[Read | None] = [None] * len(owners)
    by_reading: dict[str, list[int]] = {}
    for i, (subject, _) in enumerate(owners):
        by_reading.setdefault(READINGS[subject.kind], []).append(i)
    fmt = protocol.format
    if "choice" in by_reading:
        idx = by_reading["choice"]
        scores = scorer.loglikelihoods([(plans[i].context, targets) for i in idx], desc=desc,
                                       prefixes=[plans[i].prefix for i in idx], max_length=limit)
        for i, row in zip(idx, scores):
            out[i] = Read([LETTERS[int(np.argmax(row))]], [float(x) for x in row])
    if "subset" in by_reading:
        idx = by_reading["subset"]
        sets = letter_sets()
        candidates = [fmt.answer_sep + s + fmt.exemplar_suffix for s in sets]
        scores = scorer.loglikelihoods([(plans[i].context, candidates) for i in idx], desc=desc,
                                       prefixes=[plans[i].prefix for i in idx], max_length=limit)
        for i, row in zip(idx, scores):
            out[i] = Read([sets[int(np.argmax(row))]], [float(x) for x in row])
    for kind, letters in SEQUENCE_LETTERS.items():
        idx = [i for i in by_reading.get("sequence", []) if owners[i][0].kind == kind]
        chosen: dict[int, list[str]] = {i: [] for i in idx}
        steps: dict[int, list[list[float]]] = {i: [] for i in idx}
        step = 0
        while True:   # one letter of every unfinished item per pass
            active = [i for i in idx if step < len(owners[i][1].answers)]
            if not active:
                break
            requests = []
            for i in active:
                written = fmt.answer_sep + " ".join(chosen[i]) if chosen[i] else ""
                first = fmt.answer_sep if not chosen[i] else " "
                requests.append((plans[i].context + written, [first + letter for letter in letters]))
            scores = scorer.loglikelihoods(requests, desc=f"{desc} letter {step + 1}",
                                           prefixes=[plans[i].prefix for i in active], max_length=limit)
            for i, row in zip(active, scores):
                chosen[i].append(letters[int(np.argmax(row))])
                steps[i].append([float(x) for x in row])
            step += 1
        for i in idx:
            out[i] = Read(chosen[i], steps[i])
    return out   # type: ignore[return-value]
