"""The bundled benchmark files (corpora/benchmarks): they load, their answers are true in the world, A-D are balanced.

The answers are checked by an oracle written here from the world itself: each stem is matched
against the question templates, the subject (country, city, person, number, word) is looked up in
the world or the lexicon, and the set of true values is computed independently of the generator.
Exactly one option must be true and it must sit at the gold letter.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from test_corpora import CORPORA, SHARED, gen

import synth_benchmarks  # noqa: E402  (importable once test_corpora loaded generate.py)
import synth_lexicon as L  # noqa: E402
import synth_questions  # noqa: E402
from synth_world import build_world, en_article, en_number, zh_count, zh_number  # noqa: E402

from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.evaluation.registry import load_benchmark

BENCH = CORPORA / "benchmarks"
LETTERS = "ABCD"
FEWSHOT, QUESTIONS = synth_benchmarks.FEWSHOT, synth_benchmarks.QUESTIONS_PER_SUBJECT
SUBJECTS = {name: sorted(subjects) for name, (_, subjects) in synth_benchmarks.CSV_BENCHMARKS.items()}
SCORED = {"mmlu": "test", "ceval": "val", "cmmlu": "test"}
GAOKAO_TYPES = {k: v[0] for k, v in synth_benchmarks.GAOKAO_SUBJECTS.items()}
WORLD = build_world(0)


# ---- reading the files as their public layouts define them ------------------------------------------

def read_csv_rows(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r" not in raw and raw.endswith(b"\n"), path
    return list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))


def csv_questions(benchmark: str, path: Path) -> list[dict]:
    """[{stem, options, answer, explanation}] of one CSV file, checking the header of its layout."""
    rows = read_csv_rows(path)
    if benchmark == "mmlu":
        return [{"stem": r[0], "options": r[1:5], "answer": r[5]} for r in rows]
    header, rows = rows[0], rows[1:]
    if benchmark == "cmmlu":
        assert header == ["", "Question", "A", "B", "C", "D", "Answer"], path
    else:
        dev = path.parent.name == "dev"
        assert header == ["id", "question", "A", "B", "C", "D", "answer"] + (["explanation"] if dev else []), path
    assert [r[0] for r in rows] == [str(i) for i in range(len(rows))], f"{path}: ids are not 0, 1, 2, ..."
    return [{"stem": r[1], "options": r[2:6], "answer": r[6], "explanation": r[7] if len(r) > 7 else None} for r in rows]


def csv_files(benchmark: str) -> dict[str, list[Path]]:
    root = BENCH / benchmark
    return {split: sorted((root / split).glob("*.csv")) for split in ("dev", SCORED[benchmark])}


def gaokao(keyword: str) -> list[dict]:
    path = BENCH / "gaokao" / "Objective_Questions" / f"{keyword}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert set(data) == {"keywords", "example"} and data["keywords"] == keyword
    return data["example"]


OPTIONS = re.compile(r"\nA\. (.*)\nB\. (.*)\nC\. (.*)\nD\. (.*)\n")


def split_exam_item(text: str) -> tuple[str, list[str]]:
    """GAOKAO's question text: the stem, then one option per line."""
    m = re.fullmatch(r"(.*?)" + OPTIONS.pattern, text, re.S)
    assert m, f"no A-D option lines in {text!r}"
    return m[1], list(m.groups()[1:])


# ---- the oracle -------------------------------------------------------------------------------------------

def _lookup(lang: str) -> dict:
    by_name = {}
    for x in WORLD.countries + WORLD.cities + WORLD.people:
        by_name[getattr(x.name, lang)] = x
    return by_name


NAMES = {"en": _lookup("en"), "zh": _lookup("zh")}
PLACES = {**{r.en: r.zh for r in WORLD.rivers}, **{x.name.en: x.name.zh for x in WORLD.countries + WORLD.cities}}
VOCAB = [(t[0], t[2]) for t in L.THINGS] + [(a[0], a[2]) for a in L.ANIMALS] + list(L.JOBS) + list(L.COLOURS) \
    + list(L.FOODS) + [(a[0], a[4]) for a in L.ACTIVITIES]
