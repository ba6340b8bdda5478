"""Evaluation protocols: what a benchmark's number means (prompt, letter read, fitting, average).

A :class:`LetterProtocol` ranks the four answer letters by log-likelihood after a k-shot prompt; a
:class:`GenerationProtocol` lets the model write an answer and extracts and scores it by rules. Which
benchmark runs which protocols is stated in :mod:`.registry`.

Which token stands for a letter (``letters``):

* ``continuation``: the answer text as the exemplars write it after the cue (``" A"`` after
  ``Answer:``), split from the context as lm-evaluation-harness does; summed over its tokens if it is
  more than one (hendrycks/test reads GPT-3's ``" A"`` token; lm-evaluation-harness);
* ``encode_first``: the first token of ``tokenizer.encode(letter)`` without special tokens, read at the
  position after the prompt (C-Eval's ``evaluators/llama.py``: ``▁A`` for LLaMA's sentencepiece);
* ``vocab_piece``: the vocabulary entry spelled exactly like the letter, ``convert_tokens_to_ids("A")``
  (CMMLU's ``src/hf_causal_model.py``: ``A`` without the word-start mark).

When a token rule cannot give four distinct known tokens (a byte-level vocabulary without letter
pieces), the reference code would silently read the same or an unknown token for every letter; here
the answer continuation is scored instead and the fallback is reported (``letter_targets`` note).

Averages: ``micro`` (over questions), ``macro`` (mean of subject accuracies), ``points`` (earned /
possible exam points).

Prompt length: an official protocol fits its prompts to ``REFERENCE_MAX_LENGTH`` = 2,048 tokens, the
length its reference code fits to (hendrycks/test ``crop.py``: 2,048 GPT-2 tokens; C-Eval
``eval_llama.py``: ``max_seq_len=2048``; CMMLU ``hf_causal_model.py``: ``--max_length 2048``) and
ChatFlow's training sequence length; lm-evaluation-harness fits to the model's context.
``--max_length`` overrides both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import gaokao_rules
from .benchmarks import LETTERS, Question, Subject
from .prompts import FIT_RULES, PromptFormat

LETTER_RULES = ("continuation", "encode_first", "vocab_piece")
AVERAGES = ("micro", "macro", "points")
PROTOCOL_SETS = ("official", "lm-eval")   # --protocol: the benchmarks' own code, or lm-evaluation-harness
REFERENCE_MAX_LENGTH = 2048   # the official codes' prompt length (see the module docstring)


@dataclass(frozen=True)
class LetterProtocol:
    name: str                   # "official", "lm-eval", "paper" ...
    reference: str              # the code this protocol reproduces
    summary: str                # one line: what is scored
    format: PromptFormat
    letters: str                # one of LETTER_RULES
    fit: str                    # one of prompts.FIT_RULES
    average: str                # one of AVERAGES
    label: str = ""             # table column suffix when a benchmark reports several protocols
    kinds: tuple[str, ...] = ("single_choice",)   # question types scored (see .readings for how each is read)
    max_length: int | None = None   # prompt budget in tokens (None: the model's context)
    count_bos: bool = True          # the budget counts BOS (hendrycks/test's GPT-3 prompts had none)
    kind: str = field(default="loglikelihood", init=False)

    def __post_init__(self):
        assert self.letters in LETTER_RULES and self.fit in FIT_RULES and self.average in AVERAGES

    def chance(self, subject: Subject, q: Question) -> float:
        return gaokao_rules.chance(subject.kind, q.answers)

    def score(self, kind: str, answers: list[str], gold: tuple[str, ...], points: float) -> tuple[float, float]:
        """(earned, possible): 1 or 0 for a letter; GAOKAO's exam-point rules for its question types."""
        return gaokao_rules.score(kind, answers, gold, points)


@dataclass(frozen=True)
class GenerationProtocol:
    name: str
    reference: str
    summary: str
    average: str = "points"
    label: str = ""
    kinds: tuple[str, ...] = ("single_choice", "multi_choice", "multi_question_choice", "five_out_of_seven")
    prompt: Callable = gaokao_rules.prompt_text          # (subject, question, tokenizer, chat_format) -> text
    extract: Callable = gaokao_rules.extract              # (output, kind, n_answers) -> answers
    score: Callable = gaokao_rules.score                  # (kind, answers, gold, points) -> (earned, possible)
    stop_after: Callable = gaokao_rules.answers_expected  # (kind, question) -> <eoa> count closing the answer
    stop_text: str = gaokao_rules.END_OF_ANSWER
    kind: str = field(default="generation", init=False)

    def chance(self, subject: Subject, q: Question) -> float:
        return gaokao_rules.chance(subject.kind, q.answers)


Protocol = LetterProtocol | GenerationProtocol


def _distinct_known(ids: list, tokenizer) -> bool:
    unk = getattr(tokenizer, "unk_token_id", None)
    return all(isinstance(i, int) and i != unk for i in ids) and len(set(ids)) == len(ids)


def letter_targets(protocol: LetterProtocol, tokenizer) -> tuple[list, str]:
    """(targets, note): per letter a continuation string or the token id read after the prompt.

    ``note`` is empty, or says why the answer continuations are scored instead of the protocol's tokens.
    """
    answers = protocol.format.answers()
    if protocol.letters == "continuation":
        return answers, ""
    if protocol.letters == "encode_first":
        encoded = [tokenizer(letter, add_special_tokens=False)["input_ids"] for letter in LETTERS]
        ids = [e[0] if e else None for e in encoded]
        rule = "first token of tokenizer.encode(letter)"
    else:
        ids = [tokenizer.convert_tokens_to_ids(letter) for letter in LETTERS]
        rule = "vocabulary piece spelled as the letter"
    if _distinct_known(ids, tokenizer):
        return ids, ""
    shown = [tokenizer.convert_ids_to_tokens(i) if isinstance(i, int) else None for i in ids]
    return answers, (f"the {rule} is {shown} for A-D in this tokenizer (not four distinct known tokens); "
                     f"scored the answer continuations {answers} instead")


@dataclass(frozen=True)
class LmEvalTask:
    """Where lm-evaluation-harness keeps a benchmark's stock task, and how to point it at local files."""

    stock: str                     # the stock task YAML under lm_eval/tasks/, with a {subject} placeholder
    splits: dict[str, str]         # lm-eval's split name -> the directory holding that split's CSV files
    columns: tuple[str, ...]       # usecols (files with a header) or column_names (files without one)
    header: bool = True
    overrides: dict = field(default_factory=dict)   # only where the hub dataset's columns differ from the files'
