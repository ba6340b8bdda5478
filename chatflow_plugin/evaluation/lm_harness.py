"""lm-evaluation-harness's stock task definitions pointed at local benchmark files (for cross-checks).

``--protocol lm-eval`` reproduces lm-evaluation-harness 0.4.13's stock tasks; :func:`task_configs`
writes, per subject, a task YAML that ``include``\\ s the stock YAML unchanged and only replaces its
dataset (the Hugging Face hub) by the local CSV files, so ``lm_eval --include_path DIR`` scores the
same questions with lm-eval's own code. Used by the agreement tests and ``benchmarks/bench_eval.py``;
a user can run it to check our numbers against lm-eval on their own files::

    from chatflow_plugin.evaluation.lm_harness import write_task_yamls
    names = write_task_yamls("ceval", "data/benchmarks/ceval", ["law", "logic"], "lm_eval_tasks/")
    # lm_eval --model hf --model_args pretrained=DIR --include_path lm_eval_tasks --tasks <names> --num_fewshot 3

lm-eval is imported only to locate its task directory.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import ChatflowError
from .protocols import LmEvalTask  # noqa: F401 (the record type, re-exported for callers)


def stock_tasks_dir() -> Path:
    try:
        import lm_eval
    except ImportError:
        raise ChatflowError("lm-evaluation-harness is not installed (pip install 'lm-eval==0.4.13')") from None
    return Path(lm_eval.__file__).parent / "tasks"


def task_configs(benchmark: str, data_dir: str | Path, subjects: list[str]) -> dict[str, dict]:
    """``{task name: YAML dict}``: the stock task of each subject, reading the files under ``data_dir``."""
    from .registry import spec_of

    spec = spec_of(benchmark)
    task, files = spec.lm_eval, spec.files
    if task is None or files is None:
        raise ChatflowError(f"{benchmark}: lm-evaluation-harness has no stock task for it")
    stock, root = stock_tasks_dir(), Path(data_dir)
    configs = {}
    for subject in subjects:
        path = stock / task.stock.format(subject=subject)
        if not path.is_file():
            raise ChatflowError(f"{benchmark}: no stock lm-eval task {path}")
        data_files = {split: str(root / d / files.file_name(subject, d)) for split, d in task.splits.items()}
        kwargs = {"data_files": data_files, "keep_default_na": False, "na_filter": False,
                  ("usecols" if task.header else "column_names"): list(task.columns)}
        name = f"local_{path.stem}"
        configs[name] = {"include": str(path), "task": name, "dataset_path": "csv", "dataset_name": None,
                         "dataset_kwargs": kwargs, **task.overrides}
    return configs


def write_task_yamls(benchmark: str, data_dir: str | Path, subjects: list[str], out_dir: str | Path) -> list[str]:
    """Write :func:`task_configs` as YAML files into ``out_dir``; returns the task names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = task_configs(benchmark, data_dir, subjects)
    for name, config in configs.items():   # JSON is valid YAML
        (out / f"{name}.yaml").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return list(configs)
