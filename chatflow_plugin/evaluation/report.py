"""Markdown and JSON of an evaluation: the Table-2-shaped table, per-subject tables, paired tests.

``table2_markdown`` puts the user's models, the paper's Table 2 rows and the chance level in one table
(accuracy % +- standard error), one column per benchmark (the protocol named first in the registry) and
one per further protocol run (GAOKAO's official generation), followed by the protocol behind every
column, the truncated cells (marked with a dagger) and, with two or more models, paired tests.
"""
from __future__ import annotations

import json
from typing import Any

from .registry import BENCHMARKS, PAPER_MODELS

TRUNCATED = "†"


def _columns(models: dict) -> list[tuple[str, str | None]]:
    """(benchmark, None for its Table 2 record | the name of another protocol), in registry order."""
    cols = []
    for name in BENCHMARKS:
        records = [m["benchmarks"][name] for m in models.values() if name in m["benchmarks"]]
        if not records:
            continue
        cols.append((name, None))
        others = dict.fromkeys(p for r in records for p in r.get("other_protocols", {}))
        cols += [(name, p) for p in others]
    return cols


def _record(model: dict, col: tuple[str, str | None]) -> dict | None:
    name, other = col
    record = model["benchmarks"].get(name)
    if record is None or other is None:
        return record
    return record.get("other_protocols", {}).get(other)


def _title(models: dict, col: tuple[str, str | None]) -> str:
    """The column header; a benchmark reported under several protocols names the protocol of every column,
    its Table 2 column included (GAOKAO (3-shot letters), GAOKAO (0-shot generation))."""
    name, other = col
    records = [r for m in models.values() if (r := _record(m, col))]
    several = any(m["benchmarks"].get(name, {}).get("other_protocols") for m in models.values())
    if other is None and not several:
        return BENCHMARKS[name].display
    label = next((r["label"] for r in records if r.get("label")), other or records[0]["protocol"])
    return f"{BENCHMARKS[name].display} ({label})"


def _cell(record: dict | None) -> str:
    if record is None:
        return "–"
    se = record.get("acc_stderr")
    text = f"{100 * record['acc']:.1f}" + (f" ± {100 * se:.1f}" if se is not None else "")
    return text + (f" {TRUNCATED}" if record.get("truncated_prompts") else "")


