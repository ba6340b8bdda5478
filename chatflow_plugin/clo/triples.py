"""``chatflow clo-data``: Cross-Lingual Optimization preference triples from English instructions.

Every usable pair (x_en, y_en) / (x_l, y_l) gives exactly two triples, written consecutively:

    {"pair": i, "prompt_lang": "en", "prompt": x_en, "chosen": y_en, "rejected": y_l, "origin": ...}
    {"pair": i, "prompt_lang": "zh", "prompt": x_l,  "chosen": y_l,  "rejected": y_en, "origin": ...}

Pairs come from (a) an English instruction file plus an aligned target-language file (line i with
line i), (b) a parallel instruction file (``{"en": {...}, "zh": {...}}`` per line), or (c) an English
file plus a local HuggingFace seq2seq translation model (Marian, M2M100, NLLB ...). Instruction
records are Alpaca-style (``instruction``, optional ``input``, ``output``) or ``prompt``/``response``;
files are JSONL or one JSON array. Bad pairs (unreadable record, empty side, the same text on both
sides, a target response that is detectably still in the source language, surplus lines of unequal
files) are reported with their file and line and skipped; ``--on_bad_record fail`` stops instead.

The output directory holds ``triples.jsonl`` and ``build.json`` (counts, skip reasons, inputs,
checksum); :func:`load_triples` reads and validates it. The reference log-prob cache of
``chatflow clo-train`` lives in the same directory.
"""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ..data.inputs import iter_json_records
from ..files import read_jsonl, sha256_file
from ..outputs import OutputKind, atomic_directory
from ..errors import ChatflowError, DataError
from ..languages import detect_language, script_of_language
from ..options import option

TRIPLES_FILE = "triples.jsonl"
BUILD_FILE = "build.json"
TRIPLES_KIND = OutputKind("clo-triples", files=(TRIPLES_FILE, BUILD_FILE), folders=())   # chatflow_plugin.outputs
MAX_REPORTED = 20   # skipped pairs printed individually; the rest are only counted


@dataclass(frozen=True)
class InstructionPair:
    """One English instruction pair and its target-language counterpart; ``origin`` is file:line."""

    source_prompt: str
    source_response: str
    target_prompt: str
    target_response: str
    origin: str = ""


@dataclass
class TripleSet:
    """A validated ``triples.jsonl``: the pairs in file order, their languages and the file's checksum."""

    directory: Path
    pairs: list[InstructionPair]
    source_lang: str
    target_lang: str
    sha256: str

    def __len__(self) -> int:
        return len(self.pairs)


def instruction_text(record: object) -> tuple[str, str]:
    """(prompt, response) of an Alpaca-style or prompt/response record; DataError when unusable."""
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}")
    if "conversations" in record:
        raise DataError("multi-turn 'conversations' records are not supported by CLO (single-turn only)")
    if "instruction" in record:
        keys = ("instruction", "input", "output")
    elif "prompt" in record:
        keys = ("prompt", None, "response")
    else:
        raise DataError("expected fields instruction/input/output or prompt/response")
    values = []
    for key in keys:
        value = record.get(key, "") if key else ""
        if key and key not in record and key != "input":
            raise DataError(f"missing field {key!r}")
        if not isinstance(value, str):
            raise DataError(f"field {key!r} must be a string, got {type(value).__name__}")
        values.append(value)
    question, extra, answer = values
    prompt = question + ("\n" + extra if extra.strip() else "")
    return prompt, answer


def read_records(path: str | os.PathLike) -> Iterator[tuple[str, object]]:
    """Yield ``(location, record or DataError)`` for a JSONL file or a JSON-array file (either plain or
    gzip/bz2/xz/zstd-compressed, told by content), a parquet or Arrow file or a ``datasets`` folder
    (:func:`chatflow_plugin.data.inputs.iter_json_records`)."""
    path = Path(path)
    if not path.exists():
        raise ChatflowError(f"{path}: no such file")
    yield from iter_json_records(path)


def _parsed(items: Iterable[tuple[str, object]]) -> Iterator[tuple[str, tuple[str, str] | DataError]]:
    for where, record in items:
        if isinstance(record, DataError):
            yield where, record
            continue
        try:
            yield where, instruction_text(record)
        except DataError as exc:
            yield where, exc


