"""Vocabulary expansion of a byte-level BPE tokenizer (LLaMA-3 / Qwen2 style): ``merges`` vs ``added_tokens``,
side by side with the original and with LLaMA-2-style sentencepiece + ChatFlow's expansion, on the same text.

Tokenizers, trained here on the same documents (English web and Wikipedia text plus a small share of Chinese,
as an English-first model sees): a byte-level BPE built like LLaMA-3's (its split regex, then bytes) and a
sentencepiece BPE with byte fallback built like LLaMA-2's, the same vocabulary size. The new pieces are the
Chinese characters (and CJK punctuation) of the mining documents, most frequent first, that the tokenizer does
not have as one token (``chatflow expand-vocab --language zh``); each tokenizer is expanded with its own.
Measured on held-out Chinese paragraphs (never mined) and held-out English text:

* tokens per character (lower: the same text in fewer tokens);
* produced: the share of the held-out occurrences of the added pieces that come out as exactly that one new
  token (a token that exists but is not produced is useless);
* split: the share of held-out Han characters encoded as bytes (a token holding part of a character: byte
  fallback, byte-level pieces), which is what expansion is meant to remove;
* English unchanged: the held-out English documents without a new piece (curly quotes and dashes are CJK
  punctuation too) encoded with exactly the old ids (it must be 100%);
* encoding speed of the held-out Chinese text (one thread, characters per second).

    python benchmarks/bench_vocab_bpe.py [--data_dir ../shared/data] [--vocab 16000] [--zh_share 0.05]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatflow_plugin.checkpoints.vocab import expand_tokenizer, mine_pieces  # noqa: E402
from chatflow_plugin.languages import get_language, in_scripts  # noqa: E402
from chatflow_plugin.tokenizer import load_tokenizer  # noqa: E402

from bench_preprocess import train_byte_bpe  # noqa: E402  (python benchmarks/...: its folder is on sys.path)

def train_sentencepiece(texts: list[str], vocab: int, out: Path) -> Path:
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(out), vocab_size=vocab, model_type="bpe", byte_fallback=True,
        character_coverage=0.9995, split_digits=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        num_threads=2, minloglevel=2, max_sentence_length=1 << 16, input_sentence_size=400000,
        shuffle_input_sentence=True)
    return out.with_suffix(".model")


def measure(tok, base, zh: list[str], en: list[str], added: list[str]) -> dict:
    han = in_scripts(["cjk"])
    start = time.perf_counter()
    encoded = tok.encode_offsets_batch(zh)
    seconds = time.perf_counter() - start
    chars = sum(map(len, zh))
    added_set = set(added)
    partial: dict[int, bool] = {}       # token id -> it holds part of a character (a byte token)

    def is_partial(index: int) -> bool:
        if index not in partial:
            text = tok.decode([index])
            partial[index] = text == "" or "\ufffd" in text
        return partial[index]

    produced = occurrences = split = han_total = 0
    for text, (ids, offsets) in zip(zh, encoded):
        spans = {(int(a), int(b)) for (a, b), i in zip(offsets, ids) if i >= base.vocab_size}
        broken = set()
        for (a, b), i in zip(offsets, ids):
            if is_partial(int(i)):
                broken.update(range(int(a), max(int(b), int(a) + 1)))
        for k, ch in enumerate(text):
            if ch in added_set:
                occurrences += 1
                produced += (k, k + 1) in spans
            if han(ch):
                han_total += 1
                split += k in broken
    plain = [t for t in en if not added_set.intersection(t)]      # English documents without new pieces
    en_same = sum(tok.encode(t) == base.encode(t) for t in plain)
    return {"tokens_per_char_zh": sum(len(ids) for ids, _ in encoded) / chars,
            "tokens_per_char_en": sum(len(tok.encode(t)) for t in en) / sum(map(len, en)),
            "produced": produced / max(occurrences, 1), "split": split / max(han_total, 1),
            "en_unchanged": en_same / max(len(plain), 1), "en_plain": len(plain), "chars_per_s": chars / seconds, "vocab": tok.vocab_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--vocab", type=int, default=16000, help="vocabulary of both original tokenizers")
    parser.add_argument("--zh_share", type=float, default=0.05,
                        help="Chinese documents in the tokenizers' training text, as a share of the English ones")
    parser.add_argument("--max_new_pieces", type=int, default=4000)
    parser.add_argument("--min_count", type=int, default=2)
    args = parser.parse_args()
    data = Path(args.data_dir)
    english = texts_of(data / "en_corpus" / "c4_demo.jsonl") + [
        p for t in texts_of(data / "en_corpus" / "wiki_demo.jsonl") for p in t.split("\n") if p.strip()]
    random.Random(0).shuffle(english)
    en_train, en_heldout = english[:-100], english[-100:]
    zh_mine = texts_of(data / "zh_corpus" / "cluecorpussmall_sampled.jsonl")
    zh_heldout = texts_of(data / "zh_corpus" / "cmrc2018_wiki_paragraphs.jsonl")[:400]
    train = en_train + zh_mine[: int(args.zh_share * len(en_train))]
    work = Path(tempfile.mkdtemp(prefix="bench_vocab_bpe_"))
    try:
        (work / "mine.jsonl").write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in zh_mine),
                                         encoding="utf-8")
        scripts = get_language("zh").expansion_scripts
        print(f"training text: {len(en_train)} English + {len(train) - len(en_train)} Chinese documents; "
              f"mining: {len(zh_mine)} Chinese documents; held out: {len(zh_heldout)} Chinese paragraphs "
              f"({sum(map(len, zh_heldout)):,} characters), {len(en_heldout)} English documents")
        rows = []
        for name, base_path in (("LLaMA-2-style sentencepiece BPE", train_sentencepiece(train, args.vocab, work / "spm")),
                                ("LLaMA-3-style byte-level BPE", train_byte_bpe(train, args.vocab, work / "bbpe"))):
            base = load_tokenizer(base_path)
            mined = [ch for ch, _ in mine_pieces([work / "mine.jsonl"], base, scripts, args.min_count,
                                                 args.max_new_pieces)]
            rows.append((name, "original", measure(base, base, zh_heldout, en_heldout, []), 0, 0))
            strategies = [None] if base.kind == "sentencepiece" else ["merges", "added_tokens"]
            for strategy in strategies:
                out = work / f"{base.kind}_{strategy}" / ("x.model" if strategy is None else "")
                start = time.perf_counter()
                result = expand_tokenizer(base, mined, out, strategy=strategy)
                built = time.perf_counter() - start
                expanded = load_tokenizer(out)
                label = "ChatFlow expansion" if strategy is None else f"+ {strategy}"
                rows.append((name, label, measure(expanded, base, zh_heldout, en_heldout, result.added),
                             len(result.added), built))
                rows[-1][2]["candidates"] = len(mined)
        print(f"\n{'tokenizer':<33} {'expansion':<19} {'vocab':>6} {'added':>11} {'tok/char zh':>11} "
              f"{'tok/char en':>11} {'produced':>8} {'split':>6} {'en same':>7} {'chars/s':>10} {'build s':>7}")
        for name, label, m, added, built in rows:
            added_text = f"{added}/{m['candidates']}" if "candidates" in m else "-"
            print(f"{name:<33} {label:<19} {m['vocab']:>6} {added_text:>11} {m['tokens_per_char_zh']:>11.3f} "
                  f"{m['tokens_per_char_en']:>11.3f} {m['produced'] if added else float('nan'):>8.1%} "
                  f"{m['split']:>6.1%} {m['en_unchanged']:>7.0%} {m['chars_per_s']:>10,.0f} {built:>7.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
