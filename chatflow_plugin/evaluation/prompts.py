"""k-shot prompt text, and fitting it into a token budget the way a protocol's reference code does.

A :class:`PromptFormat` writes ``header + (exemplar + separator) * k + question block``, where a
question block is ``question_prefix + question + "\\nA. ..." ... + "\\n" + answer_cue`` and an exemplar
is a question block followed by ``answer_sep + its answer + exemplar_suffix`` (the answer is the gold
letter, or the gold answers joined by spaces for GAOKAO's multi-question items). The formats of each
protocol (the benchmarks' reference code, lm-evaluation-harness's stock tasks, our GAOKAO reading) are
values in :mod:`.registry`; this module only knows how to write and fit them.

Two lengths govern a prompt (:class:`PromptPlanner`):

* the **budget** (``max_length``): what the protocol's reference code fits its prompts to, 2,048 tokens
  for the official protocols (hendrycks/test's ``crop``, C-Eval's ``max_seq_len``, CMMLU's
  ``--max_length``) unless ``--max_length`` says otherwise; the model's context for lm-evaluation-harness;
* the **limit**: the input length the model can take (its context); only a prompt longer than that is
  cut from the left (lm-evaluation-harness's rule, ``left_cut``, cuts at the budget itself).

Fitting, when a k-shot prompt is over the budget:

* ``drop_last``: remove exemplars from the end until it fits (hendrycks/test ``evaluate.py``:
  ``while crop(prompt) != prompt: k -= 1``);
* ``drop_longest``: remove every exemplar of the longest token length until the exemplars' summed
  token counts are below ``max_length - len(header) - len(question)``, each part counted with
  ``tokenizer.encode`` (special tokens included); the question alone if even header + question do not
  fit (CMMLU ``src/mp_utils.py gen_prompt``);
* ``left_cut``: keep all exemplars; the scorer cuts tokens from the left (lm-evaluation-harness).

A prompt still over the budget after dropping is scored as it is when the model can take it (as
CMMLU's code does; hendrycks/test would loop and C-Eval's would crash), else cut from the left. Every
outcome is reported per question (:class:`PlannedPrompt` ``shots``, ``over_budget``, ``cut``), never
silently.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .benchmarks import LETTERS, Question, Subject

FIT_RULES = ("drop_last", "drop_longest", "left_cut")


@dataclass(frozen=True)
class PromptFormat:
    """How one protocol turns a subject's questions into text."""
    header: Callable[[Subject], str]   # instruction line(s) before the exemplars
    answer_cue: str                    # ends every question block: "Answer:", "答案：" ...
    answer_sep: str = ""               # between the cue and an exemplar's answer letter
    question_prefix: str = ""          # "题目：" (CMMLU)
    exemplar_suffix: str = ""          # after an exemplar's answer (" <eoa>" for GAOKAO)
    exemplar_separator: str = "\n\n"
    strip_question: bool = True        # question.strip() (lm-evaluation-harness); False: the cell as is
    strip_choices: bool = False
    pandas_cells: bool = False         # question and options as pandas.read_csv + str render them

    def _cells(self, q: Question) -> tuple[str, tuple[str, ...]]:
        if self.pandas_cells and q.cells is not None:
            return q.cells[0], tuple(q.cells[1:])
        return q.question, tuple(str(c) for c in q.choices)

    def body(self, q: Question) -> str:
        """The question, its options and the answer cue, without the answer."""
        question, choices = self._cells(q)
        lines = [self.question_prefix + (question.strip() if self.strip_question else question)]
        lines += [f"{letter}. {text.strip() if self.strip_choices else text}" for letter, text in zip(LETTERS, choices)]
        return "\n".join(lines) + "\n" + self.answer_cue

    def exemplar(self, q: Question) -> str:
        """A solved question: the gold answer after the cue (GAOKAO's sub-question answers joined by spaces)."""
        return self.body(q) + self.answer_sep + " ".join(q.answers) + self.exemplar_suffix + self.exemplar_separator

    def answers(self, letters: str = "".join(LETTERS)) -> list[str]:
        """The answer texts as exemplars write them after the cue (``" A"`` or ``"A"`` ...)."""
        return [self.answer_sep + letter for letter in letters]

    def prefix(self, subject: Subject, k: int) -> str:
        """Header and the first k exemplars: the part of the context every question of the subject shares."""
        return self.header(subject) + "".join(self.exemplar(ex) for ex in subject.fewshot_pool[:k])

    def context(self, subject: Subject, q: Question, k: int) -> str:
        return self.prefix(subject, k) + self.body(q)