EN_NUMBERS = {en_number(n): n for n in range(0, 100)}
ZH_COUNTS = sorted({zh_count(n): n for n in range(0, 100)}.items(), key=lambda kv: -len(kv[0]))


def _is(obj, kind) -> bool:
    return type(obj).__name__ == kind


def _entity(lang: str, name: str, kind: str):
    obj = NAMES[lang].get(name)
    if obj is None or not _is(obj, kind):
        raise LookupError(name)
    return obj


def _things(lang: str, n: int, thing: tuple) -> str:
    sing, plural, zh, cl = thing
    return f"{en_number(n)} {sing if n == 1 else plural}" if lang == "en" else f"{zh_count(n)}{cl}{zh}"


def _things_of_story(story: str) -> str:
    """'郭燕有四座桥。...' -> '座桥' (the classifier and noun after the first count)."""
    first = story.split("。")[0]
    return max((t[3] + t[2] for t in L.THINGS if first.endswith(t[3] + t[2])), key=len)


def _story_total(lang: str, story: str, things: str) -> tuple[int, tuple]:
    """The count a word problem's story ends with: 'A has five pens. B gives him two pens.' -> 7."""
    if lang == "en":
        thing = next(t for t in L.THINGS if t[1] == things)
        m = re.fullmatch(r"(.+?) has (.+?) \w+\. (?:(.+?) gives (?:him|her) (.+?) \w+|(?:He|She) gives (.+?) \w+ to (.+?))\.",
                         story)
        start = EN_NUMBERS[m[2]]
        return (start + EN_NUMBERS[m[4]] if m[3] else start - EN_NUMBERS[m[5]]), thing
    thing = next(t for t in L.THINGS if t[3] + t[2] == things)
    number = "|".join(re.escape(n) for n, _ in ZH_COUNTS)
    t = re.escape(things)
    m = re.fullmatch(rf"(.+?)有({number}){t}。(?:(?:他|她)给了(.+?)({number}){t}|(.+?)给了(?:他|她)({number}){t})。", story)
    counts = dict(ZH_COUNTS)
    start = counts[m[2]]
    return (start - counts[m[4]] if m[3] else start + counts[m[6]]), thing


def truths(kind: str, lang: str, f: dict) -> set[str]:
    """The true answers of a question of ``kind`` with template fields ``f`` (raises if the fields name nothing)."""
    x = f.get("x")
    if kind in ("capital", "product", "region", "neighbour"):
        k = _entity(lang, x, "Country")
        if kind == "capital":
            return {getattr(k.capital.name, lang)}
        if kind == "product":
            return {getattr(k.product, lang)}
        if kind == "region":
            return {f"the {k.region.en}" if lang == "en" else k.region.zh}
        return {getattr(o.name, lang) for o in k.neighbours}
    if kind in ("country_of_city", "river", "weather", "resident"):
        c = _entity(lang, x, "City")
        if kind == "country_of_city":
            return {getattr(c.country.name, lang)}
        if kind == "river":
            if c.river is None:
                raise LookupError(x)
            return {f"the {c.river.en} River" if lang == "en" else c.river.zh + "河"}
        if kind == "weather":
            return {getattr(c.weather, lang)}
        return {getattr(p.name, lang) for p in WORLD.people if p.home is c}
    if kind in synth_questions.PEOPLE:
        p = _entity(lang, x, "Person")
        value = {"job": p.job, "home": p.home.name, "birthplace": p.birthplace.name, "food": p.food,
                 "colour": p.colour, "friend": p.friend.name if p.friend else None}.get(kind)
        if value is not None:
            return {getattr(value, lang)}
        if kind == "age":
            return {str(p.age)}
        if kind == "activity":
            return {p.activity[0] if lang == "en" else p.activity[4]}
        if kind == "pet" and p.pet is not None:
            sing, _, zh, cl = p.pet
            return {f"{en_article(sing)} {sing}" if lang == "en" else f"一{cl}{zh}"}
        raise LookupError(x)
    if kind == "arithmetic":
        m = re.fullmatch(r"(\d+) (plus|minus|times) (\d+)" if lang == "en" else r"(\d+)(加|减|乘以)(\d+)", x)
        a, op, b = int(m[1]), m[2], int(m[3])
        return {str(a + b if op in ("plus", "加") else a - b if op in ("minus", "减") else a * b)}
    if kind == "word_problem":
        things = f.get("things") or _things_of_story(f["story"])     # the statement form names them only in the story
        total, thing = _story_total(lang, f["story"], things)
        assert total >= 0
        return {_things(lang, total, thing)}
    if kind == "number_words":
        return {(en_number if lang == "en" else zh_number)(int(x))}
    if kind == "word_to_zh":
        return {zh for en, zh in VOCAB if en == x} or _fail(x)
    if kind == "word_to_en":
        return {en for en, zh in VOCAB if zh == x} or _fail(x)
    if kind == "name_to_zh":
        return {PLACES[x]}
    if kind == "name_to_en":
        return {en for en, zh in PLACES.items() if zh == x} or _fail(x)
    raise AssertionError(f"oracle has no rule for {kind}")


