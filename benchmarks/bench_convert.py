"""Convert a ~1B-parameter random LLaMA-shaped checkpoint both ways: wall time and peak RSS vs shard size.

    python benchmarks/bench_convert.py                     # TinyLlama-1.1B shape, bf16, in /tmp
    python benchmarks/bench_convert.py --layers 4 --keep   # smaller; keep the files

Every conversion runs in a fresh subprocess that reports its own peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). The baseline does what the host's conversion scripts do:
load the whole checkpoint into memory, build the converted state dict, ``torch.save`` it. Target: peak
memory under 1.5x the largest input shard. Files go to a temporary directory (default /tmp), never into
the project, and are deleted afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each child imports everything any conversion imports before the clock starts, so that "net" (peak minus
# the peak after imports) is the memory the conversion itself needed.
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, {root!r})
    import torch, safetensors.torch, tokenizers, transformers
    from transformers import AutoTokenizer, LlamaConfig
    import chatflow_plugin.checkpoints.convert, chatflow_plugin.checkpoints.tensor_io
    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    {body}
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({{"seconds": elapsed, "peak_rss": peak, "net_rss": peak - after_imports}}))
""")

MAKE = """
import torch
from pathlib import Path
from chatflow_plugin.checkpoints import tensor_io as cio
from chatflow_plugin.checkpoints import llama_layout as L
from chatflow_plugin.checkpoints.convert import parse_size
cfg = json.loads(Path({cfg!r}).read_text())
shape = L.hf_shape(cfg)
gen = torch.Generator().manual_seed(0)
def rand(rows, cols=None):
    dims = (rows,) if cols is None else (rows, cols)
    return lambda: (torch.randn(dims, generator=gen) * 0.02).to(torch.bfloat16)
H, F, V, d = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], shape.head_dim
dims = {{"self_attn.q_proj": (shape.heads * d, H), "self_attn.k_proj": (shape.kv_heads * d, H),
        "self_attn.v_proj": (shape.kv_heads * d, H), "self_attn.o_proj": (H, shape.heads * d),
        "mlp.gate_proj": (F, H), "mlp.up_proj": (F, H), "mlp.down_proj": (H, F)}}
items = [cio.OutTensor(L.HF_EMBEDDING, (V, H), torch.bfloat16, rand(V, H))]
for i in range(shape.layers):
    for name, (r, c) in dims.items():
        items.append(cio.OutTensor(f"model.layers.{{i}}.{{name}}.weight", (r, c), torch.bfloat16, rand(r, c)))
    for name in ("input_layernorm", "post_attention_layernorm"):
        items.append(cio.OutTensor(f"model.layers.{{i}}.{{name}}.weight", (H,), torch.bfloat16, lambda: torch.ones(H)))
items += [cio.OutTensor(L.HF_FINAL_NORM, (H,), torch.bfloat16, lambda: torch.ones(H)),
          cio.OutTensor(L.HF_OUTPUT, (V, H), torch.bfloat16, rand(V, H))]
cio.write_safetensors(Path({out!r}), items, parse_size({shard!r}))
"""

OURS_HF2TP = """
from chatflow_plugin.checkpoints.convert import convert_hf_to_tp
convert_hf_to_tp({src!r}, {dst!r})
"""

OURS_TP2HF = """
from chatflow_plugin.checkpoints.convert import convert_tp_to_hf
convert_tp_to_hf({src!r}, {dst!r}, max_shard_size={shard!r})
"""

# What the host's scripts/convert_llama_from_huggingface_to_tencentpretrain.py does (all in memory), with
# the same general key map and permutation so that only the memory strategy differs.
BASELINE_HF2TP = """
import torch
from pathlib import Path
from safetensors.torch import load_file
from chatflow_plugin.checkpoints import llama_layout as L
cfg = json.loads((Path({src!r}) / "config.json").read_text())
shape = L.hf_shape(cfg)
state = {{}}
for f in sorted(Path({src!r}).glob("*.safetensors")):
    state.update(load_file(f))
out = {{}}
for m in L.key_mappings(shape):
    w = state[m.hf]
    if m.rotary:
        w = L.half_to_interleaved(w, shape.heads if m.rotary == "q" else shape.kv_heads, shape.head_dim)
    out[m.tp] = w.contiguous()
Path({dst!r}).mkdir()
torch.save(out, Path({dst!r}) / "model.bin")
"""


