"""Benchmark files -> questions: the data model and the readers of the public release layouts.

Two readers cover the four benchmarks of ChatFlow's Table 2 (which benchmark uses which, with what
layout, is stated once, in :mod:`.registry`):

* :func:`read_csv_benchmark`: one CSV per subject in a few-shot split (``dev/``) and a scored split
  (MMLU ``test/`` without a header row, C-Eval ``val/`` and CMMLU ``test/`` with one);
* :func:`read_gaokao`: GAOKAO-Bench's ``Objective_Questions/*.json`` and ``Obj_Prompt.json``, every
  objective question type (single-choice, multiple-answer, multi-question, five-out-of-seven).

Malformed rows (wrong column count, empty question, an answer that is not a valid letter for its
type) are skipped and reported with their ``path:line``; a subject whose scored file has no few-shot
file next to it is an error (the prompts would silently change), as is a directory without subjects.

The reference evaluators read the CSV files with ``pandas.read_csv`` and format cells with ``str``,
so a cell ``None`` or ``NA`` reaches their prompt as ``nan`` and ``4`` as ``4.0`` when another cell
of the column is ``0.5``; :func:`pandas_cell_texts` reproduces that (``Question.cells``) for the
protocols that follow the reference code.
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ChatflowError, DataError

LETTERS = ("A", "B", "C", "D")
# GAOKAO-Bench's objective question types (Obj_Prompt.json "type") and the letters their answers use
QUESTION_KINDS = {"single_choice": "ABCD", "multi_choice": "ABCD", "multi_question_choice": "ABCDEFG",
                  "five_out_of_seven": "ABCDEFG"}


@dataclass(frozen=True)
class Question:
    question: str
    choices: tuple[str, ...]      # option texts for A-D; empty for GAOKAO, whose options are inside the question
    answer: str                   # gold letter of a single-choice question ("" for other GAOKAO types)
    location: str                 # "path:line" (CSV) or "path#example[i]" (GAOKAO JSON)
    points: float = 1.0           # exam points (GAOKAO's "score"); 1 elsewhere
    answers: tuple[str, ...] = ()  # gold answer per sub-question (GAOKAO; "AB" for a multiple-answer one)
    cells: tuple[str, ...] | None = None   # question and options as pandas.read_csv + str render them

    def __post_init__(self):
        if not self.answers:
            object.__setattr__(self, "answers", (self.answer,))


@dataclass
class Subject:
    name: str
    fewshot_pool: list[Question]  # exemplars, in file order; the first k are used
    questions: list[Question]     # the scored split
    header: str = ""              # benchmark-specific instruction (GAOKAO: the subject's prompt from Obj_Prompt.json)
    kind: str = "single_choice"   # question type (GAOKAO's Obj_Prompt.json "type")


@dataclass
class Skipped:
    location: str
    reason: str


@dataclass
class Benchmark:
    name: str
    language: str                 # a code of chatflow_plugin.languages ("en", "zh")
    subjects: list[Subject]
    skipped: list[Skipped] = field(default_factory=list)
    fewshot_from_questions: bool = False   # exemplars were taken from the scored file (GAOKAO: no dev split)

    @property
    def n_questions(self) -> int:
        return sum(len(s.questions) for s in self.subjects)


@dataclass(frozen=True)
class CsvLayout:
    scored_split: str
    suffix: str                   # file name = subject + suffix.format(split=...)
    header: tuple[str, ...] | None  # expected header (None: no header row); the first name is the id column
    fewshot_split: str = "dev"

    def file_name(self, subject: str, split: str) -> str:
        return subject + self.suffix.format(split=split)


# pandas.read_csv's default missing-value strings (pandas 2.x)
PANDAS_NA = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"])
_INT = re.compile(r"\s*[+-]?\d+\s*")
_FLOAT = re.compile(r"\s*[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|inf|infinity)\s*", re.IGNORECASE)
_BOOL = {"true": "True", "false": "False"}
_INT64 = 2 ** 63


def pandas_cell_texts(column: list[str]) -> list[str]:
    """``str(cell)`` of every cell of one CSV column as ``pandas.read_csv`` (default options) types it.

    Missing-value strings become ``nan``; a column whose other cells are all integers is int64
    (``007`` -> ``7``), or float64 when it also has a missing value (``5`` -> ``5.0``); all numbers
    -> float64 (``1e3`` -> ``1000.0``); all ``True``/``false`` ... -> bool. Anything else stays text.
    """
    present = [c for c in column if c not in PANDAS_NA]
    has_na = len(present) < len(column)
    if not present:
        return ["nan"] * len(column)
    if all(_INT.fullmatch(c) for c in present):
        if any(abs(int(c)) >= _INT64 for c in present):   # beyond int64: pandas keeps the column as text
            render = lambda c: c   # noqa: E731
        else:
            render = (lambda c: str(float(int(c)))) if has_na else (lambda c: str(int(c)))
    elif all(_FLOAT.fullmatch(c) for c in present):
        render = lambda c: str(float(c))   # noqa: E731
    elif all(c.lower() in _BOOL and c in (c.lower(), c.upper(), c.capitalize()) for c in present):
        render = lambda c: _BOOL[c.lower()]   # noqa: E731
    else:
        render = lambda c: c   # noqa: E731
    return [("nan" if c in PANDAS_NA else render(c)) for c in column]


def _csv_columns(path: Path, header_row: list[str], expected: tuple[str, ...]) -> list[int]:
    """Column index of each expected header name (C-Eval dev files carry an extra ``explanation``)."""
    names = [h.strip() for h in header_row]
    lowered = [n.lower() for n in names]
    columns = []
    for want in expected:
        if want.lower() not in lowered:
            raise DataError(f"header {names} lacks the column {want!r} (expected {list(expected)})", f"{path}:1")
        columns.append(lowered.index(want.lower()))
    return columns


def read_csv_questions(path: str | Path, header: tuple[str, ...] | None,
                       skipped: list[Skipped] | None = None) -> list[Question]:
    """Questions of one CSV file; malformed rows are appended to ``skipped`` (or raise without a list)."""
    path = Path(path)
    rows: list[tuple[str, list[str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            columns = list(range(6))
            first_line = 1
            if header is not None:
                try:
                    header_row = next(reader)
                except StopIteration:
                    raise DataError("empty file (expected a header row)", f"{path}:1") from None
                columns = _csv_columns(path, header_row, header[1:])   # the id column is not needed
                first_line = reader.line_num + 1
            line = first_line
            for row in reader:
                rows.append((f"{path}:{line}", row))
                line = reader.line_num + 1
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", str(path)) from None
    except csv.Error as exc:
        raise DataError(f"unreadable CSV: {exc}", str(path)) from None
    rows = [(loc, row) for loc, row in rows if row and any(cell.strip() for cell in row)]
    width = max(columns) + 1
    typed = [pandas_cell_texts([row[c] if len(row) > c else "" for _, row in rows]) for c in columns[:5]]
    questions: list[Question] = []
    for i, (location, row) in enumerate(rows):
        problem = None
        if len(row) < width:
            problem = f"{len(row)} columns, expected at least {width}"
        else:
            q, a, b, c, d, gold = (row[j] for j in columns)
            gold = gold.strip().upper()
            if not q.strip():
                problem = "empty question"
            elif gold not in LETTERS:
                problem = f"answer {gold!r} is not one of {'/'.join(LETTERS)}"
        if problem:
            if skipped is None:
                raise DataError(problem, location)
            skipped.append(Skipped(location, problem))
            continue
        questions.append(Question(q, (a, b, c, d), gold, location, cells=tuple(t[i] for t in typed)))
    return questions


def read_csv_benchmark(name: str, layout: CsvLayout, data_dir: str | Path, language: str) -> Benchmark:
    """A CSV benchmark (MMLU, C-Eval, CMMLU) from ``data_dir`` holding the few-shot and scored splits."""
    root = Path(data_dir)
    scored_dir, dev_dir = root / layout.scored_split, root / layout.fewshot_split
    for d in (scored_dir, dev_dir):
        if not d.is_dir():
            raise ChatflowError(f"{name}: directory {d} not found (expected the public layout: "
                                f"{layout.fewshot_split}/ and {layout.scored_split}/ CSV files)")
    suffix = layout.file_name("", layout.scored_split)
    files = sorted(p for p in scored_dir.iterdir() if p.is_file() and p.name.endswith(suffix))
    if not files:
        raise ChatflowError(f"{name}: no *{suffix} files in {scored_dir}")

    def dev_file(scored: Path) -> Path:
        return dev_dir / layout.file_name(scored.name[: -len(suffix)], layout.fewshot_split)

    missing = [str(dev_file(p)) for p in files if not dev_file(p).is_file()]
    if missing:
        raise ChatflowError(f"{name}: few-shot files missing for {len(missing)} subject(s): "
                            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    bench = Benchmark(name, language, [])
    for path in files:
        subject = path.name[: -len(suffix)]
        dev = read_csv_questions(dev_file(path), layout.header, bench.skipped)
        scored = read_csv_questions(path, layout.header, bench.skipped)
        if not scored:
            bench.skipped.append(Skipped(str(path), "no valid questions: subject left out"))
            continue
        bench.subjects.append(Subject(subject, dev, scored))
    return bench


def _gaokao_prompts(root: Path) -> dict[str, dict]:
    for candidate in (root / "Obj_Prompt.json", root / "Bench" / "Obj_Prompt.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
                return {e["keyword"]: e for e in data["examples"]}
            except (ValueError, RecursionError, KeyError, TypeError) as exc:
                raise DataError(f"not a GAOKAO-Bench prompt file ({exc!r}; expected "
                                f'{{"examples": [{{"keyword", "prefix_prompt", "type"}}]}})', str(candidate)) from None
    raise ChatflowError(f"gaokao: Obj_Prompt.json not found in {root} (GAOKAO-Bench's Bench/Obj_Prompt.json)")


def _gaokao_answers(kind: str, answer) -> tuple[str, ...] | str:
    """The gold answers of one GAOKAO example, or the reason they are invalid for the question type."""
    letters = QUESTION_KINDS[kind]
    if not isinstance(answer, list) or not answer or not all(isinstance(a, str) for a in answer):
        return f"answer {answer!r} is not a list of letters"
    answers = tuple(a.strip().upper() for a in answer)
    if kind == "single_choice" and not (len(answers) == 1 and len(answers[0]) == 1 and answers[0] in letters):
        return f"answer {answer!r} is not a single letter A-D"
    if kind == "multi_choice" and not (len(answers) == 1 and answers[0] and set(answers[0]) <= set(letters)):
        return f"answer {answer!r} is not one string of letters A-D"
    if kind in ("multi_question_choice", "five_out_of_seven") and not all(len(a) == 1 and a in letters
                                                                           for a in answers):
        return f"answer {answer!r} is not one letter {letters[0]}-{letters[-1]} per sub-question"
    if kind == "five_out_of_seven" and len(answers) != 5:
        return f"answer {answer!r} does not have 5 letters"
    return answers


def _gaokao_points(value) -> float | str:
    """An item's exam points (its ``score``), or why there are none: the scoring rate weighs every item by
    them, so a missing or unreadable score is reported and the item left out, never counted as 1 point."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return f"score missing or not a number ({value!r})"
    try:
        points = float(value)
    except ValueError:
        return f"score is not a number ({value!r})"
    if not math.isfinite(points) or points <= 0:
        return f"score must be a positive number, got {value!r}"
    return points