def _fail(x):
    raise LookupError(x)


FIELD_PATTERNS = {"story": r".+[。.]", "p": r"[^。.]+?"}     # a word problem's story ends at its last full stop


def _template_regex(template: str, blank: str | None) -> re.Pattern:
    """A question template as a regex: {field} -> a named group; {v} -> the blank, or a group when blank is None."""
    parts = re.split(r"\{(\w+)\}", template)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        elif part == "v" and blank is not None:
            out.append(re.escape(blank))
        else:
            out.append(f"(?P<{part}>{FIELD_PATTERNS.get(part, '.+?')})")
    return re.compile("".join(out), re.S)


def _templates(style: str):
    for kind in synth_questions.KINDS.values():
        if style in ("en", "zh"):
            template = getattr(kind, style)
            if template is not None:
                yield kind.name, _template_regex(template, None)
        else:
            yield kind.name, _template_regex(kind.statement, synth_questions.BLANK.get(style))


PATTERNS = {style: list(_templates(style)) for style in ("en", "zh", "cloze", "exam", "statement")}


def true_answers(stem: str, style: str) -> set[str]:
    """Every reading of ``stem`` that names something in the world gives its true answers."""
    lang = "en" if style == "en" else "zh"
    found = []
    for kind, pattern in PATTERNS[style]:
        m = pattern.fullmatch(stem)
        if m:
            try:
                found.append(truths(kind, lang, m.groupdict()))
            except (LookupError, StopIteration, TypeError, AttributeError, ValueError):
                continue
    assert found, f"no question template explains {stem!r}"
    assert all(t == found[0] for t in found), f"{stem!r} reads two ways with different answers"
    return found[0]


def statement_is_true(sentence: str) -> bool:
    for kind, pattern in PATTERNS["statement"]:
        m = pattern.fullmatch(sentence)
        if m:
            fields = m.groupdict()
            value = fields.pop("v")
            try:
                return value in truths(kind, "zh", fields)
            except (LookupError, StopIteration, TypeError, AttributeError, ValueError):
                continue
    raise AssertionError(f"no statement template explains {sentence!r}")


def check_answer(stem: str, options: list[str], answer: str, style: str, where: str) -> None:
    truth = true_answers(stem, style)
    assert len(set(options)) == 4 and all(o.strip() for o in options), f"{where}: options not four distinct texts"
    true_letters = [letter for letter, o in zip(LETTERS, options) if o in truth]
    assert true_letters == [answer], f"{where}: {stem!r} true options {true_letters}, gold {answer}"


# ---- they load --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mmlu", "ceval", "cmmlu"])
@pytest.mark.parametrize("k", [0, 3, 5])
def test_csv_benchmarks_load_every_row(name, k):
    bench = load_benchmark(name, BENCH / name, k)
    assert bench.skipped == [], [(s.location, s.reason) for s in bench.skipped]
    assert [s.name for s in bench.subjects] == SUBJECTS[name]
    for s in bench.subjects:
        assert len(s.fewshot_pool) == FEWSHOT and len(s.questions) == QUESTIONS


