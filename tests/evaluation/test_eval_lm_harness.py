"""Agreement with lm-evaluation-harness 0.4.13 on the same tiny models and the same local files.

* ``test_scores_agree_with_lm_evaluation_harness``: the scorer itself. lm-eval's HF wrapper (``HFLM``)
  is pointed at the tiny model and at task YAMLs whose prompt fields are set to our formats (MMLU:
  lm-eval's own; C-Eval: its reference prompt with the letter right after ``答案：``); per-question
  log-likelihoods, predictions and accuracy must agree.
* ``test_lm_eval_protocol_agrees_with_stock_ceval_valid_cmmlu_and_mmlu``: ``--protocol lm-eval`` against
  lm-eval's own stock ``ceval-valid``, ``cmmlu`` and ``mmlu`` task definitions, included unchanged and only
  pointed at local CSV files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_eval_benchmarks import write_ceval, write_cmmlu, write_mmlu
from test_eval_models import letters_llama_dir, tiny_llama_dir, torch_single_thread  # noqa: F401 (fixtures)

from chatflow_plugin.evaluation.benchmarks import LETTERS
from chatflow_plugin.evaluation.lm_harness import write_task_yamls
from chatflow_plugin.evaluation.registry import build_prompt, load_benchmark, protocols_of, shared_prefix
from chatflow_plugin.evaluation.run import EvalSettings, evaluate_benchmark
from chatflow_plugin.evaluation.scoring import LetterScorer, load_model, predictions

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness not installed (pip install lm-eval); "
                                                "the agreement check needs it")

K = 3
COLUMNS = ["question", "A", "B", "C", "D", "answer"]


def _task_yaml(task: str, test_file: Path, dev_file: Path, header: bool, description: str, cue: str,
               delimiter: str, prefix: str = "") -> dict:
    data_kwargs = {"data_files": {"test": str(test_file), "dev": str(dev_file)},
                   "keep_default_na": False, "na_filter": False}   # text stays text ("None", "NA")
    if header:   # C-Eval's dev files carry an extra "explanation" column that val lacks
        data_kwargs["usecols"] = COLUMNS
    else:
        data_kwargs["column_names"] = COLUMNS
    return {
        "task": task, "dataset_path": "csv", "dataset_kwargs": data_kwargs,
        "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice", "description": description,
        "doc_to_text": prefix + "{{question.strip()}}\nA. {{A.strip()}}\nB. {{B.strip()}}\nC. {{C.strip()}}\n"
                       "D. {{D.strip()}}\n" + cue,
        "doc_to_choice": list(LETTERS), "doc_to_target": "{{['A', 'B', 'C', 'D'].index(answer.strip())}}",
        "target_delimiter": delimiter, "fewshot_delimiter": "\n\n",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


def test_scores_agree_with_lm_evaluation_harness(tmp_path, tiny_llama_dir):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    mmlu_root = write_mmlu(tmp_path / "mmlu", subjects=("algebra",), n_test=12)
    ceval_root = write_ceval(tmp_path / "ceval", subjects=("law",), n_val=12)
    mmlu = load_benchmark("mmlu", mmlu_root, K)
    ceval = load_benchmark("ceval", ceval_root, K)

    yaml_dir = tmp_path / "tasks"
    yaml_dir.mkdir()
    tasks = {
        "cf_mmlu_algebra": (mmlu, _task_yaml(
            "cf_mmlu_algebra", mmlu_root / "test" / "algebra_test.csv", mmlu_root / "dev" / "algebra_dev.csv",
            header=False, description="The following are multiple choice questions (with answers) about algebra.\n\n",
            cue="Answer:", delimiter=" ")),
        "cf_ceval_law": (ceval, _task_yaml(
            "cf_ceval_law", ceval_root / "val" / "law_val.csv", ceval_root / "dev" / "law_dev.csv",
            header=True, description="以下是中国关于law考试的单项选择题，请选出其中的正确答案。\n\n",
            cue="答案：", delimiter="")),
    }
    for name, (_, cfg) in tasks.items():   # JSON is valid YAML
        (yaml_dir / f"{name}.yaml").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")

    lm = HFLM(pretrained=str(tiny_llama_dir), batch_size=4, device="cpu", dtype="float32")
    out = simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=K, task_manager=TaskManager(include_path=str(yaml_dir)),
                          log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0)

    model, tok = load_model(str(tiny_llama_dir), device="cpu")
    scorer = LetterScorer(model, tok, batch_size=4)
    for name, (bench, _) in tasks.items():
        subject = bench.subjects[0]
        # MMLU: the lm-eval format (hendrycks/test's own header has a double space); C-Eval: its own prompt
        protocol_set = "lm-eval" if bench.name == "mmlu" else "official"
        requests = [build_prompt(bench.name, subject, q, K, protocol_set) for q in subject.questions]
        prefix = shared_prefix(bench.name, subject, K, protocol_set)
        ours = scorer.loglikelihoods(requests, prefixes=[prefix] * len(requests))
        assert scorer.stats.shared_prefix_rows > 0   # the path chatflow eval takes
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        assert len(samples) == len(requests) == 12
        for s, (context, conts) in zip(samples, requests):
            assert s["arguments"][0][0] == context   # the same prompt text, byte for byte
            assert [a[1] for a in s["arguments"]] == conts
        theirs = np.array([[float(r[0]) for r in s["filtered_resps"]] for s in samples])
        print(f"{name}: max |ours - lm_eval| log-likelihood = {np.abs(ours - theirs).max():.2e}")
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
        assert list(predictions(ours)) == list(np.argmax(theirs, axis=1))
        gold = np.array([LETTERS.index(q.answer) for q in subject.questions])
        acc = float(np.mean(predictions(ours) == gold))
        assert acc == pytest.approx(out["results"][name]["acc,none"])


# ---- lm-evaluation-harness's own stock tasks (tasks/ceval, tasks/cmmlu, tasks/mmlu) pointed at local files ----


def test_lm_eval_protocol_agrees_with_stock_ceval_valid_cmmlu_and_mmlu(tmp_path, letters_llama_dir):
    """``--protocol lm-eval`` = lm-eval 0.4.13's stock ``ceval-valid_<s>``, ``cmmlu_<s>`` and ``mmlu_<s>`` tasks.

    The stock YAMLs are included as they ship (description, doc_to_text with ``question.strip()``,
    target delimiter " ", first_n exemplars from dev, acc); only ``dataset_path`` points at local CSV
    files instead of the Hugging Face hub (:mod:`chatflow_plugin.evaluation.lm_harness`). For MMLU the
    hub dataset (cais/mmlu) has a ``choices`` list and an integer answer where the hendrycks CSV has
    columns A-D and a letter, so its doc_to_text/doc_to_target read the columns (same text). Prompts agree byte for byte, per-question log-likelihoods to
    1e-4, predictions and per-subject accuracy exactly, each subject's ``acc_stderr`` too, and our micro
    average equals the size-weighted mean of the subtasks (the stock groups' ``weight_by_size: true``).
    Remaining differences: none in the numbers; lm-eval also reports ``acc_norm`` (byte-length
    normalised, equal to acc for one-letter answers), and its group stderr pools subtask variances
    while ours is the sample standard error over all questions.
    """
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    roots = {"ceval": write_ceval(tmp_path / "ceval", subjects=("law", "logic"), n_val=7),
             "cmmlu": write_cmmlu(tmp_path / "cmmlu", subjects=("arts", "chinese_history"), n_test=9),
             "mmlu": write_mmlu(tmp_path / "mmlu", subjects=("astronomy", "world_religions"), n_test=6)}
    yaml_dir = tmp_path / "tasks"
    tasks = {}   # task name -> (benchmark, subject)
    for bench_name, root in roots.items():
        subjects = [s.name for s in load_benchmark(bench_name, root, K).subjects]
        names = write_task_yamls(bench_name, root, subjects, yaml_dir)
        tasks.update({n: (bench_name, s) for n, s in zip(names, subjects)})

    lm = HFLM(pretrained=str(letters_llama_dir), batch_size=4, device="cpu", dtype="float32")
    out = simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=K, task_manager=TaskManager(include_path=str(yaml_dir)),
                          log_samples=True, random_seed=0, numpy_random_seed=0, torch_random_seed=0)

    model, tok = load_model(str(letters_llama_dir), device="cpu")
    settings = EvalSettings(num_fewshot=K, protocol="lm-eval", progress=False)
    for bench_name, root in roots.items():
        bench = load_benchmark(bench_name, root, K)
        names = {s: n for n, (b, s) in tasks.items() if b == bench_name}
        fmt = protocols_of(bench_name, "lm-eval")[0].format
        seen = []
        record = evaluate_benchmark(LetterScorer(model, tok, batch_size=4), bench, settings, seen.append)
        assert record["protocol"] == "lm-eval" and record["average"] == "micro"
        assert record["letter_tokens"] == {f" {c}": [f"▁{c}"] for c in LETTERS}   # " A" after the cue
        sizes, accs = [], []
        for subject in bench.subjects:
            task = names[subject.name]
            samples = sorted(out["samples"][task], key=lambda x: x["doc_id"])
            mine = [p for p in seen if p["subject"] == subject.name]
            assert len(samples) == len(mine) == len(subject.questions)
            for sample, q, p in zip(samples, subject.questions, mine):
                assert sample["arguments"][0][0] == fmt.context(subject, q, K)   # byte for byte
                assert [a[1] for a in sample["arguments"]] == [" A", " B", " C", " D"]
                theirs = [float(r[0]) for r in sample["filtered_resps"]]
                np.testing.assert_allclose(p["loglikelihoods"], theirs, atol=1e-4, rtol=0)
                assert p["prediction"] == LETTERS[int(np.argmax(theirs))]
            acc = out["results"][task]["acc,none"]
            assert np.mean([p["correct"] for p in mine]) == pytest.approx(acc)
            one = evaluate_benchmark(LetterScorer(model, tok), type(bench)(bench.name, bench.language, [subject]),
                                     settings)
            assert one["acc_stderr"] == pytest.approx(out["results"][task]["acc_stderr,none"])
            sizes.append(len(samples))
            accs.append(acc)
        assert record["acc"] == pytest.approx(np.average(accs, weights=sizes))
