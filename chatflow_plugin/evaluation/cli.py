"""``chatflow eval``: k-shot MMLU / C-Eval / CMMLU / GAOKAO on HuggingFace causal LM directories.

    chatflow eval --model out/chatflow-7b --tasks mmlu,ceval,cmmlu,gaokao --num_fewshot 3 \
        --data_dir data/benchmarks --output results.json

writes ``results.json`` (per-subject accuracy, averages, skipped rows, token statistics, the scoring
method) and ``results.md`` (the Table-2-shaped table and per-subject tables).
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_file
from ..errors import ChatflowError
from ..options import option, parse_options
from .benchmarks import BENCHMARK_NAMES, load_benchmark
from .run import SCORING_STATEMENT, EvalSettings, dumps, evaluate_model, subjects_markdown, table2_markdown


@dataclass
class EvalOptions:
    data_dir: str = option(help="directory holding one sub-directory per benchmark in its public layout: "
                                "mmlu/{dev,test}, ceval/{dev,val}, cmmlu/{dev,test}, gaokao/{Obj_Prompt.json,"
                                "Objective_Questions/}")
    model: list = option(default_factory=list, repeatable=True, type=str,
                         help="HuggingFace causal LM directory (repeatable: one Table-2 row per model)")
    tasks: str = option("mmlu,ceval,cmmlu,gaokao", help="comma-separated benchmarks")
    model_name: list = option(default_factory=list, repeatable=True, type=str,
                              help="row name per --model, in order (default: the directory name)")
    num_fewshot: int = option(3, help="exemplars per prompt (the first k of each subject's dev split; "
                                      "GAOKAO: the first k questions of each subject, held out)")
    limit: int = option(0, help="score at most this many questions per subject (0: all)")
    batch_size: int = option(8, help="sequences per forward pass")
    max_length: int = option(0, help="left-truncate prompts to this many tokens (0: the model's "
                                     "max_position_embeddings)")
    device: str = option("auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    dtype: str = option("auto", help="auto (the checkpoint's dtype on GPU, float32 on CPU), float32, "
                                     "bfloat16 or float16")
    device_map: str = option("", help="passed to from_pretrained (e.g. 'auto' to spread a large model over "
                                      "GPUs); overrides --device")
    add_bos: bool = option(True, help="do not prepend the BOS token (by default every prompt starts with BOS, as LLaMA was trained)")
    share_prefix: bool = option(True, help="do not reuse the key/value cache of each subject's header + exemplars "
                                           "(by default they are run once per subject: same scores, less compute)")
    fidelity_prompts: str = option("", help="also report language fidelity (share of answers in the prompt's "
                                            "language): JSONL of {prompt, lang} or a chatflow clo-data directory")
    output: str = option("", help="results JSON path; the markdown tables go next to it (.md)")
    predictions: str = option("", help="also write one JSON line per scored question to this file")
    progress: bool = option(True, help="no progress bar (shown by default)")


def parse_tasks(text: str) -> list[str]:
    tasks = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in BENCHMARK_NAMES]
    if unknown or not tasks:
        raise ChatflowError(f"--tasks {text!r}: unknown {unknown or 'empty'}; choose from {', '.join(BENCHMARK_NAMES)}")
    return list(dict.fromkeys(tasks))


def _report_skipped(bench) -> None:
    if bench.skipped:
        print(f"{bench.name}: {len(bench.skipped)} row(s)/file(s) skipped:", file=sys.stderr)
        for s in bench.skipped[:10]:
            print(f"  {s.location}: {s.reason}", file=sys.stderr)
        if len(bench.skipped) > 10:
            print(f"  ... {len(bench.skipped) - 10} more (all listed in the results JSON)", file=sys.stderr)


def _prediction_writer(sink, model_name: str):
    if sink is None:
        return None
    return lambda rec: sink.write(json.dumps({"model": model_name, **rec}, ensure_ascii=False) + "\n")


def cli_main(argv: list[str], prog: str = "chatflow eval") -> int:
    opts = parse_options(EvalOptions, argv, prog=prog, description=__doc__.split("\n\n")[0])
    if not opts.model:
        raise ChatflowError("--model is required (a HuggingFace causal LM directory)")
    if opts.model_name and len(opts.model_name) != len(opts.model):
        raise ChatflowError(f"{len(opts.model_name)} --model_name for {len(opts.model)} --model")
    for name, value in (("num_fewshot", opts.num_fewshot), ("limit", opts.limit), ("max_length", opts.max_length)):
        if value < 0:
            raise ChatflowError(f"--{name} must be >= 0, got {value}")
    tasks = parse_tasks(opts.tasks)
    benchmarks = []
    for task in tasks:
        bench = load_benchmark(task, Path(opts.data_dir) / task, opts.num_fewshot)
        _report_skipped(bench)
        benchmarks.append(bench)
    settings = EvalSettings(num_fewshot=opts.num_fewshot, limit=opts.limit, batch_size=opts.batch_size,
                            max_length=opts.max_length, add_bos=opts.add_bos, progress=opts.progress,
                            share_prefix=opts.share_prefix)
    names = opts.model_name or [Path(m).resolve().name for m in opts.model]
    if len(set(names)) != len(names):
        raise ChatflowError(f"model names {names} are not unique; pass --model_name")
    results = {"settings": {"tasks": tasks, "num_fewshot": opts.num_fewshot, "limit": opts.limit,
                            "data_dir": str(opts.data_dir), "add_bos": opts.add_bos, "scoring": SCORING_STATEMENT},
               "models": {}}
    from .scoring import load_model

    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(atomic_file(opts.predictions, encoding="utf-8")) if opts.predictions else None
        for name, path in zip(names, opts.model):
            model, tokenizer = load_model(path, opts.device, opts.dtype, opts.device_map)
            t0 = time.perf_counter()
            record = evaluate_model(model, tokenizer, benchmarks, settings, _prediction_writer(sink, name))
            record.update(path=str(path), seconds=time.perf_counter() - t0)
            results["models"][name] = record
            if opts.fidelity_prompts:
                from .fidelity import evaluate_fidelity

                report = evaluate_fidelity(path, opts.fidelity_prompts, limit=opts.limit or None,
                                           batch_size=opts.batch_size, device=opts.device)
                record["language_fidelity"] = report
                print(f"{name} language fidelity: {report.get('fidelity')}", file=sys.stderr)
            for b, r in record["benchmarks"].items():
                multi = r["stats"]["multi_token_questions"]
                note = (f"; {multi} question(s) with multi-token letters (summed log-probs)" if multi else "")
                print(f"{name} {b}: {100 * r['average']:.2f} ({r['average_kind']}-average, "
                      f"{r['n_questions']} questions, {r['n_subjects']} subjects){note}", file=sys.stderr)
            del model
    table = table2_markdown(results)
    print(table)
    if opts.output:
        with atomic_file(opts.output, encoding="utf-8") as handle:
            handle.write(dumps(results))
        md = Path(opts.output).with_suffix(".md")
        with atomic_file(md, encoding="utf-8") as handle:
            handle.write(table + "\n" + subjects_markdown(results))
        print(f"wrote {opts.output} and {md}", file=sys.stderr)
    return 0