def read_gaokao(data_dir: str | Path, num_fewshot: int, name: str = "gaokao", language: str = "zh") -> Benchmark:
    """GAOKAO-Bench's objective questions, every type named in ``Obj_Prompt.json``.

    GAOKAO has no dev split: the first ``num_fewshot`` questions of each subject file (in file order,
    i.e. the oldest exam questions) form the few-shot pool, which the few-shot protocols do not score
    (``Benchmark.fewshot_from_questions``; the zero-shot protocol scores them too).
    """
    root = Path(data_dir)
    prompts = _gaokao_prompts(root)
    qdir = root / "Objective_Questions" if (root / "Objective_Questions").is_dir() else root
    files = sorted(p for p in qdir.glob("*.json") if p.name != "Obj_Prompt.json")
    if not files:
        raise ChatflowError(f"gaokao: no objective-question JSON files in {qdir}")
    bench = Benchmark(name, language, [], fewshot_from_questions=True)
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            keyword, examples = data.get("keywords", path.stem), data["example"]
        except (ValueError, RecursionError, KeyError, AttributeError) as exc:   # JSON, UTF-8, huge numbers, nesting
            raise DataError(f'not a GAOKAO-Bench question file ({exc!r}; expected {{"keywords", "example": [...]}})',
                            str(path)) from None
        prompt = prompts.get(keyword)
        if prompt is None:
            bench.skipped.append(Skipped(str(path), f"no prompt for {keyword!r} in Obj_Prompt.json: subject left out"))
            continue
        kind = prompt.get("type")
        if kind not in QUESTION_KINDS:
            bench.skipped.append(Skipped(str(path), f"prompt type {kind!r} is not an objective choice type "
                                                    f"({', '.join(QUESTION_KINDS)}): subject left out"))
            continue
        questions = []
        for i, ex in enumerate(examples):
            location = f"{path}#example[{i}]"
            text = ex.get("question", "") if isinstance(ex, dict) else ""
            answers = _gaokao_answers(kind, ex.get("answer") if isinstance(ex, dict) else None)
            points = _gaokao_points(ex.get("score") if isinstance(ex, dict) else None)
            if not isinstance(text, str) or not text.strip():
                bench.skipped.append(Skipped(location, "empty question"))
            elif isinstance(answers, str):
                bench.skipped.append(Skipped(location, answers))
            elif isinstance(points, str):
                bench.skipped.append(Skipped(location, points))
            else:
                single = answers[0] if kind == "single_choice" else ""
                questions.append(Question(text, (), single, location, points, answers))
        if not questions:
            bench.skipped.append(Skipped(str(path), "no valid questions: subject left out"))
            continue
        pool, scored = questions[:num_fewshot], questions[num_fewshot:]
        bench.subjects.append(Subject(keyword, pool, scored, header=prompt.get("prefix_prompt", ""), kind=kind))
    return bench
