"""Evaluate one model on loaded benchmarks: per-subject accuracy, each benchmark's own average, Table 2.

Averages, as each benchmark reports its headline number:

* MMLU: accuracy over all questions (hendrycks/test's weighted average; lm-evaluation-harness too).
* C-Eval: mean of the per-subject accuracies (its leaderboard average).
* CMMLU: accuracy over all questions.
* GAOKAO: scoring rate, i.e. exam points of correctly answered questions / all points.

Both the question-weighted ("micro") and subject-mean ("macro") accuracies are always kept too.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .benchmarks import LETTERS, Benchmark
from .prompts import FORMATS, build_prompt, shared_prefix
from .scoring import LetterScorer, predictions, split_continuation

AVERAGE_KIND = {"mmlu": "questions", "ceval": "subjects", "cmmlu": "questions", "gaokao": "points"}
DISPLAY_NAMES = {"mmlu": "MMLU", "ceval": "C-Eval", "cmmlu": "CMMLU", "gaokao": "GAOKAO"}
SCORING_STATEMENT = ("argmax over A-D of the summed log-probability of the answer-letter continuation after the "
                     "answer cue (MMLU/GAOKAO: ' A' after 'Answer:'/'【答案】:'; C-Eval/CMMLU: 'A' right after "
                     "'答案：'/'答案是：'); continuation tokens split as lm-evaluation-harness does; ties -> first letter")


@dataclass
class EvalSettings:
    num_fewshot: int = 3
    limit: int = 0            # scored questions per subject (0: all)
    batch_size: int = 8
    max_length: int = 0       # 0: the model's max_position_embeddings
    add_bos: bool = True
    progress: bool = True
    share_prefix: bool = True  # run each subject's header + exemplars once and reuse its key/value cache


def letter_tokens(tokenizer, benchmark: str, add_bos: bool = True) -> dict[str, list[str]]:
    """How each answer continuation tokenizes right after the benchmark's answer cue (for the report)."""
    fmt = FORMATS[benchmark]
    context = "Question\n" + fmt.answer_cue
    out = {}
    for cont in fmt.continuations():
        _, ids = split_continuation(tokenizer, context, cont, add_bos)
        out[cont] = tokenizer.convert_ids_to_tokens(ids)
    return out


def _accuracy_summary(name: str, subjects: dict[str, dict]) -> dict[str, Any]:
    n = sum(s["n"] for s in subjects.values())
    correct = sum(s["correct"] for s in subjects.values())
    points = sum(s["points"] for s in subjects.values())
    points_correct = sum(s["points_correct"] for s in subjects.values())
    micro = correct / n if n else 0.0
    macro = float(np.mean([s["accuracy"] for s in subjects.values()])) if subjects else 0.0
    scoring_rate = points_correct / points if points else 0.0
    kind = AVERAGE_KIND[name]
    average = {"questions": micro, "subjects": macro, "points": scoring_rate}[kind]
    return {"average": average, "average_kind": kind, "accuracy_micro": micro, "accuracy_macro": macro,
            "scoring_rate": scoring_rate, "n_questions": n, "n_subjects": len(subjects)}


