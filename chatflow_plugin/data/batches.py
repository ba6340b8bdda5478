"""Host-neutral batches in the sampler's order: what every host adapter feeds its trainer.

``MixtureDataset(shards)[t]`` is global sample t: a window of ``seq_length + 1`` tokens, the mask of
target positions that carry loss, and its group. Inputs are ``tokens[:-1]``, targets ``tokens[1:]``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import ChatflowError
from .mixture import MixtureSpec, parse_mixture
from .sampler import MixtureSampler
from .shards import ShardSet


class MixtureDataset:
    """Random access to the dynamic mixture over a shard directory.

    ``spec`` may replace the mixture recorded at preprocessing time (e.g. other alpha/beta/T_grow or
    seed) as long as it has the same groups and sources. ``response_only`` drops the loss on
    instruction prompts (the paper trains on every token: the default).
    """

    def __init__(self, shards: ShardSet, spec: MixtureSpec | None = None, seed: int | None = None,
                 response_only: bool = False):
        self.shards = shards
        recorded = parse_mixture(shards.manifest["mixture"], where=f"{shards.path}/manifest.json")
        if spec is None:
            spec = recorded
        else:
            want = [(g.name, [s.name for s in g.sources]) for g in recorded.groups]
            got = [(g.name, [s.name for s in g.sources]) for g in spec.groups]
            if want != got:
                raise ChatflowError(f"mixture {spec.name!r} does not match the dataset {shards.path}: "
                                    f"groups/sources {got} vs {want}")
            if spec.seq_length != shards.seq_length:
                spec = replace(spec, seq_length=shards.seq_length)
        if seed is not None:
            spec = replace(spec, seed=int(seed))
        self.spec = spec
        self.response_only = response_only
        self.group_names = spec.group_names
        self.source_names = [s.name for _, s in spec.sources]
        group_index = {g: i for i, g in enumerate(self.group_names)}
        shard_list = [shards.by_name[name] for name in self.source_names]
        shares = []
        for (group, source), shard in zip(spec.sources, shard_list):
            shares.append(source.share if source.share is not None else float(shard.info["tokens"]))
        self.source_shards = shard_list
        self.sampler = MixtureSampler(
            spec.schedule(), [group_index[g.name] for g, _ in spec.sources], [s.windows for s in shard_list],
            shares, seed=spec.seed)
        self.seq_length = shards.seq_length
        self.vocab_size = int(shards.tokenizer["vocab_size"])

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Samples ``indices`` as arrays: tokens (B, L+1) int64, loss_mask (B, L) bool (per target
        position), group/source/epoch (B,)."""
        draw = self.sampler.draw(indices)
        n = len(draw.t)
        tokens = np.empty((n, self.seq_length + 1), dtype=np.int64)
        loss = np.empty((n, self.seq_length), dtype=bool)
        for i, (s, row) in enumerate(zip(draw.source.tolist(), draw.row.tolist())):
            shard = self.source_shards[s]
            window, carries = shard.window(row)
            if self.response_only and shard.mask is not None:
                carries = carries & ~shard.prompt_mask(row)
            tokens[i] = window
            loss[i] = carries[1:]
        if n and int(tokens.max()) >= self.vocab_size:   # a dataset loaded unverified: never index past the vocabulary
            i = int(np.argmax(tokens.max(axis=1) >= self.vocab_size))
            shard = self.source_shards[int(draw.source[i])]
            raise ChatflowError(f"{shard.tokens.filename}: window {int(draw.row[i])} holds token id "
                                f"{int(tokens[i].max())}, outside the vocabulary of {self.vocab_size} pieces; the "
                                f"dataset is damaged, preprocess again")
        return {"tokens": tokens, "loss_mask": loss, "group": draw.group, "source": draw.source,
                "epoch": draw.epoch, "t": draw.t}

    def __getitem__(self, t: int) -> dict[str, np.ndarray]:
        out = self.batch([t])
        return {k: v[0] for k, v in out.items()}
