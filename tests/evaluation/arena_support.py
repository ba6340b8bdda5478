"""Helpers for the arena tests: two tiny random LLaMAs with the session's tiny tokenizer, a running arena."""
from __future__ import annotations

from pathlib import Path

from test_eval_models import write_tiny_llama

NAMES = ("kestrel-chat", "osprey-chat")   # distinctive, so a leak of a name into the page is easy to see


def make_models(spm_model: Path, root: Path, names=NAMES) -> list[Path]:
    return [write_tiny_llama(spm_model, root / name, seed=i) for i, name in enumerate(names)]


def start_arena(models: list[Path], votes: Path, **overrides):
    """An arena served in this process on a free 127.0.0.1 port; ``server.close()`` stops it."""
    from chatflow_plugin.evaluation.arena.serve import ArenaOptions, serve_arena

    settings = dict(model_path=[str(m) for m in models], votes=str(votes), port=0, max_new_tokens=12,
                    temperature=0.0, elo_bootstrap=50, device="cpu")
    settings.update(overrides)
    return serve_arena(ArenaOptions(**settings), block=False)


def wait_ready(server, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while any(w.state in ("waiting", "loading") for w in server.workers):
        if time.monotonic() > deadline:
            raise TimeoutError("models did not load")
        time.sleep(0.1)
