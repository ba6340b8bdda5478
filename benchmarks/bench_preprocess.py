"""Preprocessing throughput with a sentencepiece model and with a HuggingFace fast tokenizer, side by side in one run:

1. raw sentencepiece: ``encode`` of the same documents on one thread (the ceiling for one worker);
2. ``chatflow preprocess`` with the sentencepiece model, --workers 2 (JSONL parse, BOS/EOS, packing, writing);
3. raw ``tokenizers``: ``encode_batch_fast`` of the same documents with a byte-level BPE tokenizer.json (the
   HF fast pipeline LLaMA-3 and Qwen2 ship), on one thread and on all of the library's threads (its own batch
   encoding: the ceiling for the HF kind);
4. ``chatflow preprocess --tokenizer DIR`` with that tokenizer.json, --workers 2;
5. TencentPretrain's own ``preprocess.py --data_processor llm_pretrain`` with --processes_num 2, when
   TENCENTPRETRAIN_HOME points at a host work tree. Its ``--full_sentences`` path crashes on short
   documents, so the host runs its default path (one instance per document, padded).

Corpus: the English and Chinese corpus samples under --data_dir (default ../shared/data, ~5.6 MB, when it is there;
else the bundled corpora/, ~1.9 MB).
Tokenizers: a 3,000-piece byte-fallback BPE sentencepiece model and a 3,000-token byte-level BPE, both trained
here on that text.

Every row also gives tokens/s per worker (per process or thread the pipeline ran on) and tokens per CPU second
(all its processes and threads: what a worker achieves when it has a core to itself, steady on a shared machine),
and the run ends with ``chatflow preprocess``'s throughput per worker, and per CPU second, as a share of the
tokenizer library's own batch encoding on one thread (sentencepiece ``encode`` of the document list;
``tokenizers`` ``encode_batch_fast``): the ceiling of one worker, measured in the same run on the same documents.

    python benchmarks/bench_preprocess.py [--data_dir ../shared/data] [--repeat 3] [--workers 2] [--scale 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sentencepiece as spm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatflow_plugin.data.mixture import parse_mixture  # noqa: E402
from chatflow_plugin.data.preprocess import preprocess  # noqa: E402

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def train_byte_bpe(texts: list[str], vocab: int, out: Path) -> Path:
    """A LLaMA-3-style byte-level BPE tokenizer directory (tokenizer.json + tokenizer_config.json)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.add_special_tokens(["<|begin_of_text|>", "<|end_of_text|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", bos)])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>",
                                                           "eos_token": "<|end_of_text|>"}), encoding="utf-8")
    return out


def corpus_files(data_dir: Path) -> list[Path]:
    files = sorted((data_dir / "en_corpus").glob("*.jsonl")) + sorted((data_dir / "zh_corpus").glob("*.jsonl"))
    if not files:
        sys.exit(f"no en_corpus/zh_corpus JSONL files under {data_dir}")
    return files


CPU_SECONDS: list[float] = []   # CPU seconds (this process and its finished children) of each best_of's best run


