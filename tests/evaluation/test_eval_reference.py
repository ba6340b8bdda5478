"""Agreement with the benchmarks' own evaluators, re-implemented here from their public code.

Each ``reference_*`` function below restates what the official script does (read with pandas, build
the prompt, pick the exemplars, read the letter logits, average), independently of the package's
code paths, from the repositories' own files (the commits the registry names):

* MMLU: hendrycks/test ``evaluate.py`` (``format_subject``, ``format_example``, ``gen_prompt``, the
  ``k -= 1`` loop while ``crop(prompt) != prompt``, i.e. while the prompt is over 2,048 tokens; the
  weighted (micro) average). ``crop.py`` counts GPT-2 tokens, which cannot be downloaded here: the
  model's own tokenizer stands in for it (the package does the same);
* C-Eval: hkust-nlp/ceval ``code/evaluator_series/evaluators/llama.py`` with ``eval_llama.py``, which
  passes the subject's file key (``operating_system``) to ``generate_few_shot_prompt`` (answer-only
  prompt, the logits of ``tokenizer.encode(letter, bos=False)[0]``; the mean of subject accuracies);
* CMMLU: haonan-li/CMMLU ``src/mp_utils.py`` (``gen_prompt`` with a tokenizer and ``--max_length`` 2048:
  longest exemplars dropped, ``get_results``' mean over subjects) and ``src/hf_causal_model.py``
  (``convert_tokens_to_ids``);
* GAOKAO-Bench: ``Bench/bench_function.py extract_choice_answer`` and ``Bench/OBJ_score_evaluation.py``.

The package's ``official`` protocols must give the same prompts byte for byte (every item of the bundled
benchmark files at the default settings; files written here with exemplars dropped), the same
predictions and the same headline. Differences that remain by design are in docs/evaluation.md.
"""
from __future__ import annotations

import csv
import json
import random
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_eval_benchmarks import write_gaokao, write_gaokao_all_kinds
from test_eval_models import OracleLM, letters_llama_dir, torch_single_thread  # noqa: F401 (fixtures)

from chatflow_plugin.evaluation import gaokao_rules
from chatflow_plugin.evaluation.prompts import PromptPlanner
from chatflow_plugin.evaluation.readings import letter_sets
from chatflow_plugin.evaluation.protocols import REFERENCE_MAX_LENGTH
from chatflow_plugin.evaluation.registry import load_benchmark, protocols_of
from chatflow_plugin.evaluation.run import EvalSettings, evaluate_benchmark, prompt_lengths
from chatflow_plugin.evaluation.scoring import LetterScorer, load_model
from chatflow_plugin.evaluation.subject_names import CMMLU_SUBJECTS_ZH

pd = pytest.importorskip("pandas", reason="the reference evaluators read CSV with pandas (pip install pandas)")

BUNDLED = Path(__file__).resolve().parents[2] / "corpora" / "benchmarks"
CHOICES = ["A", "B", "C", "D"]
WORDS = "river mountain school teacher student computer program water city music history science".split()
ZH = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"


@pytest.fixture(scope="module")
def letters(letters_llama_dir):
    return load_model(str(letters_llama_dir), device="cpu")


def _rows(n: int, rng: random.Random, zh: bool, long_every: int = 0) -> list[list[str]]:
    word = (lambda: "".join(rng.choice(ZH) for _ in range(3))) if zh else (lambda: rng.choice(WORDS))
    rows = []
    for i in range(n):
        length = 40 if long_every and i % long_every == 1 else 5
        q = " ".join(word() for _ in range(length)) + ("？" if zh else "?")
        choices = [word(), word(), word(), word()]
        if i == 2:
            choices = ["4", "0.5", "None", " 7 "]   # pandas: numbers as numbers, None -> nan
        rows.append([q, *choices, CHOICES[rng.randrange(4)]])
    return rows


