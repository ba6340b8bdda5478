"""Generate the project's bundled synthetic bilingual corpora (deterministic for a given --seed/--scale).

    python corpora/generate.py                         # rewrite the committed files in corpora/
    python corpora/generate.py --scale 0.1 --output_dir /tmp/tiny

One invented world (countries, cities, rivers, people; see synth_world.py) is described in English
text, Chinese text, en-zh pairs, instructions, conversations and small Python modules. Every
record is independent of the others, so any split of a file is a valid held-out split; records
are unique within each file. Small benchmark files asking about the same world (MMLU, C-Eval,
CMMLU and GAOKAO-Bench layouts, under benchmarks/; see synth_benchmarks.py) are written too; their
size does not follow --scale. Each file is written under a temporary name and moved into place
when complete.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                 # the synth_* modules next to this script
if str(HERE.parent) not in sys.path:          # chatflow_plugin when run from a checkout without install
    sys.path.append(str(HERE.parent))

import synth_benchmarks                        # noqa: E402
import synth_code                              # noqa: E402
import synth_instructions                      # noqa: E402
import synth_sentences as S                    # noqa: E402
from synth_world import World, build_world     # noqa: E402

from chatflow_plugin.files import atomic_file  # noqa: E402
from chatflow_plugin.errors import ChatflowError  # noqa: E402
from chatflow_plugin.options import option, parse_options  # noqa: E402

# Records per file at --scale 1 (about 3 MB in all; English text gets the largest share).
BASE_COUNTS = {
    "en_corpus/synthetic_en.jsonl": 4500,
    "zh_corpus/synthetic_zh.jsonl": 2400,
    "parallel/synthetic_en_zh.jsonl": 2500,
    "en_inst/synthetic_en_inst.jsonl": 1500,
    "en_inst/synthetic_en_multiturn.jsonl": 300,
    "zh_inst/synthetic_zh_inst.jsonl": 1500,
    "zh_inst/synthetic_zh_multiturn.jsonl": 300,
    "code/synthetic_code.jsonl": 300,
}
ATTEMPTS_PER_RECORD = 50


@dataclass
class GenerateOptions:
    output_dir: str = option(str(HERE), help="directory the corpus files are written under (default: corpora/ next to this script)")
    scale: float = option(1.0, help="multiplier on the number of records per file (> 0); 1.0 gives about 3 MB, 20 about 70 MB")
    seed: int = option(0, help="random seed of the world and of every file; the same seed and scale give byte-identical files")
    benchmark_questions: int = option(synth_benchmarks.QUESTIONS_PER_SUBJECT,
                                      help="scored questions per benchmark subject (>= 1; each subject also has "
                                           f"{synth_benchmarks.FEWSHOT} few-shot exemplars); not affected by --scale")


def json_line(record: dict) -> str:
    """One JSONL line: non-ASCII literal, but the separators splitlines() would break on escaped."""
    text = json.dumps(record, ensure_ascii=False)
    for ch in ("\u0085", "\u2028", "\u2029"):
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text + "\n"


def unique_records(make: Callable[[], dict], count: int, what: str) -> list[dict]:
    """``count`` distinct records from ``make``; duplicates are redrawn (they would leak across splits)."""
    seen, out = set(), []
    for _ in range(count * ATTEMPTS_PER_RECORD):
        record = make()
        key = json_line(record)
        if key in seen:
            continue
        seen.add(key)
        out.append(record)
        if len(out) == count:
            return out
    raise ChatflowError(f"{what}: only {len(out)} distinct records after {count * ATTEMPTS_PER_RECORD} draws "
                        f"(wanted {count}); use a smaller --scale")


def _parallel_records(rng: random.Random, world: World, count: int) -> list[dict]:
    """Pairs distinct in English and in Chinese: no sentence has two translations in the file."""
    seen_en, seen_zh, out = set(), set(), []
    for _ in range(count * ATTEMPTS_PER_RECORD):
        pair = S.parallel_unit(rng, world)
        if pair.en in seen_en or pair.zh in seen_zh:
            continue
        seen_en.add(pair.en)
        seen_zh.add(pair.zh)
        out.append({"en": pair.en, "zh": pair.zh})
        if len(out) == count:
            return out
    raise ChatflowError(f"parallel: only {len(out)} distinct pairs; use a smaller --scale")


def _conversation(turns: list[tuple[str, str]]) -> dict:
    messages = []
    for human, gpt in turns:
        messages.append({"from": "human", "value": human})
        messages.append({"from": "gpt", "value": gpt})
    return {"conversations": messages}


def _instruction(triple: tuple[str, str, str]) -> dict:
    return {"instruction": triple[0], "input": triple[1], "output": triple[2]}


def build_records(rel_path: str, world: World, count: int, seed: int) -> list[dict]:
    """The records of one output file; each file has its own random stream, named by its path."""
    rng = random.Random(f"{seed}/{rel_path}")
    if rel_path.startswith("en_corpus/"):
        return unique_records(lambda: {"text": S.en_text(S.document(rng, world))}, count, rel_path)
    if rel_path.startswith("zh_corpus/"):
        return unique_records(lambda: {"text": S.zh_text(S.document(rng, world))}, count, rel_path)
    if rel_path.startswith("parallel/"):
        return _parallel_records(rng, world, count)
    lang = rel_path[:2]
    if rel_path.endswith("_inst.jsonl"):
        return unique_records(lambda: _instruction(synth_instructions.instruction(rng, world)[lang]), count, rel_path)
    if rel_path.endswith("_multiturn.jsonl"):
        return unique_records(lambda: _conversation(synth_instructions.conversation(rng, world)[lang]), count, rel_path)
    if rel_path.startswith("code/"):
        return unique_records(lambda: {"text": synth_code.module(rng, world)}, count, rel_path)
    raise ChatflowError(f"no generator for {rel_path}")


def record_count(base: int, scale: float) -> int:
    return max(1, round(base * scale))


def generate(output_dir: str | Path, scale: float = 1.0, seed: int = 0) -> dict[str, tuple[int, int]]:
    """Write every corpus file under ``output_dir``; returns {relative path: (records, bytes)}."""
    if not scale > 0:                  # also rejects NaN
        raise ChatflowError(f"--scale must be > 0, got {scale}")
    output_dir = Path(output_dir)
    world = build_world(seed)
    summary = {}
    for rel_path, base in BASE_COUNTS.items():
        records = build_records(rel_path, world, record_count(base, scale), seed)
        data = "".join(json_line(r) for r in records).encode("utf-8")
        with atomic_file(output_dir / rel_path, "wb") as handle:
            handle.write(data)
        summary[rel_path] = (len(records), len(data))
    return summary


BENCHMARK_DIR = "benchmarks"


def generate_benchmarks(output_dir: str | Path, seed: int = 0,
                        questions: int = synth_benchmarks.QUESTIONS_PER_SUBJECT) -> dict[str, tuple[int, int]]:
    """Write the benchmark files under ``output_dir/benchmarks``; returns {relative path: (records, bytes)}.

    Records are question rows for CSV files, examples for GAOKAO question files, prompts for Obj_Prompt.json.
    """
    files = synth_benchmarks.benchmark_files(build_world(seed), seed, questions)   # all drawn before any write
    summary = {}
    for rel_path, (records, data) in files.items():
        rel_path = f"{BENCHMARK_DIR}/{rel_path}"
        with atomic_file(Path(output_dir) / rel_path, "wb") as handle:
            handle.write(data)
        summary[rel_path] = (records, len(data))
    return summary


def summary_table(summary: dict[str, tuple[int, int]]) -> str:
    rows = ["| file | records | bytes |", "|---|---:|---:|"]
    rows += [f"| `{path}` | {n:,} | {size:,} |" for path, (n, size) in summary.items()]
    rows.append(f"| total | {sum(n for n, _ in summary.values()):,} | {sum(s for _, s in summary.values()):,} |")
    return "\n".join(rows)


def benchmark_table(summary: dict[str, tuple[int, int]]) -> str:
    """One row per benchmark and split directory: files, records (questions), bytes."""
    groups: dict[str, list[int]] = {}
    for path, (n, size) in summary.items():
        parent = path.rsplit("/", 1)[0]
        group = parent + "/" if parent.count("/") >= 2 else path      # a split directory, or a top-level file
        counts = groups.setdefault(group, [0, 0, 0])
        counts[0] += 1
        counts[1] += n
        counts[2] += size
    rows = ["| benchmark files | files | records | bytes |", "|---|---:|---:|---:|"]
    rows += [f"| `{group}` | {f} | {n:,} | {size:,} |" for group, (f, n, size) in groups.items()]
    rows.append(f"| total | {len(summary)} | {sum(n for n, _ in summary.values()):,} | "
                f"{sum(s for _, s in summary.values()):,} |")
    return "\n".join(rows)


def cli_main(argv: Iterable[str] | None = None, prog: str = "generate.py") -> int:
    opts = parse_options(GenerateOptions, list(argv) if argv is not None else None, prog=prog,
                         description="Generate the synthetic bilingual corpora and benchmark files (deterministic).")
    try:
        synth_benchmarks.check_question_count(opts.benchmark_questions)     # before anything is written
        summary = generate(opts.output_dir, opts.scale, opts.seed)
        benchmarks = generate_benchmarks(opts.output_dir, opts.seed, opts.benchmark_questions)
    except ChatflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_table(summary))
    print()
    print(benchmark_table(benchmarks))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())