def _cpu() -> float:
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def best_of(repeat: int, fn):
    """(best wall seconds, result) of ``repeat`` calls; that run's CPU seconds are appended to CPU_SECONDS."""
    runs = []
    result = None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), _cpu()
        result = fn()
        runs.append((time.perf_counter() - start, _cpu() - cpu))
    best = min(runs)
    CPU_SECONDS.append(best[1])
    return best[0], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = ROOT.parent / "shared" / "data"
    parser.add_argument("--data_dir", default=str(shared if (shared / "en_corpus").is_dir() else ROOT / "corpora"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seq_length", type=int, default=1024)
    parser.add_argument("--scale", type=int, default=1, help="the corpus repeated this many times (fixed costs such "
                                                             "as starting the workers weigh less in a larger run)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    try:
        files = corpus_files(Path(args.data_dir))
        corpus = work / "corpus.jsonl"
        with open(corpus, "w", encoding="utf-8") as out:
            for _ in range(args.scale):
                for f in files:
                    text = f.read_text(encoding="utf-8")
                    out.write(text if text.endswith("\n") else text + "\n")
        texts = [json.loads(line)["text"] for line in corpus.read_text(encoding="utf-8").splitlines()]
        plain = work / "train.txt"
        plain.write_text("\n".join(texts), encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(plain), model_prefix=str(work / "bpe3k"), vocab_size=3000,
                                       model_type="bpe", byte_fallback=True, character_coverage=0.98,
                                       bos_id=1, eos_id=2, unk_id=0, pad_id=-1, num_threads=2, minloglevel=2,
                                       max_sentence_length=1 << 20, input_sentence_size=200000,
                                       shuffle_input_sentence=True)
        model = work / "bpe3k.model"
        sp = spm.SentencePieceProcessor(model_file=str(model))
        hf_dir = train_byte_bpe(texts, 3000, work / "bbpe3k")
        size_mb = corpus.stat().st_size / 1e6
        print(f"corpus: {len(texts)} documents, {size_mb:.1f} MB; tokenizers: 3k sentencepiece BPE (byte fallback), "
              f"3k byte-level BPE tokenizer.json; {os.cpu_count()} CPU cores")

        raw_s, ids = best_of(args.repeat, lambda: sp.encode(texts, num_threads=1))
        n_tokens = sum(len(x) + 2 for x in ids)
        rows = [("sentencepiece encode, 1 thread", raw_s, n_tokens, 1)]

        spec = parse_mixture({"name": "bench", "T_grow": 1, "seq_length": args.seq_length, "groups": [
            {"name": "all", "alpha": 1, "beta": 1,
             "sources": [{"name": "corpus", "kind": "corpus", "paths": [str(corpus)]}]}]})
        out_dir = work / "ours"
        ours_s, manifest = best_of(args.repeat, lambda: preprocess(spec, model, out_dir, workers=args.workers,
                                                                   force=True))
        rows.append((f"chatflow preprocess, sentencepiece, {args.workers} workers", ours_s,
                     manifest["sources"][0]["tokens"], args.workers))

        from tokenizers import Tokenizer
        backend = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
        hf_tokens = 0
        for threads in ("false", "true"):     # TOKENIZERS_PARALLELISM: one thread, then the library's own pool
            os.environ["TOKENIZERS_PARALLELISM"] = threads
            seconds, encoded = best_of(args.repeat, lambda: backend.encode_batch_fast(texts, add_special_tokens=False))
            hf_tokens = sum(len(e.ids) + 2 for e in encoded)
            label = "1 thread" if threads == "false" else f"all threads ({os.cpu_count()} cores)"
            rows.append((f"tokenizers encode_batch_fast, {label}", seconds, hf_tokens,
                         1 if threads == "false" else os.cpu_count() or 1))
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
        hf_s, manifest = best_of(args.repeat, lambda: preprocess(spec, hf_dir, work / "ours_hf", workers=args.workers,
                                                                 force=True))
        rows.append((f"chatflow preprocess, tokenizer.json, {args.workers} workers", hf_s,
                     manifest["sources"][0]["tokens"], args.workers))

        host = os.environ.get("TENCENTPRETRAIN_HOME")
        if host and (Path(host) / "preprocess.py").is_file():
            host_cwd = work / "host_cwd"
            (host_cwd / "models").mkdir(parents=True)
            shutil.copy(Path(host) / "models" / "llama_special_tokens_map.json",
                        host_cwd / "models" / "special_tokens_map.json")
            cmd = [sys.executable, str(Path(host) / "preprocess.py"), "--corpus_path", str(corpus),
                   "--spm_model_path", str(model), "--dataset_path", str(work / "host.pt"),
                   "--processes_num", str(args.workers), "--data_processor", "llm_pretrain",
                   "--seq_length", str(args.seq_length), "--json_format_corpus"]
            env = dict(os.environ, PYTHONPATH=host)

            def run_host():
                subprocess.run(cmd, cwd=host_cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            host_s, _ = best_of(args.repeat, run_host)
            rows.append((f"TencentPretrain llm_pretrain, {args.workers} processes", host_s, n_tokens, args.workers))
        else:
            print("(TencentPretrain not found: set TENCENTPRETRAIN_HOME to compare with the host)")

        print(f"\n{'pipeline':<56} {'seconds':>8} {'tokens':>10} {'tokens/s':>12} {'per worker':>11} "
              f"{'per CPU s':>10} {'MB/s':>6}")
        per_cpu = {}
        for (name, seconds, tokens, workers), cpu in zip(rows, CPU_SECONDS):
            per_cpu[name] = tokens / cpu
            print(f"{name:<56} {seconds:>8.2f} {tokens:>10} {tokens / seconds:>12,.0f} "
                  f"{tokens / seconds / workers:>11,.0f} {per_cpu[name]:>10,.0f} {size_mb / seconds:>6.2f}")
        per_worker = {name: tokens / seconds / workers for name, seconds, tokens, workers in rows}
        names = [row[0] for row in rows]
        print(f"\nper worker, chatflow preprocess / the library's own batch encoding on one thread: sentencepiece "
              f"{per_worker[names[1]] / per_worker[names[0]]:.2f}x, tokenizer.json "
              f"{per_worker[names[4]] / per_worker[names[2]]:.2f}x")
        print(f"per CPU second, the same: sentencepiece {per_cpu[names[1]] / per_cpu[names[0]]:.2f}x, tokenizer.json "
              f"{per_cpu[names[4]] / per_cpu[names[2]]:.2f}x")
        print(f"chatflow tokenizer.json ({args.workers} workers) / tokenizers' own batch encoding on all threads: "
              f"{per_worker[names[4]] * args.workers / (per_worker[names[3]] * (os.cpu_count() or 1)):.2f}x")
        if len(rows) > 5:
            print(f"chatflow sentencepiece / TencentPretrain, per worker: {per_worker[names[1]] / per_worker[names[5]]:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
