"""Benchmark readers and prompts: tiny files in each public layout, bad input, and the real samples."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from chatflow_plugin.errors import ChatflowError, DataError
from chatflow_plugin.evaluation.benchmarks import LETTERS, read_csv_questions, read_gaokao
from chatflow_plugin.evaluation.registry import BENCHMARKS, build_prompt, load_benchmark, protocols_of
from chatflow_plugin.evaluation.subject_names import CEVAL_SUBJECTS_ZH, CMMLU_SUBJECTS_ZH

REAL = Path("/work/shared/data/benchmarks")
WORDS = "river mountain school teacher student computer program water city music history science".split()
ZH = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"


def _rows(n: int, seed: int, zh: bool = False) -> list[list[str]]:
    rng = random.Random(seed)
    word = (lambda: "".join(rng.choice(ZH) for _ in range(4))) if zh else (lambda: rng.choice(WORDS))
    return [[" ".join(word() for _ in range(6)) + "?", word(), word(), word(), word(), LETTERS[i % 4]]
            for i in range(n)]


def write_mmlu(root: Path, subjects=("algebra", "world_religions"), n_test=8, n_dev=5, seed=0) -> Path:
    for split, n in (("dev", n_dev), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for j, s in enumerate(subjects):
            with open(root / split / f"{s}_{split}.csv", "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows(_rows(n, seed + j + (100 if split == "dev" else 0)))
    return root


def write_ceval(root: Path, subjects=("law", "logic"), n_val=8, seed=0) -> Path:
    for split, n in (("dev", 5), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for j, s in enumerate(subjects):
            with open(root / split / f"{s}_{split}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["id", "question", "A", "B", "C", "D", "answer"] + (["explanation"] if split == "dev" else []))
                for i, r in enumerate(_rows(n, seed + j, zh=True)):
                    w.writerow([i] + r + (["解析"] if split == "dev" else []))
    return root


def write_cmmlu(root: Path, subjects=("chinese_history", "arts"), n_test=8, seed=0) -> Path:
    for split, n in (("dev", 5), ("test", n_test)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for j, s in enumerate(subjects):
            with open(root / split / f"{s}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
                for i, r in enumerate(_rows(n, seed + j, zh=True)):
                    w.writerow([i] + r)
    return root


def write_gaokao(root: Path, n=10, seed=0) -> Path:
    (root / "Objective_Questions").mkdir(parents=True, exist_ok=True)
    prompts = {"examples": [
        {"keyword": "2010-2022_Biology_MCQs", "type": "single_choice", "prefix_prompt": "请你做一道生物选择题\n题目如下："},
        {"keyword": "2010-2022_Geography_MCQs", "type": "multi_question_choice", "prefix_prompt": "地理"}]}
    (root / "Obj_Prompt.json").write_text(json.dumps(prompts, ensure_ascii=False), encoding="utf-8")
    rng = random.Random(seed)
    examples = []
    for i, r in enumerate(_rows(n, seed, zh=True)):
        q = f"{i + 1}．（6分）{r[0]}（ ）\nA．{r[1]} B．{r[2]}\nC．{r[3]} D．{r[4]}\n"
        examples.append({"year": "2010", "category": "（新课标）", "question": q, "answer": [r[5]],
                         "analysis": "", "index": i, "score": rng.choice([5, 6])})
    for keyword, ex in (("2010-2022_Biology_MCQs", examples),
                        ("2010-2022_Geography_MCQs", [dict(examples[0], answer=["B", "C"])])):
        (root / "Objective_Questions" / f"{keyword}.json").write_text(
            json.dumps({"keywords": keyword, "example": ex}, ensure_ascii=False), encoding="utf-8")
    return root


def write_gaokao_all_kinds(root: Path, n: int = 4, seed: int = 0) -> Path:
    """One GAOKAO file of each objective type: single-choice, multiple-answer (Physics, 6 points as in the
    release), multi-question (2-3 sub-questions) and 5-of-7 (letters A-G), ``n`` examples each."""
    (root / "Objective_Questions").mkdir(parents=True, exist_ok=True)
    kinds = {"2010-2022_Biology_MCQs": "single_choice", "2010-2022_Physics_MCQs": "multi_choice",
             "2010-2022_Geography_MCQs": "multi_question_choice", "2012-2022_English_Cloze_Test": "five_out_of_seven"}
    prompts = {"examples": [{"keyword": k, "type": t, "prefix_prompt": f"请你做一道{t}题\n题目如下："}
                            for k, t in kinds.items()]}
    (root / "Obj_Prompt.json").write_text(json.dumps(prompts, ensure_ascii=False), encoding="utf-8")
    rng = random.Random(seed)
    for keyword, kind in kinds.items():
        examples = []
        for i, r in enumerate(_rows(n, seed + len(keyword), zh=True)):
            if kind == "single_choice":
                answer, score = [r[5]], 5
            elif kind == "multi_choice":
                answer, score = ["".join(sorted(rng.sample("ABCD", rng.randint(1, 3))))], 6
            elif kind == "multi_question_choice":
                answer, score = [rng.choice("ABCD") for _ in range(rng.randint(2, 3))], 4
            else:
                answer, score = rng.sample("ABCDEFG", 5), 2
            q = f"{i + 1}．{r[0]}（ ）\nA．{r[1]} B．{r[2]}\nC．{r[3]} D．{r[4]}\n"
            examples.append({"year": "2012", "category": "（新课标）", "question": q, "answer": answer,
                             "analysis": "", "index": i, "score": score})
        (root / "Objective_Questions" / f"{keyword}.json").write_text(
            json.dumps({"keywords": keyword, "example": examples}, ensure_ascii=False), encoding="utf-8")
    return root


WRITERS = {"mmlu": write_mmlu, "ceval": write_ceval, "cmmlu": write_cmmlu, "gaokao": write_gaokao}


@pytest.mark.parametrize("name", list(WRITERS))
def test_each_layout_reads_subjects_pool_and_scored_split(tmp_path, name):
    root = WRITERS[name](tmp_path / name)
    bench = load_benchmark(name, root, num_fewshot=3)
    assert bench.language == ("en" if name == "mmlu" else "zh")
    if name == "gaokao":
        # every objective type is read, and both protocols score every type
        assert [(s.name, s.kind) for s in bench.subjects] == [("2010-2022_Biology_MCQs", "single_choice"),
                                                              ("2010-2022_Geography_MCQs", "multi_question_choice")]
        assert bench.subjects[1].fewshot_pool[0].answers == ("B", "C") and not bench.skipped
        assert all(s.kind in p.kinds for p in protocols_of("gaokao") for s in bench.subjects)
        subject = bench.subjects[0]
        assert len(subject.fewshot_pool) == 3 and len(subject.questions) == 7   # first 3 held out
        assert subject.questions[0].location.endswith("#example[3]") and subject.questions[0].points in (5, 6)
        assert subject.header.startswith("请你做一道生物选择题")
    else:
        assert len(bench.subjects) == 2 and bench.n_questions == 16 and not bench.skipped
        s = bench.subjects[0]
        assert len(s.fewshot_pool) == 5 and len(s.questions[0].choices) == 4
        assert [q.answer for q in s.questions[:4]] == list(LETTERS)
        # line numbers are file lines (header counted)
        assert s.questions[0].location.endswith(":1" if name == "mmlu" else ":2")


def test_malformed_rows_are_reported_and_skipped(tmp_path):
    root = write_mmlu(tmp_path / "mmlu")
    path = root / "test" / "algebra_test.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "only,three,cols\n,a,b,c,d,A\nq?,a,b,c,d,E\n\"multi\nline q\",a,b,c,d,b\n",
                    encoding="utf-8")
    bench = load_benchmark("mmlu", root, 3)
    reasons = {s.location.rsplit(":", 1)[1]: s.reason for s in bench.skipped}
    assert reasons == {"9": "3 columns, expected at least 6", "10": "empty question",
                       "11": "answer 'E' is not one of A/B/C/D"}
    algebra = next(s for s in bench.subjects if s.name == "algebra")
    assert len(algebra.questions) == 9
    last = algebra.questions[-1]
    assert last.question == "multi\nline q" and last.answer == "B" and last.location.endswith(":12")
    with pytest.raises(DataError, match=r"algebra_test.csv:9: 3 columns"):
        read_csv_questions(path, None)   # strict mode without a skip list


def test_missing_files_and_directories_are_clear_errors(tmp_path):
    root = write_mmlu(tmp_path / "mmlu")
    (root / "dev" / "algebra_dev.csv").unlink()
    with pytest.raises(ChatflowError, match=r"few-shot files missing .*algebra_dev.csv"):
        load_benchmark("mmlu", root, 3)
    with pytest.raises(ChatflowError, match=r"directory .*val not found"):
        load_benchmark("ceval", root, 3)
    with pytest.raises(ChatflowError, match="unknown benchmark"):
        load_benchmark("arc", root, 3)
    empty = tmp_path / "cm"
    (empty / "dev").mkdir(parents=True)
    (empty / "test").mkdir()
    with pytest.raises(ChatflowError, match="no \\*.csv files"):
        load_benchmark("cmmlu", empty, 3)
    with pytest.raises(ChatflowError, match="Obj_Prompt.json not found"):
        read_gaokao(tmp_path, 3)


def test_bad_header_and_encoding(tmp_path):
    root = write_cmmlu(tmp_path / "cmmlu")
    bad = root / "test" / "arts.csv"
    bad.write_text("x,y,z\n1,2,3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"arts.csv:1: header .* lacks the column 'Question'"):
        load_benchmark("cmmlu", root, 3)
    bad.write_bytes(",Question,A,B,C,D,Answer\n0,\xff\xfe,a,b,c,d,A\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_benchmark("cmmlu", root, 3)


def test_gaokao_bad_json_names_the_file(tmp_path):
    root = write_gaokao(tmp_path / "gaokao")
    (root / "Objective_Questions" / "2010-2022_Biology_MCQs.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="Biology_MCQs.json: not a GAOKAO-Bench question file"):
        load_benchmark("gaokao", root, 3)


def test_prompts_follow_each_benchmarks_format(tmp_path):
    mmlu = load_benchmark("mmlu", write_mmlu(tmp_path / "mmlu"), 2)
    s = next(x for x in mmlu.subjects if x.name == "world_religions")
    ctx, conts = build_prompt("mmlu", s, s.questions[0], 2, "lm-eval")
    assert ctx.startswith("The following are multiple choice questions (with answers) about world religions.\n\n")
    assert ctx.endswith("\nD. " + s.questions[0].choices[3] + "\nAnswer:") and conts == [" A", " B", " C", " D"]
    assert ctx.count("Answer:") == 3 and f"Answer: {s.fewshot_pool[1].answer}\n\n" in ctx
    assert s.fewshot_pool[2].question not in ctx   # exactly k exemplars, the first k
    # hendrycks/test's format_subject puts a space before every word: "about" is followed by two
    official, _ = build_prompt("mmlu", s, s.questions[0], 2)
    assert official.startswith("The following are multiple choice questions (with answers) about  world religions.\n\n")
    assert official.replace("about  world", "about world") == ctx

    ceval = load_benchmark("ceval", write_ceval(tmp_path / "ceval"), 1)
    ctx, conts = build_prompt("ceval", ceval.subjects[0], ceval.subjects[0].questions[0], 1)
    # the file key, as hkust-nlp/ceval's eval_llama.py passes it to the header (lm-eval: the Chinese name)
    assert ctx.startswith("以下是中国关于law考试的单项选择题，请选出其中的正确答案。\n\n")
    assert build_prompt("ceval", ceval.subjects[0], ceval.subjects[0].questions[0], 1, "lm-eval")[0].startswith(
        "以下是中国关于法学的单项选择题，请选出其中的正确答案。\n\n")
    assert ctx.endswith("\n答案：") and conts == ["A", "B", "C", "D"]
    assert f"答案：{ceval.subjects[0].fewshot_pool[0].answer}\n\n" in ctx

    cmmlu = load_benchmark("cmmlu", write_cmmlu(tmp_path / "cmmlu"), 0)
    ctx, _ = build_prompt("cmmlu", cmmlu.subjects[0], cmmlu.subjects[0].questions[0], 0)
    assert ctx.startswith("以下是关于艺术学的单项选择题，请直接给出正确答案的选项。\n\n题目：") and ctx.endswith("\n答案是：")

    gk = load_benchmark("gaokao", write_gaokao(tmp_path / "gaokao"), 1)
    ctx, conts = build_prompt("gaokao", gk.subjects[0], gk.subjects[0].questions[0], 1)
    assert ctx.startswith("请你做一道生物选择题\n题目如下：\n") and ctx.endswith("【答案】:") and conts[0] == " A"
    assert f"【答案】: {gk.subjects[0].fewshot_pool[0].answer} <eoa>\n\n" in ctx
    assert set(BENCHMARKS) == {"mmlu", "ceval", "cmmlu", "gaokao"}


def test_subject_name_tables_are_complete():
    assert len(CEVAL_SUBJECTS_ZH) == 52 and len(CMMLU_SUBJECTS_ZH) == 67


@pytest.mark.skipif(not REAL.is_dir(), reason="real benchmark samples absent (/work/shared/data/benchmarks)")
def test_real_sample_files_parse_completely():
    counts = {}
    for name in ("mmlu", "ceval", "cmmlu", "gaokao"):
        bench = load_benchmark(name, REAL / name, 3)
        kinds = protocols_of(name)[0].kinds   # the Table 2 protocol's view: every objective type
        letter_subjects = [s for s in bench.subjects if s.kind in kinds]
        skipped = len(bench.skipped) + len(bench.subjects) - len(letter_subjects)
        counts[name] = (len(letter_subjects), sum(len(s.questions) for s in letter_subjects), skipped)
        for s in bench.subjects:
            assert len(s.fewshot_pool) >= 3
            for q in s.questions:
                assert (q.answer in LETTERS if s.kind == "single_choice" else not q.answer) and q.question.strip()
        if name == "ceval":
            assert {s.name for s in bench.subjects} <= set(CEVAL_SUBJECTS_ZH)
        if name == "cmmlu":
            assert {s.name for s in bench.subjects} <= set(CMMLU_SUBJECTS_ZH)
    # README counts: every row readable; the first 3 examples of each GAOKAO file held out as exemplars
    assert counts["mmlu"] == (5, 669, 0)
    assert counts["ceval"] == (52, 1346, 0)
    assert counts["cmmlu"] == (4, 773, 0)
    assert counts["gaokao"] == (5, 150 + 124 + 34 + 287 + 214 - 15, 0)
    gaokao = load_benchmark("gaokao", REAL / "gaokao", 3)   # the generation protocol's view: every question
    geography = next(s for s in gaokao.subjects if s.kind == "multi_question_choice")
    assert len(geography.fewshot_pool + geography.questions) == 34 and not gaokao.skipped
    assert {len(q.answers) for q in geography.questions} == {2, 3}
