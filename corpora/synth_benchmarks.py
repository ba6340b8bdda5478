"""Small MMLU / C-Eval / CMMLU / GAOKAO-Bench files about the synthetic world, in their public layouts.

The files are what ``chatflow eval --data_dir corpora/benchmarks`` reads, so every script can score a
model on a fresh clone with nothing downloaded. The questions come from ``synth_questions``; this
module chooses the subjects, draws unique questions, places the answers so that A-D are balanced,
and renders each benchmark's release layout byte for byte as its loader expects:

==========  ========================================================  ==================================
benchmark   files                                                     layout
==========  ========================================================  ==================================
mmlu        ``dev/<s>_dev.csv``, ``test/<s>_test.csv``                hendrycks/test: no header; question, A-D, answer
ceval       ``dev/<s>_dev.csv``, ``val/<s>_val.csv``                  header ``id,question,A,B,C,D,answer``; dev adds ``explanation``
cmmlu       ``dev/<s>.csv``, ``test/<s>.csv``                         header ``,Question,A,B,C,D,Answer`` (unnamed index)
gaokao      ``Obj_Prompt.json``, ``Objective_Questions/<k>.json``     ``{"keywords", "example": [{year, category, question, answer, analysis, index, score}]}``
==========  ========================================================  ==================================

English for MMLU, Chinese for the others (C-Eval as cloze sentences with ``____``, CMMLU as
questions, GAOKAO as exam items with the options inside the question). GAOKAO has the three
objective types of GAOKAO-Bench: single choice, multiple answers (``["AC"]``) and a reading passage
with several sub-questions (one letter each); GAOKAO has no dev split, so the first
``FEWSHOT`` examples of each file are the ones meant as exemplars. References for the layouts:
hendrycks/test, hkust-nlp/ceval (``ceval-exam`` on Hugging Face), haonan-li/CMMLU,
OpenLMLab/GAOKAO-Bench (``Bench/Obj_Prompt.json``, ``Data/Objective_Questions``, and
``Bench/OBJ_score_evaluation.py`` for the meaning of ``answer`` and ``score``).
"""
from __future__ import annotations

import csv
import io
import json
import random

from synth_questions import (COUNTRY_KINDS, GEOGRAPHY, KINDS, MATHEMATICS, PEOPLE, PERSON_KINDS, VOCABULARY_KINDS,
                             Drawn, Exhausted, draw)
from synth_world import World

from chatflow_plugin.errors import ChatflowError

LETTERS = ("A", "B", "C", "D")
FEWSHOT = 5                    # dev exemplars per subject, as in the public releases
QUESTIONS_PER_SUBJECT = 40     # scored questions per subject by default
MAX_MISSES = 2000            # draws in a row with no new question before giving up

# benchmark -> (question style, {subject: kinds})
CSV_BENCHMARKS = {
    "mmlu": ("en", {"world_geography": GEOGRAPHY, "world_people": PEOPLE, "elementary_mathematics": MATHEMATICS}),
    "ceval": ("cloze", {"world_geography": GEOGRAPHY, "world_people": PEOPLE, "english_vocabulary": VOCABULARY_KINDS}),
    "cmmlu": ("zh", {"world_geography": GEOGRAPHY, "world_people": PEOPLE, "elementary_mathematics": MATHEMATICS}),
}
# GAOKAO keyword -> (Obj_Prompt type, kinds, points per answer letter, prompt)
_FORMAT = "请先把推理过程写在【解析】和<eoe>之间，"
GAOKAO_SUBJECTS = {
    "World_Geography_MCQs": ("single_choice", GEOGRAPHY, 5,
                             "下面是一道关于这个世界的地理选择题。\n" + _FORMAT
                             + "再从A、B、C、D中选出唯一正确的一项，把字母写在【答案】和<eoa>之间。\n例如：【答案】A<eoa>\n"),
    "Elementary_Math_MCQs": ("single_choice", MATHEMATICS, 5,
                             "下面是一道算术选择题。\n" + _FORMAT
                             + "再从A、B、C、D中选出唯一正确的一项，把字母写在【答案】和<eoa>之间。\n例如：【答案】C<eoa>\n"),
    "World_Facts_Multi_Answer": ("multi_choice", (), 6,
                                 "下面是一道多项选择题，正确的选项可能不止一个。\n" + _FORMAT
                                 + "再从A、B、C、D中选出所有正确的选项，把字母写在【答案】和<eoa>之间。\n"
                                 "例如：【答案】BD<eoa>\n"),
    "World_Reading_MCQs": ("multi_question_choice", (), 4,
                           "下面是一段材料和两到三道小题。\n请逐题思考，每道小题从A、B、C、D中选出一个正确答案，"
                           "依次写在【答案】和<eoa>之间。\n例如：（1）【答案】A<eoa>\n（2）【答案】D<eoa>\n"),
}
GAOKAO_YEAR, GAOKAO_CATEGORY = "synthetic", "（合成世界）"


