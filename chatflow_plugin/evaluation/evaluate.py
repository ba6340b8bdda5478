"""``chatflow eval``: MMLU / C-Eval / CMMLU / GAOKAO-Bench on HuggingFace causal LM directories.

    chatflow eval --model out/chatflow-7b --tasks mmlu,ceval,cmmlu,gaokao --num_fewshot 3 \
        --data_dir data/benchmarks --output results.json

By default every benchmark follows its own reference code (``--protocol official``; lm-evaluation-
harness's stock tasks with ``--protocol lm-eval``). Writes ``results.json`` (per benchmark: protocol,
acc, acc_stderr, n, chance, average, truncated_prompts, per-subject results, skipped rows, statistics;
paired tests between models) and ``results.md`` (the Table-2-shaped table beside the paper's rows, and
per-subject tables).
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
from ..options import option
from .gaokao_rules import CHAT_FORMATS, MAX_NEW_TOKENS
from .protocols import PROTOCOL_SETS, REFERENCE_MAX_LENGTH
from .registry import BENCHMARKS, load_benchmark
from .report import dumps, paired_tests, subjects_markdown, table2_markdown
from .run import TRUNCATION_MODES, EvalSettings, evaluate_model
from .scoring import PREFIX_CACHE_MODES

SCORING_STATEMENT = ("letter protocols: argmax over A-D of the log-probability of each letter's token(s) right after "
                     "the prompt (which token, and the prompt, per benchmark: see each record's method, reference and "
                     "letter_tokens); ties -> first letter; GAOKAO's multiple-answer items: the best of the 15 letter "
                     "sets, its multi-question and 5-of-7 items: one letter per sub-question, left to right. "
                     "Generation protocols: greedy answers, extracted and scored by the benchmark's own rules")


@dataclass
class EvalOptions:
    data_dir: str = option(help="directory holding one sub-directory per benchmark in its public layout: " + "; ".join(
        f"{name}/: {spec.layout}" for name, spec in BENCHMARKS.items()))
    model: list = option(default_factory=list, repeatable=True, type=str,
                         help="HuggingFace causal LM directories, one Table-2 row each")
    tasks: str = option(",".join(BENCHMARKS), help="comma-separated benchmarks")
    model_name: list = option(default_factory=list, repeatable=True, type=str,
                              help="row name per --model, in order (default: the directory name)")
    protocol: str = option("official", choices=list(PROTOCOL_SETS),
                           help="official: each benchmark's own reference code (hendrycks/test, C-Eval, CMMLU, "
                                "GAOKAO-Bench); lm-eval: lm-evaluation-harness 0.4.13's stock tasks")
    num_fewshot: int = option(3, help="exemplars per few-shot prompt (the first k of each subject's dev split; "
                                      "GAOKAO: the first k questions of each subject, held out)")
    limit: int = option(0, help="score at most this many questions per subject (0: all)")
    batch_size: int = option(8, help="sequences per forward pass")
    max_length: int = option(0, help="tokens the few-shot prompts are fitted to (0: each protocol's own: 2048 for "
                                     "--protocol official, as the benchmarks' reference code; the model's "
                                     "max_position_embeddings for lm-eval); generation protocols fit prompt + "
                                     "answer into it (0: the model's context)")
    on_truncation: str = option("warn", choices=list(TRUNCATION_MODES),
                                help="a prompt that does not fit the context: warn (score it, report the counts, "
                                     "mark the cell) or fail (stop before scoring)")
    generation: bool = option(True, help="skip generation protocols (GAOKAO-Bench's official zero-shot generation)")
    max_new_tokens: int = option(MAX_NEW_TOKENS, help="answer tokens per question for generation protocols (default "
                                                      f"{MAX_NEW_TOKENS}: GAOKAO-Bench's models/openai.py sends "
                                                      "max_tokens=1024); generation stops after the answer's <eoa>")
    chat_format: str = option("auto", choices=list(CHAT_FORMATS),
                              help="generation prompts: auto (the tokenizer's chat template when it has one, else "
                                   "raw), raw (system prompt + question as plain text) or chatflow (ChatFlow's "
                                   "instruction format)")
    bootstrap: int = option(1000, help="bootstrap resamples for standard errors of macro/points averages and for "
                                       "paired tests (0: none)")
    seed: int = option(0, help="seed of the bootstrap")
    device: str = option("auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    dtype: str = option("auto", help="auto (the checkpoint's dtype on GPU, float32 on CPU), float32, "
                                     "bfloat16 or float16")
    device_map: str = option("", help="passed to from_pretrained (e.g. 'auto' to spread a large model over "
                                      "GPUs); overrides --device")
    add_bos: bool = option(True, help="do not prepend the BOS token (by default every prompt starts with BOS, as LLaMA was trained)")
    prefix_cache: str = option("auto", choices=list(PREFIX_CACHE_MODES),
                               help="prefixes shared by many prompts (a subject's header + exemplars) run once and "
                                    "their key/value cache reused: auto (when the estimated compute saved exceeds "
                                    "the cost), always or never; the scores are the same")
    fidelity_prompts: str = option("", help="also report language fidelity (share of answers in the prompt's "
                                            "language): JSONL of {prompt, lang} or a chatflow clo-data directory")
    output: str = option("", help="results JSON path; the markdown tables go next to it (.md)")
    predictions: str = option("", help="also write one JSON line per scored question to this file")
    quiet: bool = option(False, help="no progress bars")


def parse_tasks(text: str) -> list[str]:
    tasks = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in BENCHMARKS]
    if unknown or not tasks:
        raise ChatflowError(f"--tasks {text!r}: unknown {unknown or 'empty'}; choose from {', '.join(BENCHMARKS)}")
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


def _summary(name: str, benchmark: str, r: dict) -> str:
    notes = []
    if r.get("stats", {}).get("multi_token_questions"):
        notes.append(f"{r['stats']['multi_token_questions']} question(s) with multi-token letters (summed log-probs)")
    if r.get("letter_note"):
        notes.append(r["letter_note"])
    for entry in r.get("not_scored", []):
        notes.append(f"not scored: {entry['location']} ({entry['reason']})")
    if r.get("truncated_prompts"):
        notes.append(f"{r['truncated_prompts']} truncated prompt(s)")
    se = f" ± {100 * r['acc_stderr']:.2f}" if r["acc_stderr"] is not None else ""
    protocol = f"{r['protocol']}: {r['label']}" if r.get("label") else r["protocol"]
    return (f"{name} {benchmark} [{protocol}]: {100 * r['acc']:.2f}{se} "
            f"({r['average']} average, {r['n']} questions, {r['n_subjects']} subjects, chance {100 * r['chance']:.1f})"
            + "".join(f"; {n}" for n in notes))


def evaluate(opts: EvalOptions) -> dict:
    """Score HuggingFace causal LMs on MMLU / C-Eval / CMMLU / GAOKAO-Bench (Table 2) by each benchmark's own
    reference code (or lm-evaluation-harness's tasks), with standard errors, chance levels, truncation counts and
    paired tests between models; print Table 2 and write the results JSON and markdown."""
    if not opts.model:
        raise ChatflowError("--model is required (a HuggingFace causal LM directory)")
    if opts.model_name and len(opts.model_name) != len(opts.model):
        raise ChatflowError(f"{len(opts.model_name)} --model_name for {len(opts.model)} --model")
    for name, value in (("num_fewshot", opts.num_fewshot), ("limit", opts.limit), ("max_length", opts.max_length),
                        ("bootstrap", opts.bootstrap)):
        if value < 0:
            raise ChatflowError(f"--{name} must be >= 0, got {value}")
    if opts.max_new_tokens < 1:
        raise ChatflowError(f"--max_new_tokens must be >= 1, got {opts.max_new_tokens}")
    tasks = parse_tasks(opts.tasks)
    benchmarks = []
    for task in tasks:
        bench = load_benchmark(task, Path(opts.data_dir) / task, opts.num_fewshot)
        _report_skipped(bench)
        benchmarks.append(bench)
    settings = EvalSettings(num_fewshot=opts.num_fewshot, limit=opts.limit, batch_size=opts.batch_size,
                            max_length=opts.max_length, add_bos=opts.add_bos, progress=not opts.quiet,
                            prefix_cache=opts.prefix_cache, protocol=opts.protocol, on_truncation=opts.on_truncation,
                            generation=opts.generation, max_new_tokens=opts.max_new_tokens,
                            chat_format=opts.chat_format, bootstrap=opts.bootstrap, seed=opts.seed)
    names = opts.model_name or [Path(m).resolve().name for m in opts.model]
    if len(set(names)) != len(names):
        raise ChatflowError(f"model names {names} are not unique; pass --model_name")
    results = {"settings": {"tasks": tasks, "protocol": opts.protocol, "num_fewshot": opts.num_fewshot,
                            "limit": opts.limit, "data_dir": str(opts.data_dir), "add_bos": opts.add_bos,
                            "max_length": opts.max_length or (REFERENCE_MAX_LENGTH if opts.protocol == "official"
                                                              else "the model's max_position_embeddings"),
                            "prefix_cache": opts.prefix_cache,
                            "on_truncation": opts.on_truncation, "generation": opts.generation,
                            "max_new_tokens": opts.max_new_tokens, "chat_format": opts.chat_format,
                            "bootstrap": opts.bootstrap, "seed": opts.seed, "scoring": SCORING_STATEMENT},
               "models": {}}
    outcomes = {}
    from .scoring import load_model

    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(atomic_file(opts.predictions, encoding="utf-8")) if opts.predictions else None
        for name, path in zip(names, opts.model):
            model, tokenizer = load_model(path, opts.device, opts.dtype, opts.device_map)
            t0 = time.perf_counter()
            record = evaluate_model(model, tokenizer, benchmarks, settings, _prediction_writer(sink, name), name)
            outcomes[name] = record.pop("outcomes")
            record.update(path=str(path), seconds=time.perf_counter() - t0)
            results["models"][name] = record
            if opts.fidelity_prompts:
                from .fidelity import evaluate_fidelity

                report = evaluate_fidelity(path, opts.fidelity_prompts, limit=opts.limit or None,
                                           batch_size=opts.batch_size, device=opts.device)
                record["language_fidelity"] = report
                print(f"{name} language fidelity: {report.get('fidelity')}", file=sys.stderr)
            for b, r in record["benchmarks"].items():
                for rec in (r, *r.get("other_protocols", {}).values()):
                    print(_summary(name, b, rec), file=sys.stderr)
            del model
    if len(results["models"]) > 1:
        results["paired"] = paired_tests(results["models"], outcomes, opts.bootstrap, opts.seed)
    table = table2_markdown(results)
    print(table)
    if opts.output:
        with atomic_file(opts.output, encoding="utf-8") as handle:
            handle.write(dumps(results))
        md = Path(opts.output).with_suffix(".md")
        with atomic_file(md, encoding="utf-8") as handle:
            handle.write(table + "\n" + subjects_markdown(results))
        print(f"wrote {opts.output} and {md}", file=sys.stderr)
    return results