def table2_markdown(results: dict[str, Any]) -> str:
    """Model rows x benchmark columns (percent), the paper's rows and chance, then what each column means."""
    models = results["models"]
    cols = _columns(models)
    lines = ["| Model | " + " | ".join(_title(models, c) for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for model_name, m in models.items():
        lines.append(f"| {model_name} | " + " | ".join(_cell(_record(m, c)) for c in cols) + " |")
    for paper_model in PAPER_MODELS:
        cells = [f"{BENCHMARKS[b].paper[paper_model]:.1f}" if other is None and paper_model in BENCHMARKS[b].paper
                 else "–" for b, other in cols]
        lines.append(f"| *paper: {paper_model}* | " + " | ".join(cells) + " |")
    chance = []
    for c in cols:
        values = {round(100 * r["chance"], 1) for m in models.values() if (r := _record(m, c))}
        chance.append("/".join(f"{v:.1f}" for v in sorted(values)) or "–")
    lines.append("| *chance* | " + " | ".join(chance) + " |")

    settings = results.get("settings", {})
    k = settings.get("num_fewshot")
    lines += ["", f"Accuracy (%) ± standard error (`acc_stderr` in the JSON), protocol set `{settings.get('protocol', '?')}`"
                  f"{f', k = {k} exemplars for few-shot protocols' if k is not None else ''}. Protocols:"]
    for c in cols:
        record = next((r for m in models.values() if (r := _record(m, c))), None)
        if record is None:
            continue
        shots = "0-shot" if record["kind"] == "generation" else f"{k}-shot"
        lines.append(f"- **{_title(models, c)}**: `{record['protocol']}` ({shots}, {record['average']} average; "
                     f"reference: {record['reference']}): {record['method']}.")
    for name, other in cols:
        records = [m["benchmarks"][name] for m in models.values() if name in m["benchmarks"]]
        if other is None and any("other_protocols" in r for r in records):
            extra = ", ".join(f"`{p}`" for p in records[0].get("other_protocols", {}))
            lines.append(f"- The {BENCHMARKS[name].display} column of Table 2 is the `{records[0]['protocol']}` "
                         f"protocol; {extra} is reported beside it.")
    lines.append("- Paper rows: ChatFlow (arXiv 2405.10626) Table 2 as printed; the paper states only "
                 "'3-shot', so they compare like for like only with the Table 2 columns.")
    marked = [(model_name, c, r) for model_name, m in models.items() for c in cols
              if (r := _record(m, c)) and r.get("truncated_prompts")]
    if marked:
        lines += ["", f"{TRUNCATED} Prompts that did not fit the model's context, so the number is not the "
                      "protocol's k-shot number:"]
        for model_name, c, r in marked:
            t = r.get("truncation", {})
            parts = [f"{t[key]} {what}" for key, what in (("exemplars_dropped", "with exemplars dropped"),
                                                          ("header_dropped", "without the header"),
                                                          ("prompts_cut", "cut from the left")) if t.get(key)]
            lines.append(f"- {model_name}, {_title(models, c)}: {r['truncated_prompts']} of {r['n']} prompts "
                         f"({', '.join(parts)}); context length {t.get('max_length')} tokens.")
    paired = results.get("paired") or []
    if paired:
        lines += ["", "Paired differences (A − B, percentage points, on the questions both models were scored on):", "",
                  "| benchmark | A | B | A − B | 95% CI | paired bootstrap p | McNemar p (A only / B only) |",
                  "|---|---|---|---:|---|---:|---:|"]
        for p in paired:
            if p.get("diff") is None:
                continue
            mc, ci = p.get("mcnemar"), p.get("ci95")
            lines.append(f"| {p['column']} | {p['a']} | {p['b']} | {100 * p['diff']:+.1f} | "
                         + (f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}] | {p['p_bootstrap']:.3f} | " if ci else "– | – | ")
                         + (f"{mc['p']:.3f} ({mc['a_only']} / {mc['b_only']})" if mc else "–") + " |")
    return "\n".join(lines).rstrip() + "\n"


def subjects_markdown(results: dict[str, Any]) -> str:
    """Per-subject accuracy (%) of every model, one table per benchmark (its Table 2 protocol)."""
    parts = []
    models = results["models"]
    for b, spec in BENCHMARKS.items():
        evaluated = [m for m in models if b in models[m]["benchmarks"]]
        if not evaluated:
            continue
        subjects = sorted({s for m in evaluated for s in models[m]["benchmarks"][b]["subjects"]})
        parts += [f"### {spec.display}", "", "| subject | n | " + " | ".join(evaluated) + " |",
                  "|---|---:|" + "---:|" * len(evaluated)]
        for s in subjects:
            recs = [models[m]["benchmarks"][b]["subjects"].get(s) for m in evaluated]
            n = next(r["n"] for r in recs if r)
            parts.append(f"| {s} | {n} | " + " | ".join(f"{100 * r['accuracy']:.1f}" if r else "–" for r in recs) + " |")
        parts.append("")
    return "\n".join(parts)


def paired_tests(models: dict[str, dict], outcomes: dict[str, dict], n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Every pair of models, every benchmark column both have: :func:`.uncertainty.paired_test`."""
    from .uncertainty import paired_test

    names = list(models)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for key in outcomes.get(a, {}):
                if key not in outcomes.get(b, {}):
                    continue
                benchmark, protocol = key
                record = models[a]["benchmarks"][benchmark]
                col = (benchmark, None if record["protocol"] == protocol else protocol)
                test = paired_test(outcomes[a][key], outcomes[b][key], n_boot, seed)
                out.append({"benchmark": benchmark, "protocol": protocol, "column": _title(models, col),
                            "a": a, "b": b, **test})
    return out


def dumps(results: dict[str, Any]) -> str:
    return json.dumps(results, ensure_ascii=False, indent=2) + "\n"
