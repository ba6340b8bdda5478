"""Agreement with lm-evaluation-harness on the same tiny model and the same local files.

lm-eval's HF wrapper (``HFLM``) is pointed at the tiny model directory, and task YAMLs written to a
temporary directory point its ``csv`` loader at the tiny MMLU-layout (no header) and C-Eval-layout
(header) files; its prompt fields are set to this package's formats (MMLU: hendrycks/lm-eval's own;
C-Eval: ``答案：`` followed directly by the letter, as C-Eval's code does, where lm-eval's stock
``ceval`` task puts a space). Per-question log-likelihoods, predictions and accuracy must agree.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_eval_benchmarks import write_ceval, write_mmlu
from test_eval_models import tiny_llama_dir, torch_single_thread  # noqa: F401 (fixtures)

from chatflow_plugin.evaluation.benchmarks import LETTERS
from chatflow_plugin.evaluation.registry import build_prompt, load_benchmark, shared_prefix
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
            header=True, description="以下是中国关于法学考试的单项选择题，请选出其中的正确答案。\n\n",
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
        requests = [build_prompt(bench.name, subject, q, K) for q in subject.questions]
        ours = scorer.loglikelihoods(requests, prefixes=[shared_prefix(bench.name, subject, K)] * len(requests))
        assert scorer.stats.shared_prefix_rows > 0   # the path chatflow eval takes
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        assert len(samples) == len(requests) == 12
        for s, (context, conts) in zip(samples, requests):
            assert s["arguments"][0][0] == context   # the same prompt text, byte for byte
            assert [a[1] for a in s["arguments"]] == conts
        theirs = np.array([[float(r[0]) for r in s["filtered_resps"]] for s in samples])
        print(f"{name}: max |ours - lm_eval| log-likelihood = {np.abs(ours - theirs).max():.2e}")
        np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
        assert list(predictions(ours)) == list(np.argmax(theirs, axis=1))
        gold = np.array([LETTERS.index(q.answer) for q in subject.questions])
        acc = float(np.mean(predictions(ours) == gold))
        assert acc == pytest.approx(out["results"][name]["acc,none"])