def test_gaokao_loads_every_item_and_the_letter_reading_scores_every_objective_type():
    from chatflow_plugin.evaluation.registry import protocols_of

    bench = load_benchmark("gaokao", BENCH / "gaokao", 3)
    single = sorted(k for k, t in GAOKAO_TYPES.items() if t == "single_choice")
    # every objective type is read (the official generation protocol scores them all), nothing skipped
    assert sorted((s.name, s.kind) for s in bench.subjects) == sorted(GAOKAO_TYPES.items()) and not bench.skipped
    # the 3-shot letter reading scores every objective type (single and multiple answers, multi-question, 5 of 7)
    letter_kinds = protocols_of("gaokao")[0].kinds
    assert set(letter_kinds) == {"single_choice", "multi_choice", "multi_question_choice", "five_out_of_seven"}
    assert [s.name for s in bench.subjects if s.kind in letter_kinds] == sorted(
        k for k, t in GAOKAO_TYPES.items() if t in letter_kinds) and single
    for s in bench.subjects:
        if s.kind != "single_choice":
            continue
        assert len(s.fewshot_pool) == 3 and len(s.questions) == FEWSHOT + QUESTIONS - 3
        assert s.header.startswith("下面是") and "【答案】" in s.header
        assert all(q.points == 5 for q in s.questions)


def test_files_have_the_public_layouts():
    for name in SUBJECTS:
        for split, paths in csv_files(name).items():
            assert [p.name for p in paths] == [p.name for p in sorted(paths)]
            assert len(paths) == len(SUBJECTS[name])
            for path in paths:
                rows = csv_questions(name, path)
                assert len(rows) == (FEWSHOT if split == "dev" else QUESTIONS), path
                assert all(len(r["options"]) == 4 and r["answer"] in LETTERS for r in rows), path
    prompts = json.loads((BENCH / "gaokao" / "Obj_Prompt.json").read_text(encoding="utf-8"))
    assert [set(e) for e in prompts["examples"]] == [{"type", "keyword", "prefix_prompt", "comment"}] * len(GAOKAO_TYPES)
    assert {e["keyword"]: e["type"] for e in prompts["examples"]} == GAOKAO_TYPES
    assert {"single_choice", "multi_choice", "multi_question_choice"} == set(GAOKAO_TYPES.values())
    for keyword in GAOKAO_TYPES:
        examples = gaokao(keyword)
        assert len(examples) == FEWSHOT + QUESTIONS
        for i, ex in enumerate(examples):
            assert set(ex) == {"year", "category", "question", "answer", "analysis", "index", "score"}
            assert ex["index"] == i and isinstance(ex["score"], int) and isinstance(ex["year"], str)
            assert isinstance(ex["answer"], list) and ex["answer"] and ex["question"].endswith("\n")


@pytest.mark.skipif(not (SHARED / "benchmarks").is_dir(), reason="/work/shared/data (real data samples) is not on this machine")
def test_layouts_match_the_shared_real_samples():
    real = SHARED / "benchmarks"
    for name in SUBJECTS:
        for split in ("dev", SCORED[name]):
            theirs = read_csv_rows(sorted((real / name / split).glob("*.csv"))[0])
            ours = read_csv_rows(csv_files(name)[split][0])
            assert len(theirs[0]) == len(ours[0]), (name, split)
            if name != "mmlu":
                assert theirs[0] == ours[0], (name, split)          # the header row
    theirs = json.loads((real / "gaokao" / "Obj_Prompt.json").read_text(encoding="utf-8"))["examples"][0]
    ours = json.loads((BENCH / "gaokao" / "Obj_Prompt.json").read_text(encoding="utf-8"))["examples"][0]
    assert set(theirs) <= set(ours)
    real_file = sorted((real / "gaokao" / "Objective_Questions").glob("*.json"))[0]
    real_example = json.loads(real_file.read_text(encoding="utf-8"))["example"][0]
    assert set(real_example) == set(gaokao(next(iter(GAOKAO_TYPES)))[0])
    # multiple answers are one string of letters in GAOKAO-Bench (["AC"]); check the reference sample agrees
    assert all(isinstance(a, str) for a in real_example["answer"])


# ---- the answers are true -------------------------------------------------------------------------------------

STYLE = {"mmlu": "en", "ceval": "cloze", "cmmlu": "zh"}