class SkipLog:
    """Counts skipped pairs by reason; prints the first few with their location."""

    def __init__(self, on_bad_record: str = "skip", stream="stderr"):
        if on_bad_record not in ("skip", "fail"):
            raise ChatflowError(f"--on_bad_record must be 'skip' or 'fail', got {on_bad_record!r}")
        self.on_bad_record = on_bad_record
        self.reasons: Counter[str] = Counter()
        self.examples: list[str] = []
        self.stream = stream

    def skip(self, where: str, reason: str, detail: str = "") -> None:
        message = f"{where}: skipped ({reason}{': ' + detail if detail else ''})"
        if self.on_bad_record == "fail":
            raise DataError(f"{reason}{': ' + detail if detail else ''}", where)
        self.reasons[reason] += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append(message)
            if self.stream is not None:
                print(message, file=sys.stderr if self.stream == "stderr" else self.stream)


def aligned_pairs(english: str, target: str, log: SkipLog) -> Iterator[InstructionPair]:
    """Pairs from two files aligned record by record; surplus records of the longer file are skipped."""
    left, right = _parsed(read_records(english)), _parsed(read_records(target))
    while True:
        a, b = next(left, None), next(right, None)
        if a is None and b is None:
            return
        if a is None or b is None:
            rest = [b] + list(right) if a is None else [a] + list(left)
            longer = target if a is None else english
            log.skip(rest[0][0], "misaligned_count",
                     f"{len(rest)} record(s) of {longer} have no counterpart in the other file")
            log.reasons["misaligned_count"] += len(rest) - 1
            return
        (where_a, x), (where_b, y) = a, b
        if isinstance(x, DataError) or isinstance(y, DataError):
            bad_where, bad = (where_a, x) if isinstance(x, DataError) else (where_b, y)
            log.skip(bad_where, "bad_record", str(bad))
            continue
        yield InstructionPair(x[0], x[1], y[0], y[1], origin=f"{where_a} / {where_b}")


def parallel_pairs(path: str, source_lang: str, target_lang: str, log: SkipLog) -> Iterator[InstructionPair]:
    """Pairs from a parallel instruction file: ``{source_lang: record, target_lang: record}`` per line."""
    for where, record in read_records(path):
        try:
            if isinstance(record, DataError):
                raise record
            if not isinstance(record, dict):
                raise DataError(f"expected a JSON object, got {type(record).__name__}")
            sides = []
            for lang in (source_lang, target_lang):
                if lang not in record:
                    raise DataError(f"missing field {lang!r} (an instruction record in that language)")
                try:
                    sides.append(instruction_text(record[lang]))
                except DataError as exc:
                    raise DataError(f"field {lang!r}: {exc}") from None
        except DataError as exc:
            log.skip(where, "bad_record", str(exc))
            continue
        (xs, ys), (xt, yt) = sides
        yield InstructionPair(xs, ys, xt, yt, origin=where)


def _looks_like_source(text: str, source_lang: str, target_lang: str) -> bool:
    """True when the text is confidently detected as the source language (an untranslated side)."""
    if script_of_language(source_lang) == script_of_language(target_lang):
        return False   # same script: detection is only a heuristic; do not drop data on it
    detected = detect_language(text)
    return detected.matches(source_lang) and not detected.matches(target_lang)


def checked_pairs(pairs: Iterable[InstructionPair], log: SkipLog, source_lang: str, target_lang: str,
                  check_language: bool = True) -> Iterator[InstructionPair]:
    """Drop pairs with an empty side, identical sides, or a target side still in the source language."""
    for pair in pairs:
        sides = {"source prompt": pair.source_prompt, "source response": pair.source_response,
                 "target prompt": pair.target_prompt, "target response": pair.target_response}
        empty = [name for name, text in sides.items() if not text.strip()]
        if empty:
            log.skip(pair.origin, "empty_side", ", ".join(empty))
        elif pair.source_response.strip() == pair.target_response.strip():
            log.skip(pair.origin, "identical_response", "chosen and rejected would be the same text")
        elif pair.source_prompt.strip() == pair.target_prompt.strip():
            log.skip(pair.origin, "identical_prompt", "the prompt was not translated")
        elif check_language and _looks_like_source(pair.target_response, source_lang, target_lang):
            # only the response: a target-language prompt may quote source text (translation tasks)
            log.skip(pair.origin, "untranslated", f"target response detected as {source_lang!r}")
        else:
            yield pair