def _write(path: Path, header: list[str] | None, rows: list[list[str]], index: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        for i, r in enumerate(rows):
            w.writerow(([i] if index else []) + r)


def _next_token_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


# ---------------------------------------------------------------- MMLU (hendrycks/test evaluate.py)

def reference_mmlu_prompts(tok, root: Path, k: int, max_length: int) -> tuple[dict, dict]:
    """({location: prompt}, {location: exemplars kept}) as evaluate.py's eval() builds them; ``crop`` keeps
    ``max_length`` tokens (GPT-2's 2048 in crop.py; here the model's tokenizer counts, without BOS as
    the OpenAI API has none)."""
    def format_subject(subject):
        line = subject.split("_")
        s = ""
        for entry in line:
            s += " " + entry
        return s

    def format_example(df, idx, include_answer=True):
        prompt = df.iloc[idx, 0]
        n = df.shape[1] - 2
        for j in range(n):
            prompt += "\n{}. {}".format(CHOICES[j], df.iloc[idx, j + 1])
        prompt += "\nAnswer:"
        if include_answer:
            prompt += " {}\n\n".format(df.iloc[idx, n + 1])
        return prompt

    def gen_prompt(train_df, subject, n=-1):
        prompt = "The following are multiple choice questions (with answers) about {}.\n\n".format(format_subject(subject))
        if n == -1:
            n = train_df.shape[0]
        for i in range(n):
            prompt += format_example(train_df, i)
        return prompt

    def crop(prompt):
        return tok.decode(tok(prompt, add_special_tokens=False)["input_ids"][:max_length])

    subjects = sorted(f.name.split("_test.csv")[0] for f in (root / "test").iterdir() if "_test.csv" in f.name)
    prompts, shots = {}, {}
    for subject in subjects:
        dev_df = pd.read_csv(root / "dev" / f"{subject}_dev.csv", header=None)[:k]
        test_df = pd.read_csv(root / "test" / f"{subject}_test.csv", header=None)
        for i in range(test_df.shape[0]):
            n = k
            prompt_end = format_example(test_df, i, include_answer=False)
            prompt = gen_prompt(dev_df, subject, n) + prompt_end
            while crop(prompt) != prompt:
                n -= 1
                prompt = gen_prompt(dev_df, subject, n) + prompt_end
            key = f"{root / 'test' / f'{subject}_test.csv'}:{i + 1}"
            prompts[key], shots[key] = prompt, n
    return prompts, shots


def reference_mmlu(model, tok, root: Path, k: int, max_length: int) -> dict:
    """Prompts, predictions and the weighted accuracy as evaluate.py computes them (the model's ``" A"``
    token read where GPT-3's top log-probabilities were)."""
    prompts, shots = reference_mmlu_prompts(tok, root, k, max_length)
    answer_id = tok("Answer: A", add_special_tokens=False)["input_ids"][-1]   # " A" after "Answer:" (▁A)
    letter_ids = [tok.convert_tokens_to_ids(tok.convert_ids_to_tokens(answer_id).replace("A", c)) for c in CHOICES]
    out = {"prompts": prompts, "shots": shots, "pred": {}, "all_cors": []}
    for path in sorted((root / "test").iterdir()):
        test_df = pd.read_csv(path, header=None)
        cors = []
        for i in range(test_df.shape[0]):
            key = f"{path}:{i + 1}"
            logits = _next_token_logits(model, [tok.bos_token_id] + tok(prompts[key], add_special_tokens=False)["input_ids"])
            out["pred"][key] = CHOICES[int(np.argmax([float(logits[t]) for t in letter_ids]))]
            cors.append(out["pred"][key] == test_df.iloc[i, test_df.shape[1] - 1])
        out["all_cors"].append(np.array(cors))
    out["acc"] = float(np.mean(np.concatenate(out["all_cors"])))
    return out


def _planned(name: str, root: Path, tok, max_length: int | None = None) -> dict:
    """{location: PlannedPrompt} of the package's official protocol, at its default lengths unless given."""
    bench = load_benchmark(name, root, 3)
    protocol = protocols_of(name)[0]
    budget, limit = prompt_lengths(protocol, EvalSettings(max_length=max_length or 0), 4096)
    planner = PromptPlanner(protocol.format, protocol.fit, tok, budget, True, limit=limit, count_bos=protocol.count_bos)
    return {q.location: planner.plan(s, q, 3) for s in bench.subjects for q in s.questions}


def test_mmlu_official_matches_hendrycks_evaluate(tmp_path, letters):
    model, tok = letters
    rng = random.Random(0)
    root = tmp_path / "mmlu"
    for subject in ("abstract_algebra", "world_religions"):
        _write(root / "dev" / f"{subject}_dev.csv", None, _rows(5, rng, zh=False, long_every=2), False)
        _write(root / "test" / f"{subject}_test.csv", None, _rows(9, rng, zh=False, long_every=4), False)
    max_length = 320   # the long exemplars and questions make some prompts drop exemplars
    ref = reference_mmlu(model, tok, root, 3, max_length)
    plans = _planned("mmlu", root, tok, max_length)
    assert {loc: p.context for loc, p in plans.items()} == ref["prompts"]   # pandas' "nan" and "0.5" included
    assert {loc: p.shots for loc, p in plans.items()} == ref["shots"]
    assert 0 < sum(1 for v in ref["shots"].values() if v < 3) < len(ref["shots"])   # the rule was exercised
    seen = []
    bench = load_benchmark("mmlu", root, 3)
    record = evaluate_benchmark(LetterScorer(model, tok), bench, EvalSettings(progress=False, max_length=max_length),
                                seen.append)
    assert {p["location"]: p["prediction"] for p in seen} == ref["pred"]
    assert record["acc"] == pytest.approx(ref["acc"]) and record["average"] == "micro"
    assert record["truncated_prompts"] == sum(1 for v in ref["shots"].values() if v < 3)


# ---------------------------------------------------------------- C-Eval (evaluators/llama.py, eval_llama.py)

def reference_ceval_prompts(root: Path, k: int) -> dict:
    """{location: prompt} as LLaMA_Evaluator.eval_subject builds them with few_shot=True, for the subject
    name eval_llama.py passes (its ``--subject`` argument: the file key)."""
    def format_example(line, include_answer=True):
        example = line["question"]
        for choice in CHOICES:
            example += f'\n{choice}. {line[f"{choice}"]}'
        if include_answer:
            example += "\n答案：" + line["answer"] + "\n\n"
        else:
            example += "\n答案："
        return example

    def generate_few_shot_prompt(subject, dev_df):
        prompt = f"以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。\n\n"
        for i in range(k):
            prompt += format_example(dev_df.iloc[i, :], include_answer=True)
        return prompt

    prompts = {}
    for path in sorted((root / "val").iterdir()):
        subject_name = path.name[: -len("_val.csv")]
        val_df, dev_df = pd.read_csv(path), pd.read_csv(root / "dev" / f"{subject_name}_dev.csv")
        few_shot_prompt = generate_few_shot_prompt(subject_name, dev_df)
        for i, (_, row) in enumerate(val_df.iterrows()):
            prompts[f"{path}:{i + 2}"] = few_shot_prompt + format_example(row, include_answer=False)
    return prompts


def reference_ceval(model, tok, root: Path, k: int) -> dict:
    """llama.py's answer-only evaluation: per-subject accuracy and the mean over subjects."""
    prompts = reference_ceval_prompts(root, k)
    letter_ids = [tok(c, add_special_tokens=False)["input_ids"][0] for c in CHOICES]   # encode(c, bos=False)[0]
    out = {"prompts": prompts, "pred": {}, "subject_acc": {}}
    for path in sorted((root / "val").iterdir()):
        val_df = pd.read_csv(path)
        score = []
        for i, (_, row) in enumerate(val_df.iterrows()):
            key = f"{path}:{i + 2}"
            logits = _next_token_logits(model, [tok.bos_token_id] + tok(prompts[key], add_special_tokens=False)["input_ids"])
            probs = torch.softmax(torch.tensor([float(logits[t]) for t in letter_ids]), dim=0).numpy()
            out["pred"][key] = {0: "A", 1: "B", 2: "C", 3: "D"}[int(np.argmax(probs))]
            score.append(1 if out["pred"][key] == row["answer"] else 0)
        out["subject_acc"][path.name] = 100 * sum(score) / len(score)
    out["acc"] = float(np.mean(list(out["subject_acc"].values()))) / 100
    return out


def test_ceval_official_matches_llama_evaluator(tmp_path, letters):
    model, tok = letters
    rng = random.Random(1)
    root = tmp_path / "ceval"
    header = ["id", "question", "A", "B", "C", "D", "answer"]
    for subject, n in (("law", 6), ("logic", 11)):   # unequal sizes: the mean over subjects is not the micro mean
        _write(root / "dev" / f"{subject}_dev.csv", header, _rows(5, rng, zh=True), True)
        _write(root / "val" / f"{subject}_val.csv", header, _rows(n, rng, zh=True), True)
    ref = reference_ceval(model, tok, root, 3)
    assert {loc: p.context for loc, p in _planned("ceval", root, tok).items()} == ref["prompts"]
    bench = load_benchmark("ceval", root, 3)
    seen = []
    record = evaluate_benchmark(LetterScorer(model, tok), bench, EvalSettings(progress=False), seen.append)
    assert record["letter_tokens"] == {c: [f"▁{c}"] for c in CHOICES}   # LLaMA-style: the word-start pieces
    assert {p["location"]: p["prediction"] for p in seen} == ref["pred"]
    assert record["average"] == "macro" and record["acc"] == pytest.approx(ref["acc"])
    micro = np.mean([p["correct"] for p in seen])
    assert record["accuracy_micro"] == pytest.approx(micro)


# ---------------------------------------------------------------- CMMLU (mp_utils.py + hf_causal_model.py)

def reference_cmmlu_prompts(tok, root: Path, k: int, max_length: int, name_en2zh: dict[str, str]) -> dict:
    """{location: prompt} as hf_causal_model.py's eval() builds them (gen_prompt with the tokenizer)."""
    def format_example(df, idx, subject, include_answer=True):
        prompt_start = "题目："
        prompt = prompt_start + df.iloc[idx, 0]
        n = df.shape[1] - 2
        for j in range(n):
            prompt += "\n{}. {}".format(CHOICES[j], df.iloc[idx, j + 1])
        prompt += "\n答案是："
        if include_answer:
            prompt += "{}\n\n".format(df.iloc[idx, n + 1])
        return prompt

    def gen_prompt(dev_df, subject, prompt_end, num_few_shot=0, tokenizer=None, max_length=2048):
        prompt = "以下是关于{}的单项选择题，请直接给出正确答案的选项。\n\n".format(name_en2zh[subject])
        start_end_token_len = len(tokenizer.encode(prompt) + tokenizer.encode(prompt_end))
        if start_end_token_len > max_length:
            return prompt_end
        prompt_list = []
        if num_few_shot > 0:
            for i in range(num_few_shot):
                example = format_example(dev_df, i, subject)
                prompt_list.append((example, tokenizer.encode(example)))
            while prompt_list != [] and sum(len(e[1]) for e in prompt_list) >= max_length - start_end_token_len:
                longest_length = max([len(e[1]) for e in prompt_list])
                prompt_list = [e for e in prompt_list if len(e[1]) != longest_length]
            for p in prompt_list:
                prompt += p[0]
        return prompt + prompt_end

    prompts = {}
    for path in sorted((root / "test").iterdir()):
        subject = path.stem
        dev_df = pd.read_csv(root / "dev" / path.name, header=0, index_col=0)
        test_df = pd.read_csv(path, header=0, index_col=0)
        for i in range(test_df.shape[0]):
            prompt_end = format_example(test_df, i, subject, include_answer=False)
            prompts[f"{path}:{i + 2}"] = gen_prompt(dev_df, subject, prompt_end, k, tok, max_length)
    return prompts


def reference_cmmlu(model, tok, root: Path, k: int, max_length: int, name_en2zh: dict[str, str]) -> dict:
    prompts = reference_cmmlu_prompts(tok, root, k, max_length, name_en2zh)
    choice_ids = [tok.convert_tokens_to_ids(c) for c in CHOICES]
    out = {"prompts": prompts, "pred": {}, "all_acc": {}}
    for path in sorted((root / "test").iterdir()):
        test_df = pd.read_csv(path, header=0, index_col=0)
        cors = []
        for i in range(test_df.shape[0]):
            key = f"{path}:{i + 2}"
            logits = _next_token_logits(model, tok(prompts[key])["input_ids"])
            out["pred"][key] = CHOICES[int(np.argmax([float(logits[t]) for t in choice_ids]))]
            cors.append(out["pred"][key] == test_df.iloc[i, test_df.shape[1] - 1])
        out["all_acc"][path.stem] = np.mean(cors) * 100
    out["acc"] = float(np.mean(list(out["all_acc"].values()))) / 100
    return out


def test_cmmlu_official_matches_mp_utils(tmp_path, letters):
    model, tok = letters
    rng = random.Random(2)
    root = tmp_path / "cmmlu"
    header = ["", "Question", "A", "B", "C", "D", "Answer"]
    for subject, n in (("arts", 5), ("chinese_history", 12)):
        _write(root / "dev" / f"{subject}.csv", header, _rows(5, rng, zh=True, long_every=2), True)
        _write(root / "test" / f"{subject}.csv", header, _rows(n, rng, zh=True, long_every=5), True)
    max_length = 300   # CMMLU's --max_length
    ref = reference_cmmlu(model, tok, root, 3, max_length, CMMLU_SUBJECTS_ZH)
    plans = _planned("cmmlu", root, tok, max_length)
    assert {loc: p.context for loc, p in plans.items()} == ref["prompts"]
    assert 0 < sum(p.shots < 3 for p in plans.values()) and not any(p.cut for p in plans.values())
    bench = load_benchmark("cmmlu", root, 3)
    seen = []
    record = evaluate_benchmark(LetterScorer(model, tok), bench, EvalSettings(progress=False, max_length=max_length),
                                seen.append)
    assert record["letter_tokens"] == {c: [c] for c in CHOICES}   # the bare pieces, not ▁A
    assert {p["location"]: p["prediction"] for p in seen} == ref["pred"]
    assert record["average"] == "macro" and record["acc"] == pytest.approx(ref["acc"])


def test_cmmlu_drops_the_header_when_header_and_question_do_not_fit(tmp_path, letters):
    """gen_prompt returns the question alone when header + question exceed max_length; it is scored whole."""
    _, tok = letters
    rng = random.Random(3)
    root = tmp_path / "cmmlu"
    header = ["", "Question", "A", "B", "C", "D", "Answer"]
    _write(root / "dev" / "arts.csv", header, _rows(5, rng, zh=True), True)
    _write(root / "test" / "arts.csv", header, [["长" * 150, "甲", "乙", "丙", "丁", "A"]], True)
    plan = next(iter(_planned("cmmlu", root, tok, 60).values()))
    assert plan.context.startswith("题目：长") and plan.dropped_header and plan.shots == 0 and plan.truncated
    assert plan.over_budget and not plan.cut   # over CMMLU's --max_length, within the model's 4096: not cut


# ---------------------------------------------------------------- every bundled item at the default settings

def test_every_bundled_item_is_byte_identical_to_the_official_prompt(letters):
    """corpora/benchmarks, 3-shot, the default 2,048-token budget: every MMLU, C-Eval and CMMLU prompt equals
    the one the benchmark's own code builds. CMMLU's ``name_en2zh`` has no entry for the bundled synthetic
    subjects ``world_geography`` and ``world_people`` (the official script would stop with a KeyError):
    for them the reference uses the name the package falls back to, the file key with spaces."""
    _, tok = letters
    for protocol in (protocols_of(n)[0] for n in ("mmlu", "ceval", "cmmlu")):
        assert prompt_lengths(protocol, EvalSettings(), 4096)[0] == REFERENCE_MAX_LENGTH == 2048
    names = {**{p.stem: p.stem.replace("_", " ") for p in (BUNDLED / "cmmlu" / "test").iterdir()}, **CMMLU_SUBJECTS_ZH}
    references = {"mmlu": reference_mmlu_prompts(tok, BUNDLED / "mmlu", 3, 2048)[0],
                  "ceval": reference_ceval_prompts(BUNDLED / "ceval", 3),
                  "cmmlu": reference_cmmlu_prompts(tok, BUNDLED / "cmmlu", 3, 2048, names)}
    for name, ref in references.items():
        plans = _planned(name, BUNDLED / name, tok)
        assert len(plans) == len(ref) == 120, name
        mismatched = [loc for loc, p in plans.items() if p.context.encode() != ref[loc].encode()]
        assert not mismatched, f"{name}: {len(mismatched)} prompts differ, first {mismatched[0]}"
        assert not any(p.truncated for p in plans.values())
    first = next(iter(references["ceval"].values()))
    assert first.startswith("以下是中国关于english_vocabulary考试的单项选择题")   # the file key, as eval_llama.py


# ---------------------------------------------------------------- GAOKAO-Bench (bench_function.py, OBJ_score_evaluation.py)

def reference_extract(model_output, question_type, answer_lenth=None):
    """extract_choice_answer, restated."""
    model_answer = []
    if question_type == "single_choice":
        temp = re.findall(r"[A-D]", model_output[::-1])
        if len(temp) != 0:
            model_answer.append(temp[0])
    elif question_type == "multi_question_choice":
        temp = re.findall(r"【答案】\s*[:：]*\s*[A-Z]", model_output)
        if len(temp) == answer_lenth:
            for t in temp:
                model_answer.append(re.findall(r"[A-Z]", t)[0])
        else:
            temp = re.findall(r"[A-Z]", model_output)
            for k in range(min(len(temp), answer_lenth)):
                model_answer.append(temp[k])
    elif question_type == "multi_choice":
        answer = ""
        content = re.sub(r"\s+", "", model_output)
        answer_index = content.find("【答案】")
        temp = content[answer_index:] if answer_index > 0 else content[-10:]
        for t in re.findall(r"[A-D]", temp):
            answer += t
        if len(answer) != 0:
            model_answer.append(answer)
    elif question_type == "five_out_of_seven":
        temp = re.findall(r"[A-G]", model_output)
        for k in range(min(5, len(temp))):
            model_answer.append(temp[k])
    return model_answer


def reference_scoring_rate(items: list[dict], physics: bool) -> float:
    """obj_score_eval for one keyword: check_length_equal, then the Physics rule or count_score."""
    t_score = c_score = 0.0
    for item in items:
        if len(item["model_answer"]) != len(item["standard_answer"]):
            item["model_answer"] = ["Z"] * len(item["standard_answer"])
        t_score += len(item["standard_answer"]) * item["score"]
        for j in range(len(item["model_answer"])):
            if item["model_answer"][j] == item["standard_answer"][j]:
                c_score += 6 if physics else item["score"]
            elif physics and all(z in item["standard_answer"][j] for z in item["model_answer"][j]):
                c_score += 3
    return c_score / t_score


def _random_output(rng: random.Random, n: int) -> str:
    pieces = ["【解析】", "<eoe>", "【答案】", "【答案】:", "【答案】 ", "<eoa>", "故选", "\n", " ", "X", "$\\mathrm{A}$",
              "选项", "因此", "AB", "CD", "E", "G", "。", "（1）", "（2）"] + list("ABCDEFG")
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) + rng.choice(["", "【答案】" + "".join(
        rng.choice("ABCD") for _ in range(n)) + " <eoa>"])


