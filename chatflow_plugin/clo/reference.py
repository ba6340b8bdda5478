"""Reference-model log-probabilities for CLO, computed once and cached next to the triples.

The DPO term needs log ref(response | prompt) of the frozen start model for the four sequences of
every pair. Computing them once before training means training holds one model, not two. The cache
is ``<clo-data dir>/reference/<key>.npz`` where the key hashes

- the model's fingerprint: sha256 over its config, tokenizer and weight files (memoised in
  ``reference/fingerprints.json`` by path, size and mtime, so a 13 GB checkpoint is hashed once);
- the ``triples.jsonl`` checksum;
- the encoding settings (``max_length``, the template version) and the compute dtype.

A change to any of them misses the cache; entries for an older ``triples.jsonl`` are deleted when a
new one is written. Pairs are computed on demand and remembered (``done`` mask), so a run on the
first 3,200 pairs and a later one on 6,400 share the first half. Column order per pair:
``[source chosen, source rejected, target chosen, target rejected]`` = ``log p(y_en|x_en),
log p(y_l|x_en), log p(y_l|x_l), log p(y_en|x_l)``, each summed over response tokens.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from ..files import atomic_file, sha256_file
from .triples import InstructionPair, TripleSet
from .tokens import encode_prompt_response, pad_sequences
from ..tokenizer import load_tokenizer
from ..errors import ChatflowError

CACHE_DIR = "reference"
ENCODING_VERSION = "chatflow-instruction-v1"   # bump when clo_tokens' sequence layout changes
COLUMNS = ("source_chosen", "source_rejected", "target_chosen", "target_rejected")
_MODEL_FILES = ("config.json", "tokenizer.model", "tokenizer.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def pair_sequences(pair: InstructionPair) -> list[tuple[str, str]]:
    """The four (prompt, response) sequences of a pair, in :data:`COLUMNS` order."""
    return [(pair.source_prompt, pair.source_response), (pair.source_prompt, pair.target_response),
            (pair.target_prompt, pair.target_response), (pair.target_prompt, pair.source_response)]


def model_fingerprint(model_dir: str | os.PathLike, memo_path: str | os.PathLike | None = None) -> str:
    """sha256 over the model directory's config, tokenizer and weight files (names and contents)."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.iterdir()
                   if p.is_file() and (p.name in _MODEL_FILES or p.name.endswith(_WEIGHT_SUFFIXES)))
    if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in files):
        raise ChatflowError(f"{model_dir}: no weight files (*.safetensors, *.bin) to fingerprint")
    memo: dict = {}
    if memo_path is not None and Path(memo_path).is_file():
        try:
            memo = json.loads(Path(memo_path).read_text(encoding="utf-8"))
        except (ValueError, RecursionError):   # a damaged memo is recomputed
            memo = {}
    digest = hashlib.sha256()
    changed = False
    for path in files:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in memo:
            memo[key] = sha256_file(path)
            changed = True
        digest.update(f"{path.name}\0{memo[key]}\n".encode())
    if memo_path is not None and changed:
        with atomic_file(memo_path, encoding="utf-8") as handle:
            json.dump(memo, handle, indent=1)
    return digest.hexdigest()


