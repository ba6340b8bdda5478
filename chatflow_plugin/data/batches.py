"""Host-neutral batches in the sampler's order: what every host adapter feeds its trainer.

``MixtureDataset(shards)[t]`` is global sample t: a window of ``seq_length + 1`` tokens, the mask of
target positions that carry loss, and its group. Inputs are ``tokens[:-1]``, targets ``tokens[1:]``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import ChatflowError
from .mixture import MixtureSpec, parse_mixture
from .revisions import MixtureHistory, MixtureRevision
from .sampler import MixtureSampler, Revision
from .shards import ShardSet


class MixtureDataset:
    """Random access to the dynamic mixture over a shard directory.

    ``spec`` may replace the mixture recorded at preprocessing time (e.g. other alpha/beta/T_grow or
    seed, another shape, other groups): it may use any of the dataset's sources, each of the kind it was
    preprocessed as. It may also be a :class:`~.revisions.MixtureHistory`: a run whose mixture changed at
    given samples (:meth:`revise` adds a change while training). ``response_only`` drops the loss on
    instruction prompts (the paper trains on every token: the default).

    The run's groups (``group_names``) and sources (``source_names``) are those of every revision, in the
    order they first appear; ``Draw.group`` and ``Draw.source`` index them.
    """

    def __init__(self, shards: ShardSet, spec: MixtureSpec | MixtureHistory | None = None, seed: int | None = None,
                 response_only: bool = False):
        self.shards = shards
        self.seq_length = shards.seq_length
        self.vocab_size = int(shards.tokenizer["vocab_size"])
        self.response_only = response_only
        if spec is None:
            spec = parse_mixture(shards.manifest["mixture"], where=f"{shards.path}/manifest.json")
        history = spec if isinstance(spec, MixtureHistory) else MixtureHistory.start(spec)
        self.seed = seed                # overrides every mixture's
        self.history = history.map_specs(self.fitted)
        self.drawn_until = 0            # one past the largest sample index drawn so far
        self._build()

    def fitted(self, spec: MixtureSpec) -> MixtureSpec:
        """``spec`` as this dataset reads it: its sources checked against the shards, the shards' seq_length
        and the seed given to the dataset, if any."""
        unknown = [s.name for _, s in spec.sources if s.name not in self.shards.by_name]
        if unknown:
            raise ChatflowError(f"mixture {spec.name!r} names sources the dataset {self.shards.path} does not have: "
                                f"{unknown}; it has {sorted(self.shards.by_name)}")
        for _, source in spec.sources:
            kind = self.shards.by_name[source.name].kind
            if kind != source.kind:
                raise ChatflowError(f"mixture {spec.name!r}: source {source.name!r} is {source.kind!r} but the dataset "
                                    f"{self.shards.path} holds it as {kind!r}")
        if spec.seq_length != self.seq_length:
            spec = replace(spec, seq_length=self.seq_length)
        return spec if self.seed is None else replace(spec, seed=int(self.seed))

    @property
    def spec(self) -> MixtureSpec:
        """The mixture in force now (the last revision's)."""
        return self.history.current

    def _build(self) -> None:
        groups: dict[str, int] = {}
        sources: dict[str, int] = {}
        for revision in self.history.revisions:
            for group, source in revision.spec.sources:
                groups.setdefault(group.name, len(groups))
                sources.setdefault(source.name, len(sources))
        self.group_names = list(groups)
        self.source_names = list(sources)
        self.source_shards = [self.shards.by_name[name] for name in self.source_names]
        revisions = []
        for revision in self.history.revisions:
            spec = revision.spec
            local = {g.name: k for k, g in enumerate(spec.groups)}
            revisions.append(Revision(
                revision.sample, spec.schedule(), [groups[g.name] for g in spec.groups],
                [sources[s.name] for _, s in spec.sources], [local[g.name] for g, _ in spec.sources],
                [s.share if s.share is not None else float(self.shards.by_name[s.name].info["tokens"])
                 for _, s in spec.sources], catch_up=revision.catch_up))
        try:
            self.sampler = MixtureSampler.revised(revisions, len(self.group_names),
                                                  [s.windows for s in self.source_shards], seed=self.spec.seed)
        except ValueError as exc:
            raise ChatflowError(f"mixture history over {self.shards.path}: {exc}") from None

    def group_epochs(self, n: int) -> np.ndarray:
        """How many times each run group's data has been read after the first n samples: the samples its sources
        (in the mixture in force) gave, over their windows."""
        counts = self.sampler.source_counts(n)
        index = {name: i for i, name in enumerate(self.source_names)}
        groups = {name: k for k, name in enumerate(self.group_names)}
        read, windows = np.zeros(len(groups)), np.zeros(len(groups))
        for group, source in self.spec.sources:
            s, k = index[source.name], groups[group.name]
            read[k] += counts[s]
            windows[k] += self.source_shards[s].windows
        return read / np.maximum(windows, 1)

    def revise(self, revision: MixtureRevision) -> None:
        """Apply a change of mixture from ``revision.sample`` on; samples drawn already are never re-drawn."""
        if revision.sample < self.drawn_until:
            raise ChatflowError(f"cannot revise the mixture from sample {revision.sample}: samples up to "
                                f"{self.drawn_until - 1} have been drawn already")
        self.history = self.history.revised(replace(revision, spec=self.fitted(revision.spec)))
        self._build()

    def batch(self, indices) -> dict[str, np.ndarray]:
        """Samples ``indices`` as arrays: tokens (B, L+1) int64, loss_mask (B, L) bool (per target
        position), group/source/epoch (B,)."""
        draw = self.sampler.draw(indices)
        n = len(draw.t)
        if n:
            self.drawn_until = max(self.drawn_until, int(draw.t.max()) + 1)
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