def evaluate_benchmark(scorer: LetterScorer, bench: Benchmark, settings: EvalSettings,
                       on_prediction: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Score every (limited) question of ``bench``; returns the benchmark's result record."""
    t0 = time.perf_counter()
    requests, owners, prefixes = [], [], []
    for subject in bench.subjects:
        questions = subject.questions[: settings.limit] if settings.limit else subject.questions
        prefix = shared_prefix(bench.name, subject, settings.num_fewshot)
        for q in questions:
            requests.append(build_prompt(bench.name, subject, q, settings.num_fewshot))
            owners.append((subject, q))
            prefixes.append(prefix)
    seconds_prompts = time.perf_counter() - t0
    before = scorer.stats.as_dict()
    scores = scorer.loglikelihoods(requests, desc=f"{bench.name} ({len(requests)} q)",
                                   prefixes=prefixes if settings.share_prefix else None)
    pred = predictions(scores)
    subjects: dict[str, dict] = {}
    for i, (subject, q) in enumerate(owners):
        rec = subjects.setdefault(subject.name, {"n": 0, "correct": 0, "points": 0.0, "points_correct": 0.0,
                                                 "fewshot": min(settings.num_fewshot, len(subject.fewshot_pool))})
        ok = LETTERS[pred[i]] == q.answer
        rec["n"] += 1
        rec["correct"] += int(ok)
        rec["points"] += q.points
        rec["points_correct"] += q.points * ok
        if on_prediction is not None:
            on_prediction({"benchmark": bench.name, "subject": subject.name, "location": q.location,
                           "gold": q.answer, "prediction": LETTERS[pred[i]], "correct": bool(ok),
                           "loglikelihoods": [round(float(x), 6) for x in scores[i]]})
    for rec in subjects.values():
        rec["accuracy"] = rec["correct"] / rec["n"]
    after = scorer.stats.as_dict()
    stats = {k: after[k] - before[k] for k in after}
    stats["seconds_prompts"] = seconds_prompts
    short = {name: s["fewshot"] for name, s in subjects.items() if s["fewshot"] < settings.num_fewshot}
    result = _accuracy_summary(bench.name, subjects)
    result.update(subjects=subjects, skipped=[{"location": s.location, "reason": s.reason} for s in bench.skipped],
                  n_skipped=len(bench.skipped), subjects_with_fewer_shots=short, stats=stats)
    return result


def evaluate_model(model, tokenizer, benchmarks: list[Benchmark], settings: EvalSettings,
                   on_prediction: Callable[[dict], None] | None = None) -> dict[str, Any]:
    scorer = LetterScorer(model, tokenizer, batch_size=settings.batch_size, max_length=settings.max_length or None,
                          add_bos=settings.add_bos, progress=settings.progress, share_prefix=settings.share_prefix)
    out = {"benchmarks": {}, "letter_tokens": {}}
    for bench in benchmarks:
        out["benchmarks"][bench.name] = evaluate_benchmark(scorer, bench, settings, on_prediction)
        out["letter_tokens"][bench.name] = letter_tokens(tokenizer, bench.name, settings.add_bos)
    return out


def table2_markdown(results: dict[str, Any]) -> str:
    """Model rows x benchmark columns (percent), shaped like ChatFlow's Table 2."""
    models = results["models"]
    names = [b for b in DISPLAY_NAMES if any(b in m["benchmarks"] for m in models.values())]
    lines = ["| Model | " + " | ".join(DISPLAY_NAMES[b] for b in names) + " |",
             "|---|" + "---:|" * len(names)]
    for model_name, m in models.items():
        cells = [f"{100 * m['benchmarks'][b]['average']:.1f}" if b in m["benchmarks"] else "–" for b in names]
        lines.append(f"| {model_name} | " + " | ".join(cells) + " |")
    k = results.get("settings", {}).get("num_fewshot")
    kinds = ", ".join(f"{DISPLAY_NAMES[b]}: {AVERAGE_KIND[b]}" for b in names)
    lines += ["", f"{k}-shot accuracy (%), averaged over {kinds}." if k is not None else ""]
    return "\n".join(lines).rstrip() + "\n"


def subjects_markdown(results: dict[str, Any]) -> str:
    """Per-subject accuracy (%) of every model, one table per benchmark."""
    parts = []
    models = results["models"]
    for b in DISPLAY_NAMES:
        evaluated = [m for m in models if b in models[m]["benchmarks"]]
        if not evaluated:
            continue
        subjects = sorted({s for m in evaluated for s in models[m]["benchmarks"][b]["subjects"]})
        parts += [f"### {DISPLAY_NAMES[b]}", "", "| subject | n | " + " | ".join(evaluated) + " |",
                  "|---|---:|" + "---:|" * len(evaluated)]
        for s in subjects:
            recs = [models[m]["benchmarks"][b]["subjects"].get(s) for m in evaluated]
            n = next(r["n"] for r in recs if r)
            parts.append(f"| {s} | {n} | " + " | ".join(f"{100 * r['accuracy']:.1f}" if r else "–" for r in recs) + " |")
        parts.append("")
    return "\n".join(parts)


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(results, ensure_ascii=False, indent=2) + "\n"