@pytest.mark.parametrize("name", ["mmlu", "ceval", "cmmlu"])
def test_csv_answers_agree_with_the_world(name):
    checked = 0
    for paths in csv_files(name).values():
        for path in paths:
            for i, q in enumerate(csv_questions(name, path), 1):
                check_answer(q["stem"], q["options"], q["answer"], STYLE[name], f"{path.name}:{i}")
                if q.get("explanation") is not None:       # C-Eval dev: the true statement, then the letter
                    fact, letter = re.fullmatch(r"(.+。)所以答案是([A-D])。", q["explanation"]).groups()
                    assert letter == q["answer"] and statement_is_true(fact), q
                checked += 1
    assert checked == len(SUBJECTS[name]) * (FEWSHOT + QUESTIONS)


def test_gaokao_answers_agree_with_the_world():
    kinds = Counter()
    for keyword, qtype in GAOKAO_TYPES.items():
        for i, ex in enumerate(gaokao(keyword)):
            where = f"{keyword}[{i}]"
            if qtype == "single_choice":
                stem, options = split_exam_item(ex["question"])
                check_answer(stem, options, ex["answer"][0], "exam", where)
                assert ex["analysis"].endswith(f"所以答案是{ex['answer'][0]}。")
            elif qtype == "multi_choice":
                stem, statements = split_exam_item(ex["question"])
                assert re.fullmatch(r"关于(.+)，下列说法正确的是（　　）", stem), where
                true = "".join(letter for letter, s in zip(LETTERS, statements) if statement_is_true(s))
                assert ex["answer"] == [true] and 1 <= len(true) <= 3, f"{where}: {statements} gold {ex['answer']}"
            else:
                head, *subs = re.split(r"（\d）", ex["question"])
                intro, passage, rest = head.split("\n", 2)
                assert intro == "阅读下面的材料，完成下列小题。" and rest == "", where
                assert all(statement_is_true(s + "。") for s in passage.split("。")[:-1]), f"{where}: {passage}"
                assert len(subs) == len(ex["answer"]) in (2, 3), where
                for sub, gold in zip(subs, ex["answer"]):
                    stem, options = split_exam_item(sub)
                    check_answer(stem, options, gold, "exam", where)
            kinds[qtype] += 1
    assert kinds == {t: FEWSHOT * n + QUESTIONS * n for t, n in Counter(GAOKAO_TYPES.values()).items()}


def test_no_false_option_is_stated_anywhere_in_the_chinese_corpora():
    """A distractor made true by some sentence of the corpora would make the question unanswerable."""
    text = "".join(json.loads(line)["text"] for line in open(CORPORA / "zh_corpus/synthetic_zh.jsonl", encoding="utf-8"))
    stated, false_stated, total = 0, [], 0
    for path in csv_files("ceval")["val"]:
        for q in csv_questions("ceval", path):
            if "____" not in q["stem"] or not statement_template_known(q["stem"]):
                continue
            for letter, option in zip(LETTERS, q["options"]):
                sentence = q["stem"].replace("____", option).rstrip("。")
                if letter == q["answer"]:
                    stated += sentence in text
                    total += 1
                elif sentence in text:
                    false_stated.append(sentence)
    assert not false_stated
    assert stated > 0.4 * total, f"only {stated}/{total} true answers are stated verbatim in the Chinese corpus"


def statement_template_known(stem: str) -> bool:
    return any(p.fullmatch(stem) for _, p in PATTERNS["cloze"])


# ---- balance and uniqueness ------------------------------------------------------------------------------------

def _balanced(letters: list[str], where: str) -> None:
    counts = Counter({letter: 0 for letter in LETTERS})
    counts.update(letters)
    assert max(counts.values()) - min(counts.values()) <= 1, f"{where}: answer letters {dict(counts)}"


def test_answer_letters_are_balanced_in_every_file():
    for name in SUBJECTS:
        for paths in csv_files(name).values():
            for path in paths:
                _balanced([q["answer"] for q in csv_questions(name, path)], path.name)
    for keyword in GAOKAO_TYPES:
        letters = [letter for ex in gaokao(keyword) for answer in ex["answer"] for letter in answer]
        _balanced(letters, keyword)              # multiple answers: how often each letter is among the true ones
    sizes = Counter(len(ex["answer"][0]) for ex in gaokao("World_Facts_Multi_Answer"))
    assert set(sizes) == {1, 2, 3} and max(sizes.values()) - min(sizes.values()) <= 1