@pytest.mark.parametrize("kind,n,gold", [("single_choice", 1, ("B",)), ("multi_question_choice", 3, ("A", "C", "D")),
                                         ("multi_choice", 1, ("BD",)), ("five_out_of_seven", 5, tuple("ACEGB"))])
def test_gaokao_extraction_and_scoring_match_the_reference(kind, n, gold):
    rng = random.Random(kind)
    items, ours = [], []
    for _ in range(400):
        output = _random_output(rng, n)
        mine = gaokao_rules.extract(output, kind, len(gold))
        assert mine == reference_extract(output, kind, len(gold)), output
        items.append({"standard_answer": list(gold), "model_answer": mine, "score": 6})
        ours.append(gaokao_rules.score(kind, mine, gold, 6))
    rate = sum(e for e, _ in ours) / sum(p for _, p in ours)
    assert rate == pytest.approx(reference_scoring_rate(items, physics=kind == "multi_choice"))
    assert 0 < rate < 1   # the outputs hit both right and wrong answers


def test_gaokao_letter_protocol_reads_and_scores_every_objective_type(tmp_path, letters):
    """Table 2's GAOKAO reading on all four objective types: it reads what the model puts its mass on (one
    letter; one letter set closed by <eoa>; one letter per sub-question, left to right, A-G for 5-of-7) and
    scores it as OBJ_score_evaluation.py does (the Physics half mark, each sub-question its item's score)."""
    _, tok = letters
    bench = load_benchmark("gaokao", write_gaokao_all_kinds(tmp_path / "gaokao", n=6), 1)
    protocol = protocols_of("gaokao")[0]
    assert {s.kind for s in bench.subjects} == set(protocol.kinds)   # every type the official code scores
    rng = random.Random(5)
    said, wanted = {}, {}
    for s in bench.subjects:
        for q in s.questions:
            ctx = protocol.format.context(s, q, 1)
            if s.kind == "single_choice":
                want = [rng.choice("ABCD")]
                said[ctx] = " " + want[0]
            elif s.kind == "multi_choice":   # in turn the gold set, a proper subset of it, a wrong set
                gold = q.answers[0] if len(q.answers[0]) > 1 else "".join(sorted(set(q.answers[0] + "AB")))[:2]
                want = [[gold, gold[:-1], "".join(sorted(set("ABCD") - set(gold)))][len(wanted) % 3]]
                said[ctx] = " " + want[0] + " <eoa>"
            else:
                pool = "ABCD" if s.kind == "multi_question_choice" else "ABCDEFG"
                want = [a if rng.random() < 0.5 else rng.choice(pool) for a in q.answers]
                for j in range(len(want)):
                    said[ctx + (" " + " ".join(want[:j]) if j else "")] = " " + want[j]
            wanted[q.location] = want
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the stand-in model has no key/value cache
        record = evaluate_benchmark(LetterScorer(OracleLM(tok, said), tok), bench,
                                    EvalSettings(num_fewshot=1, progress=False, generation=False), seen.append)
    got = {p["location"]: p["prediction"] if isinstance(p["prediction"], list) else [p["prediction"]] for p in seen}
    assert got == wanted
    items = {}
    for s in bench.subjects:
        for q in s.questions:
            items.setdefault(s.name, []).append({"standard_answer": list(q.answers), "score": q.points,
                                                 "model_answer": wanted[q.location]})
    total = sum(len(i["standard_answer"]) * i["score"] for group in items.values() for i in group)
    earned = sum(reference_scoring_rate(group, physics="Physics" in name) * sum(
        len(i["standard_answer"]) * i["score"] for i in group) for name, group in items.items())
    assert record["acc"] == pytest.approx(earned / total) and record["average"] == "points"
    assert record["n"] == 4 * 5 and not record["not_scored"]
    physics = [p for p in seen if "Physics" in p["subject"]]
    assert any(p["earned"] == p["possible"] / 2 for p in physics)   # the half mark was exercised
    assert len(letter_sets()) == 15 and letter_sets()[:5] == ["A", "B", "C", "D", "AB"]