def cache_key(model_fp: str, data_sha256: str, max_length: int, dtype: str) -> str:
    text = json.dumps([model_fp, data_sha256, max_length, ENCODING_VERSION, dtype])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ReferenceCache:
    """The cached reference log-probabilities of one (model, triples, settings) combination."""

    def __init__(self, triples: TripleSet, model_dir: str | os.PathLike, max_length: int, dtype: str = "float32"):
        self.triples = triples
        self.model_dir = Path(model_dir)
        self.max_length = int(max_length)
        self.dtype = dtype
        self.directory = triples.directory / CACHE_DIR
        self.model_fp = model_fingerprint(self.model_dir, self.directory / "fingerprints.json")
        self.key = cache_key(self.model_fp, triples.sha256, self.max_length, dtype)
        self.path = self.directory / f"{self.key}.npz"
        self.computed_pairs = 0   # how many pairs the last ensure() had to compute (0 = fully reused)

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.triples)
        if self.path.is_file():
            try:
                with np.load(self.path) as data:
                    meta = json.loads(str(data["meta"]))
                    logps, done = data["logps"], data["done"]
                if meta.get("data_sha256") == self.triples.sha256 and logps.shape == (n, 4) and done.shape == (n,):
                    return logps.copy(), done.copy()
            except (OSError, ValueError, KeyError, json.JSONDecodeError):
                pass   # unreadable cache: recompute
        return np.zeros((n, 4), np.float64), np.zeros(n, bool)

    def _save(self, logps: np.ndarray, done: np.ndarray) -> None:
        meta = {"model_dir": str(self.model_dir), "model_fingerprint": self.model_fp,
                "data_sha256": self.triples.sha256, "max_length": self.max_length, "dtype": self.dtype,
                "encoding": ENCODING_VERSION, "columns": COLUMNS}
        with atomic_file(self.path, "wb") as handle:
            np.savez(handle, logps=logps, done=done, meta=np.asarray(json.dumps(meta)))
        for other in self.directory.glob("*.npz"):   # caches of an older triples.jsonl can never hit again
            if other != self.path:
                try:
                    with np.load(other) as data:
                        stale = json.loads(str(data["meta"])).get("data_sha256") != self.triples.sha256
                except (OSError, ValueError, KeyError, json.JSONDecodeError):
                    stale = True
                if stale:
                    other.unlink(missing_ok=True)

    def ensure(self, indices: np.ndarray | None = None, *, batch_size: int = 8, device: str = "auto",
               model=None, progress: bool = True) -> np.ndarray:
        """Reference log-probs (len(indices), 4) for the given pairs (default all), computing missing ones.

        ``model`` may be passed when it is already loaded (it must be the model of ``model_dir``);
        otherwise it is loaded here and released afterwards.
        """
        indices = np.arange(len(self.triples)) if indices is None else np.asarray(indices, dtype=np.int64)
        logps, done = self._load()
        missing = indices[~done[indices]]
        self.computed_pairs = len(missing)
        if len(missing):
            logps[missing] = compute_reference_logps(
                self.model_dir, [self.triples.pairs[i] for i in missing], self.max_length,
                batch_size=batch_size, device=device, dtype=self.dtype, model=model, progress=progress)
            done[missing] = True
            self._save(logps, done)
        return logps[indices]


def wait_for_cache(cache: ReferenceCache, indices: np.ndarray, timeout_s: float = 24 * 3600) -> np.ndarray:
    """Non-zero ranks of a distributed run: wait until rank 0 has cached the pairs they need."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logps, done = cache._load()
        if done[indices].all():
            return logps[indices]
        time.sleep(5)
    raise ChatflowError(f"timed out waiting for rank 0 to write {cache.path}")


def compute_reference_logps(model_dir: str | os.PathLike, pairs: list[InstructionPair], max_length: int, *,
                            batch_size: int = 8, device: str = "auto", dtype: str = "float32", model=None,
                            progress: bool = True) -> np.ndarray:
    """(len(pairs), 4) summed response log-probs under the model, in :data:`COLUMNS` order."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM

    from .objective import sequence_logps

    encoder = load_tokenizer(model_dir)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    own_model = model is None
    if own_model:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device)
    was_training = model.training
    model.eval()
    sequences = [(i, col, encode_prompt_response(encoder, prompt, response, max_length))
                 for i, pair in enumerate(pairs) for col, (prompt, response) in enumerate(pair_sequences(pair))]
    sequences.sort(key=lambda item: len(item[2].ids))   # similar lengths per batch: less padding
    out = np.zeros((len(pairs), 4), np.float64)
    rows = batch_size * 4
    device = next(model.parameters()).device
    with torch.inference_mode(), tqdm(total=len(sequences), desc="reference log-probs", unit="seq",
                                      disable=not progress) as bar:
        for start in range(0, len(sequences), rows):
            chunk = sequences[start:start + rows]
            batch = {k: v.to(device) for k, v in pad_sequences([s for _, _, s in chunk], encoder.padding_id).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logp, _ = sequence_logps(logits, batch["input_ids"], batch["response_mask"])
            for (i, col, _), value in zip(chunk, logp.double().cpu().numpy()):
                out[i, col] = value
            bar.update(len(chunk))
    model.train(was_training)
    if own_model:
        del model
    return out