def run(body: str) -> dict:
    code = CHILD.format(root=str(ROOT), body=body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_tokenizer(work: Path, vocab: int, dst: Path) -> None:
    """A byte-fallback BPE model padded with reserved pieces to ``vocab`` pieces (the checkpoint's rows)."""
    import random
    import sentencepiece as spm
    from chatflow_plugin.checkpoints.vocab import expand_sentencepiece
    rng = random.Random(0)
    words = "the model learns language from data and text while people read books about science".split()
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 400)]
    lines = [" ".join(rng.choice(words) for _ in range(12)) if i % 2 else "".join(rng.choice(han) for _ in range(20))
             for i in range(2000)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(work / "spm"), vocab_size=1000,
                                   model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1,
                                   eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    expand_sentencepiece(work / "spm.model", [], dst, pad_to_multiple=vocab)


def largest_file(path: Path, suffixes=(".safetensors", ".bin")) -> int:
    return max(p.stat().st_size for p in path.rglob("*") if p.suffix in suffixes)


def total_size(path: Path, suffixes=(".safetensors", ".bin")) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.suffix in suffixes)


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=2048, help="hidden size (default 2048, TinyLlama-1.1B)")
    parser.add_argument("--ffn", type=int, default=5632, help="feed-forward size (default 5632)")
    parser.add_argument("--layers", type=int, default=22, help="layers (default 22)")
    parser.add_argument("--heads", type=int, default=32, help="attention heads (default 32)")
    parser.add_argument("--kv_heads", type=int, default=4, help="key/value heads (default 4)")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary size (default 32000)")
    parser.add_argument("--shard", default="1GB", help="HF shard size of input and output (default 1GB)")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where the checkpoints go (default /tmp)")
    parser.add_argument("--no_baseline", action="store_true", help="skip the in-memory baseline")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_convert.", dir=args.workdir))
    try:
        hf = work / "hf"
        hf.mkdir()
        from transformers import LlamaConfig
        cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
                          num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.kv_heads, max_position_embeddings=2048, rms_norm_eps=1e-5).to_dict()
        cfg.update(architectures=["LlamaForCausalLM"], dtype="bfloat16")
        (hf / "config.json").write_text(json.dumps(cfg, indent=2))
        made = run(MAKE.format(cfg=str(hf / "config.json"), out=str(hf), shard=args.shard))
        make_tokenizer(work, args.vocab, hf / "tokenizer.model")
        params = total_size(hf) / 2
        print(f"random LLaMA checkpoint: {params / 1e9:.2f}B parameters, bf16, {gb(total_size(hf))} in "
              f"{len(list(hf.glob('*.safetensors')))} shard(s) of at most {gb(largest_file(hf))} "
              f"(written in {made['seconds']:.1f} s)")
        rows = []
        r = run(OURS_HF2TP.format(src=str(hf), dst=str(work / "tp")))
        rows.append(("hf -> tp (chatflow convert)", r, largest_file(hf), largest_file(work / "tp")))
        r = run(OURS_TP2HF.format(src=str(work / "tp"), dst=str(work / "hf2"), shard=args.shard))
        rows.append(("tp -> hf (chatflow convert)", r, largest_file(work / "tp"), largest_file(work / "hf2")))
        if not args.no_baseline:
            r = run(BASELINE_HF2TP.format(src=str(hf), dst=str(work / "tp_base")))
            rows.append(("hf -> tp (baseline: all in memory)", r, largest_file(hf), largest_file(work / "tp_base")))
        print(f"\n{'conversion':<36} {'wall':>7} {'peak RSS':>9} {'net RSS':>9} {'largest in':>11} "
              f"{'largest out':>12} {'RSS/in-shard':>13} {'net/in-shard':>13}")
        for name, r, biggest_in, biggest_out in rows:
            net = r["net_rss"]
            print(f"{name:<36} {r['seconds']:>6.1f}s {gb(r['peak_rss']):>9} {gb(net):>9} {gb(biggest_in):>11} "
                  f"{gb(biggest_out):>12} {r['peak_rss'] / biggest_in:>12.2f}x {net / biggest_in:>12.2f}x")
        print("\nnet RSS = peak RSS minus the peak after importing torch, safetensors, tokenizers and transformers "
              "(about 0.4 GB): what the conversion itself held.\ntarget: peak RSS < 1.5x the largest input shard")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