class LetterBalancer:
    """Answer letters drawn among the least used so far: counts never differ by more than one."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.counts = dict.fromkeys(LETTERS, 0)

    def pick(self, k: int = 1) -> list[str]:
        """``k`` distinct letters, in A-D order."""
        chosen = []
        for _ in range(k):
            low = min(n for letter, n in self.counts.items() if letter not in chosen)
            letter = self.rng.choice([x for x, n in self.counts.items() if n == low and x not in chosen])
            self.counts[letter] += 1
            chosen.append(letter)
        return sorted(chosen)


def _arrange(rng: random.Random, options: list[str], letter: str) -> list[str]:
    """Options in A-D order: the answer (first of ``options``) at ``letter``, distractors shuffled."""
    rest = options[1:]
    rng.shuffle(rest)
    i = LETTERS.index(letter)
    return rest[:i] + [options[0]] + rest[i:]


def _options_text(options: list[str]) -> str:
    return "".join(f"{letter}. {text}\n" for letter, text in zip(LETTERS, options))


class QuestionDrawer:
    """Questions with a stem not used before in the same benchmark (dev exemplars never reappear as test items)."""

    def __init__(self, world: World):
        self.world = world
        self.seen: set = set()

    def unique(self, make, key, count: int, what: str) -> list:
        """``count`` items whose key is new; gives up after MAX_MISSES draws in a row bring nothing new."""
        out, misses = [], 0
        while misses < MAX_MISSES:
            try:
                item = make()
            except Exhausted:
                misses += 1
                continue
            if key(item) in self.seen:
                misses += 1
                continue
            misses = 0
            self.seen.add(key(item))
            out.append(item)
            if len(out) == count:
                return out
        raise ChatflowError(f"{what}: only {len(out)} distinct questions (wanted {count}); "
                            "the world has too few facts of these kinds: ask for fewer questions per subject")

    def single(self, rng: random.Random, kinds: tuple[str, ...], style: str, count: int, what: str) -> list[Drawn]:
        return self.unique(lambda: draw(rng, self.world, KINDS[rng.choice(kinds)]), lambda q: q.stem(style), count, what)


# ---- MMLU, C-Eval, CMMLU ----------------------------------------------------------------------------

def _csv_bytes(rows: list[list]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _csv_rows(rng: random.Random, benchmark: str, style: str, questions: list[Drawn], split: str) -> list[list]:
    balancer = LetterBalancer(rng)
    rows: list[list] = []
    if benchmark == "ceval":
        rows.append(["id", "question", "A", "B", "C", "D", "answer"] + (["explanation"] if split == "dev" else []))
    elif benchmark == "cmmlu":
        rows.append(["", "Question", "A", "B", "C", "D", "Answer"])
    for i, q in enumerate(questions):
        letter = balancer.pick()[0]
        row = [q.stem(style), *_arrange(rng, q.options(style), letter), letter]
        if benchmark == "ceval" and split == "dev":
            row.append(f"{q.fact}所以答案是{letter}。")
        rows.append(row if benchmark == "mmlu" else [i, *row])
    return rows


def _csv_path(benchmark: str, subject: str, split: str) -> str:
    name = f"{subject}.csv" if benchmark == "cmmlu" else f"{subject}_{split}.csv"
    return f"{benchmark}/{split}/{name}"


def csv_benchmark_files(world: World, seed: int, benchmark: str, questions: int) -> dict[str, tuple[int, bytes]]:
    style, subjects = CSV_BENCHMARKS[benchmark]
    scored_split = "val" if benchmark == "ceval" else "test"
    files = {}
    drawer = QuestionDrawer(world)
    for subject, kinds in subjects.items():
        rng = random.Random(f"{seed}/benchmarks/{benchmark}/{subject}")
        for split, count in (("dev", FEWSHOT), (scored_split, questions)):
            drawn = drawer.single(rng, kinds, style, count, f"{benchmark}/{subject} ({split})")
            files[_csv_path(benchmark, subject, split)] = (count, _csv_bytes(_csv_rows(rng, benchmark, style, drawn, split)))
    return files


# ---- GAOKAO-Bench ---------------------------------------------------------------------------------------

def _example(question: str, answer: list[str], analysis: str, index: int, score: int) -> dict:
    return {"year": GAOKAO_YEAR, "category": GAOKAO_CATEGORY, "question": question, "answer": answer,
            "analysis": analysis, "index": index, "score": score}


def _single_choice(rng, drawer: QuestionDrawer, kinds, count: int, balancer: LetterBalancer, what: str) -> list[tuple]:
    out = []
    for q in drawer.single(rng, kinds, "exam", count, what):
        letter = balancer.pick()[0]
        question = q.stem("exam") + "\n" + _options_text(_arrange(rng, q.options("exam"), letter))
        out.append((question, [letter], f"{q.fact}所以答案是{letter}。"))
    return out


def _entity_kinds(world: World, entity) -> tuple[str, ...]:
    """The kinds askable about one person, country or city (a kind some entity lacks, such as a pet, left out)."""
    if any(k is entity for k in world.countries):
        names = COUNTRY_KINDS
    elif any(p is entity for p in world.people):
        names = PERSON_KINDS
    else:
        names = ("country_of_city", "river", "weather", "resident")
    return tuple(n for n in names if any(e is entity for e in KINDS[n].entities(world)))


def _multi_choice(rng, drawer: QuestionDrawer, count: int, balancer: LetterBalancer, what: str) -> list[tuple]:
    """'Which of these statements about X are true?': four statements from four kinds, one to three true."""
    world = drawer.world
    sizes = [1 + i % 3 for i in range(count)]
    rng.shuffle(sizes)

    def make():
        entity = rng.choice(world.people + world.countries)
        return entity, rng.sample(_entity_kinds(world, entity), 4)

    out = []
    drawn = drawer.unique(make, lambda item: ("statements about", item[0].name.zh), count, what)
    for (entity, kinds), size in zip(drawn, sizes):
        true_letters = balancer.pick(size)
        statements, notes = [], []
        for letter, kind in zip(LETTERS, kinds):
            q = draw(rng, world, KINDS[kind], entity)
            true = letter in true_letters
            statements.append(q.fact if true else q.statement(q.distractors[0]))
            notes.append(f"{letter}项{'正确' if true else '错误'}：{q.fact}")
        answer = "".join(true_letters)
        question = f"关于{entity.name.zh}，下列说法正确的是（　　）\n" + _options_text(statements)
        out.append((question, [answer], "\n".join(notes) + f"\n所以答案是{answer}。"))
    return out


def _reading(rng, drawer: QuestionDrawer, count: int, balancer: LetterBalancer, what: str) -> list[tuple]:
    """A short passage of true facts about one person, country or city, then two or three sub-questions."""
    world = drawer.world
    entities = [e for e in world.people + world.countries + world.cities if len(_entity_kinds(world, e)) >= 4]

    def make():
        entity = rng.choice(entities)
        kinds = list(_entity_kinds(world, entity))
        rng.shuffle(kinds)
        n_questions = min(rng.choice((2, 3)), len(kinds) - 2)
        passage = [draw(rng, world, KINDS[k], entity) for k in kinds[:2]]
        asked = [draw(rng, world, KINDS[k], entity) for k in kinds[2:2 + n_questions]]
        return entity, passage, asked

    out = []
    for entity, passage, asked in drawer.unique(make, lambda item: ("passage about", item[0].name.zh), count, what):
        parts = ["阅读下面的材料，完成下列小题。\n" + "".join(q.fact for q in passage) + "\n"]
        answer, notes = [], []
        for i, q in enumerate(asked, 1):
            letter = balancer.pick()[0]
            parts.append(f"（{i}）{q.stem('exam')}\n" + _options_text(_arrange(rng, q.options("exam"), letter)))
            answer.append(letter)
            notes.append(f"（{i}）{q.fact}所以答案是{letter}。")
        out.append(("".join(parts), answer, "\n".join(notes)))
    return out


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=4) + "\n").encode("utf-8")


def gaokao_files(world: World, seed: int, questions: int) -> dict[str, tuple[int, bytes]]:
    """Obj_Prompt.json and one question file per subject; each file holds FEWSHOT + ``questions`` examples."""
    drawer = QuestionDrawer(world)
    files, prompts = {}, []
    for keyword, (qtype, kinds, score, prompt) in GAOKAO_SUBJECTS.items():
        rng = random.Random(f"{seed}/benchmarks/gaokao/{keyword}")
        balancer, count = LetterBalancer(rng), FEWSHOT + questions
        what = f"gaokao/{keyword}"
        if qtype == "single_choice":
            items = _single_choice(rng, drawer, kinds, count, balancer, what)
        elif qtype == "multi_choice":
            items = _multi_choice(rng, drawer, count, balancer, what)
        else:
            items = _reading(rng, drawer, count, balancer, what)
        examples = [_example(q, a, analysis, i, score) for i, (q, a, analysis) in enumerate(items)]
        files[f"gaokao/Objective_Questions/{keyword}.json"] = (len(examples), _json_bytes({"keywords": keyword,
                                                                                           "example": examples}))
        prompts.append({"type": qtype, "keyword": keyword, "prefix_prompt": prompt, "comment": ""})
    files["gaokao/Obj_Prompt.json"] = (len(prompts), _json_bytes({"examples": prompts}))
    return files


def check_question_count(questions: int) -> None:
    if questions < 1:
        raise ChatflowError(f"--benchmark_questions must be >= 1, got {questions}")


def benchmark_files(world: World, seed: int, questions: int = QUESTIONS_PER_SUBJECT) -> dict[str, tuple[int, bytes]]:
    """{path under benchmarks/: (records, file bytes)} for the four benchmarks."""
    check_question_count(questions)
    files = {}
    for benchmark in CSV_BENCHMARKS:
        files.update(csv_benchmark_files(world, seed, benchmark, questions))
    files.update(gaokao_files(world, seed, questions))
    return files
