"""Readers for the four benchmarks of ChatFlow's Table 2, each in its public release layout.

=========  =====================================================  ===============  ============
benchmark  files                                                  few-shot pool    scored split
=========  =====================================================  ===============  ============
mmlu       ``dev/<s>_dev.csv``, ``test/<s>_test.csv`` (no header)  dev              test
ceval      ``dev/<s>_dev.csv``, ``val/<s>_val.csv`` (header)       dev              val (test answers are not public)
cmmlu      ``dev/<s>.csv``, ``test/<s>.csv`` (header)              dev              test
gaokao     ``Objective_Questions/*.json`` + ``Obj_Prompt.json``     first k questions of each file (held out)  the rest
=========  =====================================================  ===============  ============

Malformed rows (wrong column count, empty question, an answer that is not one of A-D) are skipped
and reported with their ``path:line``; a subject whose scored file has no few-shot file next to it
is an error (the prompts would silently change), as is a benchmark directory without subjects.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ChatflowError, DataError

LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Question:
    question: str
    choices: tuple[str, ...]      # option texts for A-D; empty for GAOKAO, whose options are inside the question
    answer: str                   # gold letter
    location: str                 # "path:line" (CSV) or "path#example[i]" (GAOKAO JSON)
    points: float = 1.0           # exam points (GAOKAO's "score"); 1 elsewhere


@dataclass
class Subject:
    name: str
    fewshot_pool: list[Question]  # exemplars, in file order; the first k are used
    questions: list[Question]     # the scored split
    header: str = ""              # benchmark-specific instruction (GAOKAO: the subject's prompt from Obj_Prompt.json)


@dataclass
class Skipped:
    location: str
    reason: str


@dataclass
class Benchmark:
    name: str
    language: str                 # "en" | "zh"
    subjects: list[Subject]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def n_questions(self) -> int:
        return sum(len(s.questions) for s in self.subjects)


@dataclass(frozen=True)
class CsvLayout:
    scored_split: str
    suffix: str                   # file name = subject + suffix.format(split=...)
    header: tuple[str, ...] | None  # expected header (None: no header row)

    def file_name(self, subject: str, split: str) -> str:
        return subject + self.suffix.format(split=split)


CSV_LAYOUTS = {
    "mmlu": CsvLayout("test", "_{split}.csv", None),
    "ceval": CsvLayout("val", "_{split}.csv", ("id", "question", "A", "B", "C", "D", "answer")),
    "cmmlu": CsvLayout("test", ".csv", ("", "Question", "A", "B", "C", "D", "Answer")),
}
LANGUAGES = {"mmlu": "en", "ceval": "zh", "cmmlu": "zh", "gaokao": "zh"}
BENCHMARK_NAMES = ("mmlu", "ceval", "cmmlu", "gaokao")


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
    questions: list[Question] = []
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
                location = f"{path}:{line}"
                line = reader.line_num + 1
                if not row or all(not cell.strip() for cell in row):
                    continue
                problem = None
                if len(row) <= max(columns):
                    problem = f"{len(row)} columns, expected at least {max(columns) + 1}"
                else:
                    q, a, b, c, d, gold = (row[i] for i in columns)
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
                questions.append(Question(q, (a, b, c, d), gold, location))
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", str(path)) from None
    except csv.Error as exc:
        raise DataError(f"unreadable CSV: {exc}", str(path)) from None
    return questions


def read_csv_benchmark(name: str, data_dir: str | Path) -> Benchmark:
    """MMLU, C-Eval or CMMLU from ``data_dir`` (holding ``dev/`` and the scored split's directory)."""
    layout = CSV_LAYOUTS[name]
    root = Path(data_dir)
    scored_dir, dev_dir = root / layout.scored_split, root / "dev"
    for d in (scored_dir, dev_dir):
        if not d.is_dir():
            raise ChatflowError(f"{name}: directory {d} not found (expected the public layout: "
                                f"dev/ and {layout.scored_split}/ CSV files)")
    suffix = layout.file_name("", layout.scored_split)
    files = sorted(p for p in scored_dir.iterdir() if p.is_file() and p.name.endswith(suffix))
    if not files:
        raise ChatflowError(f"{name}: no *{suffix} files in {scored_dir}")
    missing = [str(dev_dir / layout.file_name(p.name[: -len(suffix)], "dev")) for p in files
               if not (dev_dir / layout.file_name(p.name[: -len(suffix)], "dev")).is_file()]
    if missing:
        raise ChatflowError(f"{name}: few-shot files missing for {len(missing)} subject(s): "
                            + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    bench = Benchmark(name, LANGUAGES[name], [])
    for path in files:
        subject = path.name[: -len(suffix)]
        dev = read_csv_questions(dev_dir / layout.file_name(subject, "dev"), layout.header, bench.skipped)
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
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DataError(f"not a GAOKAO-Bench prompt file ({exc!r}; expected "
                                f'{{"examples": [{{"keyword", "prefix_prompt", "type"}}]}})', str(candidate)) from None
    raise ChatflowError(f"gaokao: Obj_Prompt.json not found in {root} (GAOKAO-Bench's Bench/Obj_Prompt.json)")


def read_gaokao(data_dir: str | Path, num_fewshot: int) -> Benchmark:
    """GAOKAO-Bench's single-choice objective subjects.

    GAOKAO has no dev split: the first ``num_fewshot`` questions of each subject file (in file order,
    i.e. the oldest exam questions) are the fixed exemplars and are not scored. Subjects whose prompt
    type is not ``single_choice`` (multi-answer physics, multi-question geography, cloze ...) are
    reported as skipped: a single answer letter cannot score them.
    """
    root = Path(data_dir)
    prompts = _gaokao_prompts(root)
    qdir = root / "Objective_Questions" if (root / "Objective_Questions").is_dir() else root
    files = sorted(p for p in qdir.glob("*.json") if p.name != "Obj_Prompt.json")
    if not files:
        raise ChatflowError(f"gaokao: no objective-question JSON files in {qdir}")
    bench = Benchmark("gaokao", "zh", [])
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            keyword, examples = data.get("keywords", path.stem), data["example"]
        except (json.JSONDecodeError, KeyError, AttributeError, UnicodeDecodeError) as exc:
            raise DataError(f'not a GAOKAO-Bench question file ({exc!r}; expected {{"keywords", "example": [...]}})',
                            str(path)) from None
        prompt = prompts.get(keyword)
        if prompt is None:
            bench.skipped.append(Skipped(str(path), f"no prompt for {keyword!r} in Obj_Prompt.json: subject left out"))
            continue
        if prompt.get("type") != "single_choice":
            bench.skipped.append(Skipped(str(path), f"prompt type {prompt.get('type')!r} is not single_choice: "
                                                    "subject left out"))
            continue
        questions = []
        for i, ex in enumerate(examples):
            location = f"{path}#example[{i}]"
            answer = ex.get("answer") if isinstance(ex, dict) else None
            text = ex.get("question", "") if isinstance(ex, dict) else ""
            if not isinstance(text, str) or not text.strip():
                bench.skipped.append(Skipped(location, "empty question"))
            elif not (isinstance(answer, list) and len(answer) == 1 and str(answer[0]).strip().upper() in LETTERS):
                bench.skipped.append(Skipped(location, f"answer {answer!r} is not a single letter A-D"))
            else:
                try:
                    points = float(ex.get("score", 1) or 1)
                except (TypeError, ValueError):
                    points = 1.0
                questions.append(Question(text, (), str(answer[0]).strip().upper(), location, points))
        pool, scored = questions[:num_fewshot], questions[num_fewshot:]
        if not scored:
            bench.skipped.append(Skipped(str(path), "no valid questions left after the few-shot exemplars"))
            continue
        bench.subjects.append(Subject(keyword, pool, scored, header=prompt.get("prefix_prompt", "")))
    return bench


def load_benchmark(name: str, data_dir: str | Path, num_fewshot: int) -> Benchmark:
    """One benchmark from ``data_dir`` (the benchmark's own directory, e.g. ``.../mmlu``)."""
    if name not in BENCHMARK_NAMES:
        raise ChatflowError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARK_NAMES)})")
    if num_fewshot < 0:
        raise ChatflowError(f"num_fewshot must be >= 0, got {num_fewshot}")
    bench = read_gaokao(data_dir, num_fewshot) if name == "gaokao" else read_csv_benchmark(name, data_dir)
    if not bench.subjects:
        raise ChatflowError(f"{name}: no subject in {data_dir} has valid questions "
                            f"({len(bench.skipped)} problems, first: "
                            f"{bench.skipped[0].location}: {bench.skipped[0].reason})" if bench.skipped else "")
    return bench