def test_questions_are_unique_within_each_benchmark():
    for name in SUBJECTS:
        stems = [q["stem"] for paths in csv_files(name).values() for p in paths for q in csv_questions(name, p)]
        assert len(stems) == len(set(stems)), f"{name}: a question occurs twice (dev exemplars must not be test items)"
    items = [ex["question"] for keyword in GAOKAO_TYPES for ex in gaokao(keyword)]
    assert len(items) == len(set(items))


def test_options_are_in_the_benchmark_language():
    cjk = re.compile(r"[\u4e00-\u9fff]")
    for paths in csv_files("mmlu").values():
        for path in paths:
            for q in csv_questions("mmlu", path):
                assert not cjk.search(q["stem"] + "".join(q["options"])), q
    for name in ("ceval", "cmmlu"):
        for paths in csv_files(name).values():
            for path in paths:
                assert all(cjk.search(q["stem"]) for q in csv_questions(name, path)), path


# ---- generation ----------------------------------------------------------------------------------------------------

def test_generation_is_deterministic_and_seed_dependent(tmp_path):
    a = gen.generate_benchmarks(tmp_path / "a", seed=5, questions=8)
    b = gen.generate_benchmarks(tmp_path / "b", seed=5, questions=8)
    gen.generate_benchmarks(tmp_path / "c", seed=6, questions=8)
    assert a == b and len(a) == 23
    for rel in a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    rel = "benchmarks/mmlu/test/world_people_test.csv"
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()
    assert a[rel] == (8, (tmp_path / "a" / rel).stat().st_size)
    bench = load_benchmark("cmmlu", tmp_path / "a" / "benchmarks" / "cmmlu", 3)
    assert not bench.skipped and all(len(s.questions) == 8 for s in bench.subjects)
    assert not list((tmp_path / "a").rglob("*.tmp")), "temporary files left behind"


def test_bad_question_counts_are_clear_errors_and_write_nothing(tmp_path, capsys):
    with pytest.raises(ChatflowError, match="--benchmark_questions must be >= 1"):
        gen.generate_benchmarks(tmp_path, questions=0)
    with pytest.raises(ChatflowError, match="gaokao/World_Facts_Multi_Answer: only 92 distinct questions"):
        gen.generate_benchmarks(tmp_path, questions=88)      # one multiple-answer item per person and country
    assert gen.cli_main(["--benchmark_questions", "0", "--output_dir", str(tmp_path)]) == 2
    assert "error: --benchmark_questions must be >= 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing may be written on bad options"


def test_cli_prints_the_benchmark_table(tmp_path, capsys):
    assert gen.cli_main(["--scale", "0.01", "--benchmark_questions", "6", "--output_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| `benchmarks/mmlu/test/` | 3 | 18 |" in out and "| `benchmarks/gaokao/Obj_Prompt.json` | 1 | 4 |" in out
    assert len(load_benchmark("gaokao", tmp_path / "benchmarks" / "gaokao", 5).subjects[0].questions) == 6


def test_distractors_exclude_overlapping_meanings():
    """A parrot is a bird, a singer a musician: neither is offered as the wrong answer for the other."""
    import random
    rng = random.Random(0)
    close = {"bird": {"parrot", "duck"}, "parrot": {"bird"}, "duck": {"bird"}, "singer": {"musician"},
             "musician": {"singer"}}
    seen = Counter()
    for kind, people in (("pet", [p for p in WORLD.people if p.pet is not None]), ("job", WORLD.people)):
        for p in people:
            for _ in range(10):
                q = synth_questions.draw(rng, WORLD, synth_questions.KINDS[kind], p)
                answer = q.answer.en.split()[-1]
                assert not close.get(answer, set()) & {d.en.split()[-1] for d in q.distractors}, q
                seen[answer in close] += 1
    assert seen[True] > 0
