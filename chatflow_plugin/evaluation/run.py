"""Evaluate one model on loaded benchmarks under a protocol set; one result record per benchmark.

For each benchmark the protocols of the chosen set (``official`` or ``lm-eval``, see :mod:`.registry`)
run in order; the first gives the benchmark's record (Table 2's number), the others are kept under
``other_protocols``. A record holds, besides per-subject results and statistics:

* ``protocol``, ``reference``, ``method``: which protocol produced the number and what it scores;
* ``acc``: the headline average, of the kind named by ``average`` (``micro`` over questions, ``macro``
  over subjects, ``points`` = earned / possible exam points), ``acc_stderr`` and ``stderr_method``
  (:mod:`.uncertainty`), ``n`` scored questions, ``chance`` (the same average of a uniform guess);
* ``truncated_prompts``: questions whose prompt is not the protocol's k-shot prompt because it did not
  fit the prompt budget (exemplars dropped, header dropped) or the model (text cut), detailed in
  ``truncation`` with the budget (``max_length``: 2,048 tokens for the official protocols, as their
  reference code, unless ``--max_length``) and the model's ``context_length``. Such runs print a warning
  naming the counts and the lengths, or stop before scoring with ``on_truncation="fail"``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import ChatflowError
from . import readings
from .gaokao_rules import MAX_NEW_TOKENS
from .benchmarks import LETTERS, Benchmark, Question, Subject
from .generation import GenerationStats, generate_answers, prompt_rows
from .prompts import PromptPlanner
from .protocols import GenerationProtocol, LetterProtocol, Protocol, letter_targets
from .registry import protocols_of
from .scoring import PREFIX_CACHE_MODES, LetterScorer, split_continuation
from .uncertainty import Outcomes, headline, stderr

TRUNCATION_MODES = ("warn", "fail")


@dataclass
class EvalSettings:
    num_fewshot: int = 3
    limit: int = 0            # scored questions per subject (0: all)
    batch_size: int = 8
    max_length: int = 0       # prompt budget; 0: each protocol's own (2048 official, the model's context lm-eval)
    add_bos: bool = True
    progress: bool = True
    prefix_cache: str = "auto"  # shared prefixes run once and their key/value cache reused: auto (cost rule),
                                # always, never
    protocol: str = "official"          # protocol set: "official" (benchmarks' own code) or "lm-eval"
    on_truncation: str = "warn"         # "warn": report and mark; "fail": stop before scoring
    generation: bool = True             # run generation protocols (GAOKAO-Bench's official one)
    max_new_tokens: int = MAX_NEW_TOKENS   # answer tokens of generation protocols (GAOKAO-Bench's 1024)
    chat_format: str = "auto"           # generation prompts: "auto" (chat template if any), "raw", "chatflow"
    bootstrap: int = 1000               # resamples for bootstrap standard errors and paired tests
    seed: int = 0

    def __post_init__(self):
        if self.on_truncation not in TRUNCATION_MODES:
            raise ChatflowError(f"on_truncation must be one of {', '.join(TRUNCATION_MODES)}, got {self.on_truncation!r}")
        if self.prefix_cache not in PREFIX_CACHE_MODES:
            raise ChatflowError(f"prefix_cache must be one of {', '.join(PREFIX_CACHE_MODES)}, got {self.prefix_cache!r}")


def prompt_lengths(protocol: LetterProtocol, settings: EvalSettings, context: int) -> tuple[int, int]:
    """(budget, limit) in tokens: what prompts are fitted to (``--max_length``, else the protocol's own, never
    more than the model's context) and the longest input scored uncut (the budget itself for
    lm-evaluation-harness's left cut, else the model's context)."""
    if settings.max_length:
        budget = settings.max_length
    else:
        budget = min(protocol.max_length, context) if protocol.max_length else context
    return budget, (budget if protocol.fit == "left_cut" else context)


def letter_tokens(tokenizer, protocol: str | LetterProtocol, add_bos: bool = True) -> dict[str, list[str]]:
    """How each letter is read (token ids) or split (continuations) right after the protocol's answer cue.

    ``protocol``: a protocol, or a benchmark name for the first protocol of its ``official`` set.
    """
    if isinstance(protocol, str):
        protocol = protocols_of(protocol)[0]
    targets, _ = letter_targets(protocol, tokenizer)
    out = {}
    for letter, target in zip(LETTERS, targets):
        if isinstance(target, int):
            out[letter] = tokenizer.convert_ids_to_tokens([target])
        else:
            _, ids = split_continuation(tokenizer, "Question\n" + protocol.format.answer_cue, target, add_bos)
            out[target] = tokenizer.convert_ids_to_tokens(ids)
    return out


def _scored(bench: Benchmark, protocol: Protocol, limit: int) -> tuple[list[tuple[Subject, Question]], list[dict]]:
    """((subject, question) pairs the protocol scores, subjects it does not score with the reason).

    A zero-shot protocol also scores the exemplars a few-shot one takes from the questions (GAOKAO)."""
    owners, not_scored = [], []
    for subject in bench.subjects:
        if subject.kind not in protocol.kinds:
            not_scored.append({"location": subject.name, "reason": f"question type {subject.kind} is not scored by "
                                                                   f"the {protocol.name} protocol"})
            continue
        questions = subject.questions
        if isinstance(protocol, GenerationProtocol) and bench.fewshot_from_questions:
            questions = subject.fewshot_pool + subject.questions
        questions = questions[:limit] if limit else questions
        if not questions:
            not_scored.append({"location": subject.name, "reason": "no questions left after the exemplars"})
        owners += [(subject, q) for q in questions]
    if not owners:
        raise ChatflowError(f"{bench.name}: no questions to score with the {protocol.name} protocol"
                            + "".join(f"; {s['location']}: {s['reason']}" for s in not_scored[:3]))
    return owners, not_scored


class _Tally:
    """Per-question outcomes -> subject records, headline average, stderr and chance."""

    def __init__(self, protocol: Protocol):
        self.protocol = protocol
        self.subjects: dict[str, dict] = {}
        self._index: dict[str, int] = {}
        self.ids: list[str] = []
        self.subject_index: list[int] = []
        self.earned: list[float] = []
        self.possible: list[float] = []
        self.chance: list[float] = []

    def add(self, subject: Subject, q: Question, earned: float, possible: float, **extra) -> None:
        rec = self.subjects.setdefault(subject.name, {"n": 0, "correct": 0, "points": 0.0, "points_correct": 0.0,
                                                      **{k: 0 for k in extra}})
        correct = earned >= possible
        rec["n"] += 1
        rec["correct"] += int(correct)
        rec["points"] += possible
        rec["points_correct"] += earned
        for k, v in extra.items():
            rec[k] += v
        weight = 1.0 if self.protocol.average in ("micro", "macro") else possible
        self.ids.append(q.location)
        self.subject_index.append(self._index.setdefault(subject.name, len(self._index)))
        self.earned.append(float(correct) if self.protocol.average != "points" else earned)
        self.possible.append(weight)
        self.chance.append(self.protocol.chance(subject, q) * weight)

    def record(self, settings: EvalSettings) -> tuple[dict, Outcomes]:
        for rec in self.subjects.values():
            rec["accuracy"] = rec["correct"] / rec["n"]
            rec["scoring_rate"] = rec["points_correct"] / rec["points"] if rec["points"] else 0.0
        subj = np.array(self.subject_index, dtype=np.int64)
        earned, possible = np.array(self.earned), np.array(self.possible)
        outcomes = Outcomes(self.ids, subj, earned, possible, self.protocol.average)
        se, how = stderr(outcomes, settings.bootstrap, settings.seed)
        recs = self.subjects.values()
        n = sum(r["n"] for r in recs)
        points = sum(r["points"] for r in recs)
        return {
            "protocol": self.protocol.name, "reference": self.protocol.reference, "method": self.protocol.summary,
            "kind": self.protocol.kind, "acc": outcomes.headline(), "acc_stderr": se, "stderr_method": how, "n": n,
            "chance": float(headline(np.array(self.chance)[None], possible[None], subj, self.protocol.average)[0]),
            "average": self.protocol.average,
            "accuracy_micro": sum(r["correct"] for r in recs) / n,
            "accuracy_macro": float(np.mean([r["accuracy"] for r in recs])),
            "scoring_rate": sum(r["points_correct"] for r in recs) / points if points else 0.0,
            "n_questions": n, "n_subjects": len(self.subjects), "subjects": self.subjects,
        }, outcomes


def _truncation_report(name: str, protocol: Protocol, counts: dict, total: int, budget: int, limit: int, k: int,
                       settings: EvalSettings, model_name: str) -> None:
    n = counts["truncated_prompts"]
    if not n:
        return
    parts = [f"{counts[key]} {what}" for key, what in (
        ("exemplars_dropped", "with exemplars dropped"), ("header_dropped", "without the instruction header"),
        ("over_budget", f"still over it, scored whole (the model takes {limit})"),
        ("prompts_cut", f"cut from the left to {limit}")) if counts.get(key)]
    shots = f" with {k} exemplars" if protocol.kind == "loglikelihood" else ""
    where = f"{model_name} " if model_name else ""
    if protocol.kind == "loglikelihood":
        fits = f"the prompt budget of {budget} tokens{shots}"
    else:
        fits = f"the model's context of {budget} tokens with room for the answer"
    message = f"{where}{name} ({protocol.name} protocol): {n} of {total} prompts do not fit {fits}: {', '.join(parts)}"
    if settings.on_truncation == "fail":
        raise ChatflowError(message + " (--on_truncation warn to score them anyway, marked in table2.md; or "
                                      "--num_fewshot / --max_length)")
    print(f"warning: {message}; these numbers are marked in table2.md", file=sys.stderr)


def _evaluate_letters(scorer: LetterScorer, bench: Benchmark, protocol: LetterProtocol, settings: EvalSettings,
                      on_prediction, model_name: str) -> tuple[dict, Outcomes]:
    tok, k = scorer.tokenizer, settings.num_fewshot
    t0 = time.perf_counter()
    budget, limit = prompt_lengths(protocol, settings, scorer.context)
    targets, note = letter_targets(protocol, tok)
    tokens = letter_tokens(tok, protocol, scorer.add_bos)
    owners, skipped = _scored(bench, protocol, settings.limit)
    extra = readings.extra_tokens(tok, protocol, owners, max(len(t) for t in tokens.values()), scorer.add_bos)
    planner = PromptPlanner(protocol.format, protocol.fit, tok, budget, scorer.add_bos, limit=limit,
                            count_bos=protocol.count_bos)
    plans = [planner.plan(subject, q, k, e) for (subject, q), e in zip(owners, extra)]
    counts = {"truncated_prompts": sum(p.truncated for p in plans),
              "exemplars_dropped": sum(p.shots < p.wanted for p in plans),
              "header_dropped": sum(p.dropped_header for p in plans),
              "over_budget": sum(p.over_budget and not p.cut for p in plans), "prompts_cut": sum(p.cut for p in plans)}
    _truncation_report(bench.name, protocol, counts, len(plans), budget, limit, k, settings, model_name)
    seconds_prompts = time.perf_counter() - t0
    before = scorer.stats.as_dict()
    answers = readings.read(scorer, protocol, owners, plans, targets, limit, desc=f"{bench.name} ({len(plans)} q)")
    tally = _Tally(protocol)
    for (subject, q), plan, got in zip(owners, plans, answers):
        points = q.points if protocol.average == "points" else 1.0
        earned, possible = protocol.score(subject.kind, got.answers, q.answers, points)
        tally.add(subject, q, earned, possible, truncated=int(plan.truncated))
        tally.subjects[subject.name]["fewshot"] = plan.wanted
        if on_prediction is not None:
            single = readings.READINGS[subject.kind] != "sequence"
            on_prediction({"benchmark": bench.name, "protocol": protocol.name, "subject": subject.name,
                           "location": q.location, "gold": q.answers[0] if single else list(q.answers),
                           "prediction": got.answers[0] if single else got.answers,
                           "correct": earned >= possible, "earned": earned, "possible": possible,
                           "shots": plan.shots, "cut": plan.cut, "loglikelihoods": _rounded(got.loglikelihoods)})
    after = scorer.stats.as_dict()
    stats = {key: after[key] - before[key] for key in after}
    stats["requests"], stats["questions"] = stats["questions"], len(plans)   # a multi-question item asks once per letter
    stats["seconds_prompts"] = seconds_prompts
    record, outcomes = tally.record(settings)
    record.update(truncated_prompts=counts.pop("truncated_prompts"),
                  truncation={**counts, "max_length": budget, "context_length": scorer.context, "num_fewshot": k},
                  letter_tokens=tokens, stats=stats,
                  subjects_with_fewer_shots={s: r["fewshot"] for s, r in tally.subjects.items() if r["fewshot"] < k},
                  not_scored=skipped)
    if note:
        record["letter_note"] = note
    return record, outcomes


def _rounded(values):
    return [_rounded(v) for v in values] if isinstance(values, list) else round(float(values), 6)


def _evaluate_generation(scorer: LetterScorer, bench: Benchmark, protocol: GenerationProtocol,
                         settings: EvalSettings, on_prediction, model_name: str) -> tuple[dict, Outcomes]:
    tok, max_length = scorer.tokenizer, settings.max_length or scorer.context
    owners, skipped = _scored(bench, protocol, settings.limit)
    prompts = [protocol.prompt(subject, q, tok, settings.chat_format) for subject, q in owners]
    rows = prompt_rows(tok, prompts, max_new_tokens=settings.max_new_tokens, max_length=max_length,
                       add_bos=scorer.add_bos)
    cut = sum(row.cut for row in rows)
    counts = {"truncated_prompts": cut, "prompts_cut": cut}
    _truncation_report(bench.name, protocol, counts, len(prompts), max_length, max_length, 0, settings, model_name)
    gstats = GenerationStats()
    outputs = generate_answers(scorer.model, tok, rows, [protocol.stop_after(s.kind, q) for s, q in owners],
                               max_new_tokens=settings.max_new_tokens, max_length=max_length,
                               stop_text=protocol.stop_text, batch_size=settings.batch_size, add_bos=scorer.add_bos,
                               stats=gstats, progress=settings.progress, desc=f"{bench.name} generation")
    tally = _Tally(protocol)
    for (subject, q), out in zip(owners, outputs):
        answers = protocol.extract(out.text, subject.kind, len(q.answers))
        earned, possible = protocol.score(subject.kind, answers, q.answers, q.points)
        tally.add(subject, q, earned, possible, truncated=int(out.cut), answered=int(bool(answers)))
        if on_prediction is not None:
            on_prediction({"benchmark": bench.name, "protocol": protocol.name, "subject": subject.name,
                           "location": q.location, "gold": list(q.answers), "prediction": answers,
                           "earned": earned, "possible": possible, "cut": out.cut, "stopped": out.stopped,
                           "output": out.text})
    record, outcomes = tally.record(settings)
    record.update(truncated_prompts=cut, truncation={"prompts_cut": cut, "max_length": max_length,
                                                     "context_length": scorer.context, "num_fewshot": 0,
                                      "max_new_tokens": settings.max_new_tokens,
                                      "shortened_budgets": gstats.shortened_budgets},
                  chat_format=settings.chat_format, stats=gstats.as_dict(),
                  unanswered=sum(r["n"] - r["answered"] for r in tally.subjects.values()))
    record["not_scored"] = skipped
    return record, outcomes


def evaluate_benchmark(scorer: LetterScorer, bench: Benchmark, settings: EvalSettings,
                       on_prediction: Callable[[dict], None] | None = None,
                       outcomes: dict | None = None, model_name: str = "") -> dict[str, Any]:
    """Every protocol of ``settings.protocol`` on ``bench``; the first one's record, with the others
    under ``other_protocols``. ``outcomes``, when given, receives ``{(benchmark, protocol): Outcomes}``."""
    records = []
    not_run = []
    for protocol in protocols_of(bench.name, settings.protocol):
        if isinstance(protocol, GenerationProtocol):
            if not settings.generation:
                not_run.append(protocol.name)
                continue
            record, out = _evaluate_generation(scorer, bench, protocol, settings, on_prediction, model_name)
        else:
            record, out = _evaluate_letters(scorer, bench, protocol, settings, on_prediction, model_name)
        record["label"] = protocol.label
        file_skipped = [{"location": s.location, "reason": s.reason} for s in bench.skipped]
        record["skipped"] = file_skipped + record["not_scored"]
        record["n_skipped"] = len(record["skipped"])
        records.append(record)
        if outcomes is not None:
            outcomes[(bench.name, protocol.name)] = out
    head = records[0]
    if len(records) > 1:
        head["other_protocols"] = {r["protocol"]: r for r in records[1:]}
    if not_run:
        head["protocols_not_run"] = not_run
    return head


def evaluate_model(model, tokenizer, benchmarks: list[Benchmark], settings: EvalSettings,
                   on_prediction: Callable[[dict], None] | None = None, model_name: str = "") -> dict[str, Any]:
    """``{"benchmarks": {name: record}, "letter_tokens": {name: ...}, "context_length", "outcomes"}``;
    ``outcomes`` (per-question results for paired tests) is not meant for the JSON file."""
    scorer = LetterScorer(model, tokenizer, batch_size=settings.batch_size, add_bos=settings.add_bos,
                          progress=settings.progress, prefix_cache=settings.prefix_cache)
    out: dict[str, Any] = {"benchmarks": {}, "letter_tokens": {}, "context_length": scorer.context, "outcomes": {}}
    for bench in benchmarks:
        record = evaluate_benchmark(scorer, bench, settings, on_prediction, out["outcomes"], model_name)
        out["benchmarks"][bench.name] = record
        if "letter_tokens" in record:
            out["letter_tokens"][bench.name] = record["letter_tokens"]
    return out
