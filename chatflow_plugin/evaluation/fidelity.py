"""Language fidelity: the share of generated responses written in the language of their prompt.

A model adapted to a target language should answer a Chinese prompt in Chinese and an English one in
English; CLO (arXiv 2505.14297) reports this share next to task quality. Each response's language is
detected with :func:`chatflow_plugin.languages.detect_language` (no model, no download: letters per
Unicode script, then function words and letters unique to a language where several share a script; the
rules are in :mod:`chatflow_plugin.languages`).

A response *matches* an expected language when its detected language equals it or, when only the
script was determined, when the script is the expected language's script; an undetermined (e.g.
empty) response never matches. :func:`language_fidelity` scores responses already generated;
:func:`evaluate_fidelity` generates them greedily from a model directory (for ``chatflow eval``);
``chatflow fidelity --model DIR --prompts FILE`` does the same from the
shell, and ``--languages ja,en`` without a file asks each language's default prompts of
:mod:`chatflow_plugin.languages`.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ChatflowError, DataError
from ..files import read_jsonl
from ..languages import detect_language, get_language, normalize_language
from ..options import option


def language_fidelity(expected: list[str], responses: list[str]) -> dict:
    """Share of responses in their expected language, overall and per language.

    Returns ``{"fidelity": share, "n": n, "matched": k, "undetermined": u, "per_language":
    {lang: {"fidelity", "n", "matched"}}, "detected": {lang: {detected label: count}}}``.
    """
    if len(expected) != len(responses):
        raise ChatflowError(f"{len(expected)} expected languages for {len(responses)} responses")
    if not responses:
        raise ChatflowError("no responses to score")
    per: dict[str, dict] = {}
    detected: dict[str, Counter] = {}
    matched = undetermined = 0
    for lang, response in zip(expected, responses):
        key = normalize_language(lang)
        found = detect_language(response)
        ok = found.matches(lang)
        matched += ok
        undetermined += not found.determined
        row = per.setdefault(key, {"n": 0, "matched": 0})
        row["n"] += 1
        row["matched"] += ok
        label = found.language or found.script
        detected.setdefault(key, Counter())[label] += 1
    for row in per.values():
        row["fidelity"] = row["matched"] / row["n"]
    return {"fidelity": matched / len(responses), "n": len(responses), "matched": matched,
            "undetermined": undetermined, "per_language": per,
            "detected": {k: dict(v) for k, v in detected.items()}}


# ----------------------------------------------------------------------------------------------
# prompts and generation


def load_prompts(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(prompt, language)`` pairs from a JSONL file or a ``chatflow clo-data`` directory.

    JSONL records are ``{"prompt": ..., "lang": ...}`` or Alpaca ``instruction``/``input`` with an
    optional ``lang``; without ``lang`` the prompt's own detected language is expected, and a prompt
    whose language cannot be determined is an error (say its language explicitly). In a clo-data
    directory every triple's prompt counts, with its ``prompt_lang``.
    """
    path = Path(path)
    if path.is_dir():
        from ..clo.triples import load_triples

        triples = load_triples(path)
        out = []
        for pair in triples.pairs:
            out += [(pair.source_prompt, triples.source_lang), (pair.target_prompt, triples.target_lang)]
        return out
    if not path.is_file():
        raise ChatflowError(f"{path}: no such prompts file")
    out = []
    for number, record in read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(record, dict):
            raise DataError("expected a JSON object", where)
        if isinstance(record.get("prompt"), str):
            prompt = record["prompt"]
        elif isinstance(record.get("instruction"), str):
            extra = record.get("input") or ""
            prompt = record["instruction"] + ("\n" + extra if isinstance(extra, str) and extra.strip() else "")
        else:
            raise DataError("expected a string field 'prompt' or 'instruction'", where)
        if not prompt.strip():
            raise DataError("empty prompt", where)
        lang = record.get("lang")
        if lang is None:
            lang = detect_language(prompt).language
            if lang is None:
                raise DataError("cannot tell the prompt's language; add a 'lang' field", where)
        elif not isinstance(lang, str) or not lang.strip():
            raise DataError("field 'lang' must be a language code such as 'zh'", where)
        out.append((prompt, lang))
    if not out:
        raise DataError("no prompts", str(path))
    return out


def default_prompts(codes) -> list[tuple[str, str]]:
    """``(prompt, language)`` pairs: the default prompts of each language of the table, in the given order."""
    out = []
    for code in codes:
        language = get_language(code)
        if not language.prompts:
            raise ChatflowError(f"chatflow_plugin/languages.py has no default prompts for {language.name} "
                                f"({language.code}); give --prompts FILE")
        out += [(prompt, language.code) for prompt in language.prompts]
    if not out:
        raise ChatflowError("give --prompts FILE or --languages CODES")
    return out