def build_triples(pairs: Iterable[InstructionPair], source_lang: str, target_lang: str) -> list[dict]:
    """Exactly two triples per pair: source prompt prefers y_src over y_tgt, target prompt the reverse."""
    triples = []
    for i, pair in enumerate(pairs):
        triples.append({"pair": i, "prompt_lang": source_lang, "prompt": pair.source_prompt,
                        "chosen": pair.source_response, "rejected": pair.target_response, "origin": pair.origin})
        triples.append({"pair": i, "prompt_lang": target_lang, "prompt": pair.target_prompt,
                        "chosen": pair.target_response, "rejected": pair.source_response, "origin": pair.origin})
    return triples


def write_triples(output_dir: str | os.PathLike, triples: list[dict], build_info: dict, force: bool = False,
                  inputs: Iterable[str | None] = ()) -> Path:
    """Write ``triples.jsonl`` + ``build.json`` into a directory that appears only when complete (``inputs``: the
    files it was built from, which it must not replace)."""
    with atomic_directory(output_dir, TRIPLES_KIND, force=force, inputs=inputs) as tmp:
        with open(tmp / TRIPLES_FILE, "w", encoding="utf-8") as handle:
            for triple in triples:
                handle.write(json.dumps(triple, ensure_ascii=False) + "\n")
        info = dict(build_info, pairs=len(triples) // 2, triples=len(triples),
                    triples_sha256=sha256_file(tmp / TRIPLES_FILE))
        (tmp / BUILD_FILE).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return Path(output_dir)


def load_triples(directory: str | os.PathLike) -> TripleSet:
    """Read and validate a ``chatflow clo-data`` directory (two consistent triples per pair)."""
    directory = Path(directory)
    path = directory / TRIPLES_FILE
    build_path = directory / BUILD_FILE
    if not path.is_file() or not build_path.is_file():
        raise ChatflowError(f"{directory}: not a clo-data directory (needs {TRIPLES_FILE} and {BUILD_FILE}; "
                            f"build one with `chatflow clo-data`)")
    try:
        build = json.loads(build_path.read_text(encoding="utf-8"))
        source_lang, target_lang = build["source_lang"], build["target_lang"]
    except (ValueError, RecursionError, KeyError, TypeError) as exc:
        raise DataError(f"unreadable build record ({exc})", str(build_path)) from None
    pairs: list[InstructionPair] = []
    pending: tuple[str, dict] | None = None
    for number, triple in read_jsonl(path, on_bad_line="yield"):
        where = f"{path}:{number}"
        if isinstance(triple, DataError):
            raise DataError(f"not a triple: {triple.reason}", where)
        try:
            fields = {k: triple[k] for k in ("pair", "prompt_lang", "prompt", "chosen", "rejected")}
        except (KeyError, TypeError) as exc:
            raise DataError(f"not a triple ({type(exc).__name__}: {exc})", where) from None
        if not all(isinstance(fields[k], str) and fields[k].strip() for k in ("prompt", "chosen", "rejected")):
            raise DataError("prompt, chosen and rejected must be non-empty strings", where)
        expected_lang = source_lang if pending is None else target_lang
        if fields["pair"] != len(pairs) or fields["prompt_lang"] != expected_lang:
            raise DataError(f"expected pair {len(pairs)} with prompt_lang {expected_lang!r}, got pair "
                            f"{fields['pair']!r} with {fields['prompt_lang']!r}", where)
        if pending is None:
            pending = (where, fields)
            continue
        first = pending[1]
        if first["chosen"] != fields["rejected"] or first["rejected"] != fields["chosen"]:
            raise DataError("the two triples of a pair must swap chosen and rejected", where)
        pairs.append(InstructionPair(first["prompt"], first["chosen"], fields["prompt"], fields["chosen"],
                                     origin=triple.get("origin", "")))
        pending = None
    if pending is not None:
        raise DataError("the last pair has only one triple", pending[0])
    if not pairs:
        raise DataError("no triples", str(path))
    return TripleSet(directory, pairs, source_lang, target_lang, sha256_file(path))


# ----------------------------------------------------------------------------------------------
# (c) translation with a local seq2seq model