@dataclass
class PlannedPrompt:
    context: str
    prefix: str        # the leading part shared by the subject's questions with the same exemplars
    shots: int         # exemplars actually in the prompt
    wanted: int        # exemplars asked for (k, or fewer when the subject's pool is smaller)
    tokens: int        # input tokens before any cut (BOS and read-out tokens included); exact near the
                       # budget or the limit, else the sum of the parts' counts (an estimate, usually a few high)
    cut: bool          # longer than the model's limit even so: the scorer cuts tokens from the left
    dropped_header: bool = False   # drop_longest: header + question alone did not fit, the header was left out
    over_budget: bool = False      # still over the budget after dropping every exemplar it could

    @property
    def truncated(self) -> bool:
        """The prompt is not the k-shot prompt the protocol describes (exemplars dropped or text cut)."""
        return self.cut or self.dropped_header or self.shots < self.wanted


class PromptPlanner:
    """Chooses the exemplars of each question's prompt so that it fits the budget ``max_length``.

    ``limit``: the longest input the scorer passes uncut (the model's context; ``max_length`` if not
    given). ``count_bos``: the budget counts the BOS token (False for hendrycks/test, whose GPT-3 prompt
    had none). ``extra_tokens``: input positions needed beyond the context (a letter of n tokens needs
    n - 1; :meth:`plan` takes a per-question value too). Token counts of headers and exemplars are
    cached; a whole prompt is tokenized only when the sum of its parts' counts is near a length that
    matters.
    """

    def __init__(self, fmt: PromptFormat, fit: str, tokenizer, max_length: int, add_bos: bool = True,
                 extra_tokens: int = 0, limit: int | None = None, count_bos: bool = True):
        if fit not in FIT_RULES:
            raise ValueError(f"fit rule {fit!r} not in {FIT_RULES}")
        self.fmt, self.fit, self.tokenizer, self.max_length = fmt, fit, tokenizer, max_length
        self.limit = max_length if fit == "left_cut" or limit is None else limit
        self.bos = int(add_bos and tokenizer.bos_token_id is not None)
        self.budget_bos = self.bos if count_bos else 0
        self.extra = extra_tokens
        self._plain: dict[str, int] = {}
        self._special: dict[str, int] = {}

    def count(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (memoised)."""
        n = self._plain.get(text)
        if n is None:
            n = self._plain[text] = len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        return n

    def encode_len(self, text: str) -> int:
        """``len(tokenizer.encode(text))``, special tokens included, as CMMLU's gen_prompt counts (memoised)."""
        n = self._special.get(text)
        if n is None:
            n = self._special[text] = len(self.tokenizer(text, verbose=False)["input_ids"])
        return n

    def _text_length(self, parts: list[str], extra: int) -> int:
        """Tokens of ``"".join(parts)`` (no special tokens), exact whenever the prompt is near the budget or
        the limit (the parts' summed counts are an estimate: merges at the seams make it a few tokens high)."""
        estimate = sum(self.count(p) for p in parts)
        nearest = min(self.max_length - self.budget_bos, self.limit - self.bos) - extra
        if estimate + 8 + 4 * len(parts) <= nearest:
            return estimate
        return len(self.tokenizer("".join(parts), add_special_tokens=False, verbose=False)["input_ids"])

    def plan(self, subject: Subject, q: Question, k: int, extra: int | None = None) -> PlannedPrompt:
        fmt = self.fmt
        extra = self.extra if extra is None else extra
        header, body = fmt.header(subject), fmt.body(q)
        pool = [fmt.exemplar(ex) for ex in subject.fewshot_pool[:k]]
        wanted, dropped_header = len(pool), False
        if self.fit == "drop_longest":
            start_end = self.encode_len(header) + self.encode_len(body)
            if start_end > self.max_length:
                header, pool, dropped_header = "", [], bool(header)
            else:
                lengths = [self.encode_len(e) for e in pool]
                while pool and sum(lengths) >= self.max_length - start_end:
                    longest = max(lengths)
                    pool = [e for e, n in zip(pool, lengths) if n != longest]
                    lengths = [n for n in lengths if n != longest]
        n = self._text_length([header, *pool, body], extra)
        if self.fit == "drop_last":
            while pool and n + self.budget_bos + extra > self.max_length:
                pool = pool[:-1]
                n = self._text_length([header, *pool, body], extra)
        prefix = header + "".join(pool)
        total = n + self.bos + extra
        return PlannedPrompt(prefix + body, prefix, len(pool), wanted, total, total > self.limit, dropped_header,
                             n + self.budget_bos + extra > self.max_length)