class ScriptedGenerator(OracleLM):
    """Test-only generator: answers each GAOKAO prompt with a fixed text (found by its instruction + question)."""

    def __init__(self, tokenizer, outputs: dict[str, str]):
        super().__init__(tokenizer)
        self.tokenizer, self.outputs = tokenizer, outputs

    def generate(self, input_ids, attention_mask, generation_config=None, stopping_criteria=None, **kwargs):
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tokenizer.decode([t for t, m in zip(ids, mask) if m], skip_special_tokens=True)
            text = next(out for q, out in self.outputs.items() if q in prompt)
            rows.append(ids + self.tokenizer(text, add_special_tokens=False)["input_ids"])
        width = max(map(len, rows))
        pad = self.tokenizer.eos_token_id
        return torch.tensor([r + [pad] * (width - len(r)) for r in rows])


def test_gaokao_generation_protocol_end_to_end(tmp_path, letters):
    """Prompts and stopping as GAOKAO-Bench's objective_bench; the scoring rate as OBJ_score_evaluation."""
    _, tok = letters
    bench = load_benchmark("gaokao", write_gaokao(tmp_path / "gaokao", n=6), 3)
    rng = random.Random(7)
    outputs, items = {}, {}
    for s in bench.subjects:
        for q in s.fewshot_pool + s.questions:   # zero-shot: every question is scored
            gold = q.answers
            wanted = rng.choice([list(gold), [rng.choice("ABCD") for _ in gold]])
            text = "【解析】 略 <eoe>\n" + "".join(f"【答案】 {a} <eoa>\n" for a in wanted) + "【答案】 D <eoa> 多余"
            outputs[s.header + "\n" + q.question.strip()] = text   # geography repeats a biology question
            n_needed = len(gold) if s.kind == "multi_question_choice" else 1
            cut = text[: [m.end() for m in re.finditer("<eoa>", text)][n_needed - 1]]   # generation stops here
            items.setdefault(s.kind, []).append({"standard_answer": list(gold), "score": q.points,
                                                 "model_answer": reference_extract(cut, s.kind, len(gold))})
    gen = ScriptedGenerator(tok, outputs)
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = evaluate_benchmark(LetterScorer(gen, tok), bench, EvalSettings(progress=False, max_new_tokens=200,
                                                                                chat_format="raw"), seen.append)
    official = record["other_protocols"]["official"]
    all_items = [i for group in items.values() for i in group]
    earned = sum(reference_scoring_rate([i], False) * len(i["standard_answer"]) * i["score"] for i in all_items)
    possible = sum(len(i["standard_answer"]) * i["score"] for i in all_items)
    assert official["acc"] == pytest.approx(earned / possible) and official["n"] == 6 + 1
    generated = [p for p in seen if "output" in p]
    assert all(p["stopped"] == "stop_text" and "多余" not in p["output"] for p in generated)
    assert official["average"] == "points" and official["chance"] == pytest.approx(0.25)


def test_gaokao_prompt_is_the_system_and_user_message(tmp_path, letters):
    _, tok = letters
    bench = load_benchmark("gaokao", write_gaokao(tmp_path / "gaokao", n=4), 3)
    s = bench.subjects[0]
    q = s.questions[0]
    text, special = gaokao_rules.prompt_text(s, q, tok, "raw")
    assert text == s.header + "\n" + q.question.strip() + "\n" and not special
    text, _ = gaokao_rules.prompt_text(s, q, tok, "chatflow")
    assert text.startswith("### Instruction:\n" + s.header) and text.endswith(q.question.strip() + "\n### Response: ")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    try:
        text, special = gaokao_rules.prompt_text(s, q, tok, "auto")
    finally:
        tok.chat_template = None
    assert text == f"<|system|>{s.header}<|user|>{q.question.strip()}\n<|assistant|>" and special
    json.dumps(text)