def translate_texts(texts: list[str], model_dir: str | os.PathLike, *, source_code: str | None = None,
                    target_code: str | None = None, batch_size: int = 16, num_beams: int = 4,
                    max_new_tokens: int = 256, device: str = "auto", progress: bool = True) -> list[str]:
    """Translate texts line by line with a local HF seq2seq model directory (Marian, M2M100, NLLB ...).

    Each text is split into lines (MT models are trained on sentences; a long multi-paragraph
    response translated in one piece is truncated or garbled); unique non-empty lines are translated
    in length-sorted batches and the texts reassembled with their original line breaks.
    ``source_code``/``target_code`` are the tokenizer's language codes for multilingual models
    (M2M100 ``en``/``zh``, NLLB ``eng_Latn``/``zho_Hans``); Marian models are one direction and need none.
    """
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ChatflowError(f"{model_dir}: not a HuggingFace model directory (no config.json)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise ChatflowError(f"{model_dir}: cannot load a seq2seq translation model: {exc}") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    generate_kwargs = {"num_beams": num_beams, "max_new_tokens": max_new_tokens, "do_sample": False}
    if source_code is not None:
        if not hasattr(tokenizer, "src_lang"):
            raise ChatflowError(f"{model_dir}: this tokenizer has no language codes; drop --source_code")
        tokenizer.src_lang = source_code
    if target_code is not None:
        lang_id = (tokenizer.get_lang_id(target_code) if hasattr(tokenizer, "get_lang_id")
                   else tokenizer.convert_tokens_to_ids(target_code))
        if lang_id is None or lang_id == tokenizer.unk_token_id:
            raise ChatflowError(f"{model_dir}: unknown target language code {target_code!r}")
        generate_kwargs["forced_bos_token_id"] = lang_id

    lines_of = [text.split("\n") for text in texts]
    unique = sorted({line.strip() for lines in lines_of for line in lines if line.strip()}, key=len, reverse=True)
    translated: dict[str, str] = {}
    bar = tqdm(total=len(unique), desc="translating", unit="line", disable=not progress)
    with torch.inference_mode():
        for start in range(0, len(unique), batch_size):
            batch = unique[start:start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True).to(device)
            out = model.generate(**enc, **generate_kwargs)
            for line, text in zip(batch, tokenizer.batch_decode(out, skip_special_tokens=True)):
                translated[line] = text.strip()
            bar.update(len(batch))
    bar.close()
    return ["\n".join(translated[line.strip()] if line.strip() else line for line in lines) for lines in lines_of]


def translated_pairs(english: str, model_dir: str, log: SkipLog, limit: int | None = None,
                     **translate_kwargs) -> list[InstructionPair]:
    """Pairs from English records and their machine translations (prompt and response separately)."""
    records = []
    for where, parsed in _parsed(read_records(english)):
        if isinstance(parsed, DataError):
            log.skip(where, "bad_record", str(parsed))
            continue
        records.append((where, parsed))
        if limit is not None and len(records) >= limit:
            break
    texts = [text for _, (prompt, response) in records for text in (prompt, response)]
    out = translate_texts(texts, model_dir, **translate_kwargs)
    return [InstructionPair(prompt, response, out[2 * i], out[2 * i + 1], origin=where)
            for i, (where, (prompt, response)) in enumerate(records)]


# ----------------------------------------------------------------------------------------------


@dataclass
class CLODataOptions:
    output_dir: str = option(help="directory to create with triples.jsonl and build.json")
    english: Optional[str] = option(None, help="English instruction file (JSONL or JSON array; Alpaca "
                                 "instruction/input/output or prompt/response records)")
    target: Optional[str] = option(None, help="target-language instruction file aligned record by record with "
                                "--english (mode a)")
    parallel: Optional[str] = option(None, help="parallel instruction file, one {SOURCE_LANG: record, "
                                  "TARGET_LANG: record} object per line (mode b)")
    translation_model: Optional[str] = option(None, help="local HuggingFace seq2seq model directory that "
                                           "translates --english into the target language (mode c)")
    source_lang: str = option("en", help="language code of the English side (as written in the triples)")
    target_lang: str = option("zh", help="language code of the target side (as written in the triples)")
    source_code: Optional[str] = option(None, help="mode c: the translation tokenizer's source language code "
                                     "(M2M100 'en', NLLB 'eng_Latn'); omit for Marian")
    target_code: Optional[str] = option(None, help="mode c: the translation model's target language code "
                                     "(M2M100 'zh', NLLB 'zho_Hans'); omit for Marian")
    translation_batch_size: int = option(16, help="mode c: lines per translation batch")
    num_beams: int = option(4, help="mode c: beam size of the translation model")
    max_new_tokens: int = option(256, help="mode c: maximum tokens generated per translated line")
    device: str = option("auto", help="mode c: torch device for translation (auto = cuda if available)")
    max_pairs: Optional[int] = option(None, help="stop after this many usable pairs (default: all)")
    no_language_check: bool = option(False, help="keep pairs whose target side is detected as still being "
                                     "in the source language (detection is script-based; never applied "
                                     "when both languages share a script)")
    on_bad_record: str = option("skip", choices=["skip", "fail"], help="skip: report bad pairs and go on; fail: stop at the first")
    force: bool = option(False, help="replace an existing output directory")
    quiet: bool = option(False, help="no progress bar")


def build_clo_data(options: CLODataOptions) -> dict:
    """Run one ``clo-data`` job; returns the build record written to ``build.json``."""
    modes = [name for name, value in (("--target", options.target), ("--parallel", options.parallel),
                                      ("--translation_model", options.translation_model)) if value]
    if len(modes) != 1:
        raise ChatflowError("give exactly one of --target (with --english), --parallel, or --translation_model "
                            f"(with --english); got {', '.join(modes) or 'none'}")
    if options.parallel is None and options.english is None:
        raise ChatflowError(f"{modes[0]} needs --english")
    if options.parallel is not None and options.english is not None:
        raise ChatflowError("--parallel takes no --english file")
    if options.source_lang == options.target_lang:
        raise ChatflowError("--source_lang and --target_lang must differ")
    if options.max_pairs is not None and options.max_pairs < 1:
        raise ChatflowError("--max_pairs must be positive")
    if Path(options.output_dir).exists() and not options.force:
        raise ChatflowError(f"output directory {options.output_dir} already exists (pass --force to replace it)")
    log = SkipLog(options.on_bad_record)
    if options.target:
        pairs: Iterable[InstructionPair] = aligned_pairs(options.english, options.target, log)
        inputs = {"english": options.english, "target": options.target}
    elif options.parallel:
        pairs = parallel_pairs(options.parallel, options.source_lang, options.target_lang, log)
        inputs = {"parallel": options.parallel}
    else:
        # translate a little more than needed: some translations will be dropped as bad pairs
        limit = None if options.max_pairs is None else int(options.max_pairs * 1.1) + 8
        pairs = translated_pairs(options.english, options.translation_model, log, limit=limit,
                                 source_code=options.source_code, target_code=options.target_code,
                                 batch_size=options.translation_batch_size, num_beams=options.num_beams,
                                 max_new_tokens=options.max_new_tokens, device=options.device,
                                 progress=not options.quiet)
        inputs = {"english": options.english, "translation_model": options.translation_model,
                  "source_code": options.source_code, "target_code": options.target_code,
                  "num_beams": options.num_beams}
    kept = []
    for pair in checked_pairs(pairs, log, options.source_lang, options.target_lang,
                              check_language=not options.no_language_check):
        kept.append(pair)
        if options.max_pairs is not None and len(kept) >= options.max_pairs:
            break
    if not kept:
        raise ChatflowError(f"no usable pairs (skipped: {dict(log.reasons) or 'none'})")
    triples = build_triples(kept, options.source_lang, options.target_lang)
    info = {"source_lang": options.source_lang, "target_lang": options.target_lang, "inputs": inputs,
            "skipped": dict(log.reasons), "skipped_examples": log.examples}
    write_triples(options.output_dir, triples, info, force=options.force,
                  inputs=(options.english, options.target, options.parallel, options.translation_model))
    return json.loads((Path(options.output_dir) / BUILD_FILE).read_text(encoding="utf-8"))


def clo_data(options: CLODataOptions) -> dict:
    """Build CLO preference triples (two per English instruction and its target-language counterpart) from an
    aligned target-language file, a parallel file or a local translation model."""
    info = build_clo_data(options)
    skipped = sum(info["skipped"].values())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(info["skipped"].items())) or "none"
    print(f"{options.output_dir}: {info['pairs']} pairs -> {info['triples']} triples "
          f"({options.source_lang}->{options.target_lang}); skipped {skipped} ({reasons})")
    return info