def generate_responses(model_dir: str | os.PathLike, prompts: list[str], *, max_new_tokens: int = 128,
                       batch_size: int = 8, template: str = "chatflow", device: str = "auto",
                       progress: bool = True) -> list[str]:
    """Greedy responses of a HuggingFace causal LM directory to prompts (left-padded batches).

    ``template="chatflow"`` wraps each prompt in the instruction format the model was tuned on
    (:mod:`chatflow_plugin.data.formats`); ``raw`` feeds it as is. A response ends at EOS or where the
    model starts a new ``### Instruction:`` block.
    """
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    from ..tokenizer import load_tokenizer
    from ..data.formats import INSTRUCTION_HEADER, RESPONSE_HEADER

    if template not in ("chatflow", "raw"):
        raise ChatflowError(f"template must be 'chatflow' or 'raw', got {template!r}")
    encoder = load_tokenizer(model_dir)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    # the checkpoint's own dtype on GPU (bf16 for LLaMA-2), float32 on CPU
    dtype = "auto" if str(device).startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    texts = [INSTRUCTION_HEADER + p + RESPONSE_HEADER if template == "chatflow" else p for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))   # similar lengths share a batch
    responses: list[str] = [""] * len(texts)
    pad, eos = encoder.padding_id, encoder.require_eos()
    head = [encoder.bos_id] if encoder.bos_id is not None else []
    with torch.inference_mode(), tqdm(total=len(texts), desc="generating", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids = [head + encoder.encode(texts[i]) for i in rows]
            width = max(map(len, ids))
            input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
            attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
            out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=pad)
            for i, row in zip(rows, out[:, width:].tolist()):
                if eos in row:
                    row = row[:row.index(eos)]
                text = encoder.decode(row)
                responses[i] = text.split(INSTRUCTION_HEADER)[0].strip()
            bar.update(len(rows))
    return responses


def evaluate_fidelity(model_dir: str | os.PathLike, prompts_path: str | os.PathLike | None, *,
                      limit: int | None = None, languages=(), **generate_kwargs) -> dict:
    """Generate responses to a prompt set (a file, else the default prompts of ``languages``) and score their
    language fidelity (for ``chatflow eval``).

    The returned report (see :func:`language_fidelity`) also carries ``samples``: the first
    prompts with their responses and detected languages, for reading.
    """
    items = (load_prompts(prompts_path) if prompts_path else default_prompts(languages))[:limit]
    responses = generate_responses(model_dir, [p for p, _ in items], **generate_kwargs)
    report = language_fidelity([lang for _, lang in items], responses)
    report["model"] = str(model_dir)
    report["prompts"] = str(prompts_path) if prompts_path else "default prompts: " + ", ".join(languages)
    report["samples"] = [{"prompt": p, "lang": lang, "response": r,
                          "detected": detect_language(r).language or detect_language(r).script}
                         for (p, lang), r in list(zip(items, responses))[:10]]
    return report


@dataclass
class FidelityOptions:
    model_path: str = option(aliases=["--model"], help="HuggingFace causal LM directory (config.json, weights, tokenizer.model)")
    prompts: str = option("", help="JSONL of {prompt, lang} (or Alpaca instruction/input) records, or a "
                              "chatflow clo-data directory")
    languages: str = option("", help="without --prompts: ask the default prompts of these languages of "
                                     "chatflow_plugin/languages.py, comma-separated (e.g. ja,en)")
    max_new_tokens: int = option(128, help="tokens generated per response")
    batch_size: int = option(8, help="prompts per generation batch")
    limit: Optional[int] = option(None, help="use only the first N prompts")
    template: str = option("chatflow", choices=["chatflow", "raw"], help="chatflow: wrap prompts in '### Instruction:' format; raw: as is")
    device: str = option("auto", help="torch device (auto = cuda if available)")
    output: Optional[str] = option(None, help="also write the JSON report here")


def fidelity(options: FidelityOptions) -> dict:
    """Language fidelity: generate an answer to each prompt greedily and report the share written in the
    prompt's language, overall and per language."""
    if options.prompts and options.languages:
        raise ChatflowError("give --prompts FILE or --languages CODES, not both")
    codes = [c.strip() for c in options.languages.split(",") if c.strip()]
    report = evaluate_fidelity(options.model_path, options.prompts or None, languages=codes, limit=options.limit,
                               max_new_tokens=options.max_new_tokens, batch_size=options.batch_size,
                               template=options.template, device=options.device)
    if options.output:
        from ..files import atomic_file

        with atomic_file(options.output, encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, ensure_ascii=False)
    langs = ", ".join(f"{k} {v['fidelity']:.3f} ({v['matched']}/{v['n']})" for k, v in sorted(report["per_language"].items()))
    print(f"language fidelity {report['fidelity']:.3f} ({report['matched']}/{report['n']}; "
          f"undetermined {report['undetermined']}); {langs}")
    return report
