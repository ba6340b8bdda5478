"""CLO training step: cached reference log-probs (this plugin) vs a live reference model (the usual
DPO setup without precomputation), side by side in one run.

Both compute the same loss on the same batches (checked: equal to 1e-5). The cached variant holds
one model and does one forward/backward per step; the live one holds a second, frozen copy and runs
an extra forward pass over the four sequences of every pair each step. Reported: seconds per
optimizer step, model parameter memory held, and the one-off cost of filling the cache.

    python benchmarks/bench_clo.py [--hidden 256] [--layers 4] [--micro_batch_size 4] [--max_length 256]
                                   [--train_steps 10]

(``--micro_batch_size``, ``--max_length`` and ``--train_steps`` mean what they mean for ``chatflow clo-train``.)
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chatflow_plugin.clo.objective import clo_loss, select_trainable, sequence_logps  # noqa: E402


def make_batch(pairs: int, seq: int, vocab: int, generator: torch.Generator) -> dict:
    ids = torch.randint(3, vocab, (4 * pairs, seq), generator=generator)
    ids[:, 0] = 1
    response = torch.zeros_like(ids, dtype=torch.bool)
    response[:, seq // 2:] = True   # second half of every sequence is the response
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "response_mask": response}


def split(logp: torch.Tensor):
    per_pair = logp.view(-1, 4)
    return per_pair[:, [0, 2]].reshape(-1), per_pair[:, [1, 3]].reshape(-1)


def step_loss(model, batch, ref_logp):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp, n = sequence_logps(logits, batch["input_ids"], batch["response_mask"])
    pc, pr = split(logp)
    rc, rr = split(ref_logp)
    is_target = torch.tensor([False, True]).repeat(len(pc) // 2)
    return clo_loss(pc, pr, rc, rr, split(n)[0], is_target).loss


def reference_logp(model, batch):
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return sequence_logps(logits, batch["input_ids"], batch["response_mask"])[0]


def param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--micro_batch_size", type=int, default=4, help="pairs per step (4 sequences each)")
    parser.add_argument("--max_length", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--train_steps", type=int, default=10, help="optimizer steps timed")
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=int(2.7 * args.hidden),
                         num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
                         max_position_embeddings=args.max_length, tie_word_embeddings=False)
    start = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(0)
    batches = [make_batch(args.micro_batch_size, args.max_length, args.vocab, gen) for _ in range(args.train_steps)]

    # one-off: fill the cache with the start model (what clo_reference does before training)
    t0 = time.perf_counter()
    cached = [reference_logp(start, b) for b in batches]
    fill_s = time.perf_counter() - t0

    results = {}
    for name in ("cached reference (plugin)", "live reference model (baseline)"):
        policy = copy.deepcopy(start)
        select_trainable(policy, "attention")
        reference = copy.deepcopy(start).eval() if name.startswith("live") else None
        optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
        losses = []
        t0 = time.perf_counter()
        for b, ref in zip(batches, cached):
            ref_logp = reference_logp(reference, b) if reference is not None else ref
            loss = step_loss(policy, b, ref_logp)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        seconds = (time.perf_counter() - t0) / args.train_steps
        held = param_bytes(policy) + (param_bytes(reference) if reference is not None else 0)
        results[name] = (seconds, held, losses)
    (a_s, a_mem, a_loss), (b_s, b_mem, b_loss) = results.values()
    assert all(abs(x - y) < 1e-5 for x, y in zip(a_loss, b_loss)), "the two variants must compute the same loss"

    print(f"model: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}; {args.micro_batch_size} pairs x 4 sequences "
          f"x {args.max_length} tokens per step; {args.train_steps} steps; torch threads {torch.get_num_threads()}")
    print(f"{'variant':<34}{'s/step':>10}{'model memory MB':>18}")
    for name, (seconds, held, _) in results.items():
        print(f"{name:<34}{seconds:>10.3f}{held / 2**20:>18.1f}")
    print(f"speed-up {b_s / a_s:.2f}x, model memory {a_mem / b_mem:.2f}x of the baseline; "
          f"one-off cache fill {fill_s:.2f} s for {args.train_steps} batches ({fill_s / args.train_steps:.3f} s/batch)")


if __name__ == "__main__":
    main()
