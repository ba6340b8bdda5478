"""The causal LM ``chatflow train`` starts from, checked before anything is allocated or loaded.

* **Its config** (:func:`check_config`): every size a positive integer (a negative ``hidden_size`` is a clean
  error, not torch's "negative dimension" traceback), and the memory the parameters need estimated from the config
  alone (:func:`parameter_count`: a lower bound from the sizes first, then the exact count of a model built on the
  ``meta`` device, which allocates nothing) and compared with the memory available: a config too big for the
  machine is refused naming both, instead of being allocated until the kernel kills the process.
* **Its weights** (:func:`check_weights`, for ``--model_path``): every weight file loads with
  ``torch.load(weights_only=True)`` (a pickled ``pytorch_model.bin`` holding code is refused unread, naming the
  file), and the tensors' names and shapes are the model's. Tensors the model has and the files lack would be
  initialised at random, and tensors the files hold and the model lacks dropped: both are refused with their
  names unless the user asks for it (``--allow_missing_weights``); a shape that does not fit the config is
  always refused.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ...checkpoints import tensor_io as cio
from ...errors import ChatflowError

# sizes a causal LM's config gives as positive integers (the LLaMA family's names)
SIZE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "num_key_value_heads", "head_dim", "max_position_embeddings")
MAX_LAYERS = 10_000             # more layers than any model has: a typo (and a model too slow to even describe)
GIB = 1 << 30


def check_config(config, where: str) -> None:
    """Refuse a config whose sizes are not positive integers, or absurd (``where``: the file it came from)."""
    for key in SIZE_KEYS:
        value = getattr(config, key, None)
        if value is None and key in ("head_dim", "num_key_value_heads"):
            continue        # derived from the others
        if value is None or isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            if value is None and not hasattr(config, key):
                continue    # a model type without this size
            raise ChatflowError(f"{where}: {key} must be a positive integer, got {value!r}")
    if config.num_hidden_layers > MAX_LAYERS:
        raise ChatflowError(f"{where}: num_hidden_layers {config.num_hidden_layers} is more than any model has "
                            f"(at most {MAX_LAYERS})")


def memory_available() -> int | None:
    """Bytes of memory this process may still use (Linux's MemAvailable; None where unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _lower_bound(config) -> int:
    """Parameters every decoder with these sizes has at least: embedding, and per layer the query and output
    projections and two MLP matrices."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    inner = getattr(config, "intermediate_size", None) or 0
    return config.vocab_size * hidden + layers * (2 * hidden * hidden + 2 * hidden * inner)


def meta_model(config):
    """The model ``config`` describes, on the ``meta`` device: shapes and names, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def parameter_count(config, where: str, bytes_per_parameter: int, limit: int | None) -> int:
    """The model's parameters (counted on a ``meta`` model), after refusing a config whose lower bound already
    needs more than ``limit`` bytes at ``bytes_per_parameter``."""
    if limit is not None and _lower_bound(config) * bytes_per_parameter > limit:
        return _lower_bound(config)
    try:
        model = meta_model(config)
    except (TypeError, ValueError, RuntimeError) as exc:   # e.g. a hidden size the head count does not divide
        raise ChatflowError(f"{where}: cannot build a {config.model_type} model from it ({last_line(exc)})") from None
    return sum(p.numel() for p in model.parameters())


def check_memory(config, where: str, training_on_cpu: bool) -> int:
    """Refuse a model whose parameters (float32, as it is built or loaded; on the CPU also their gradients and
    AdamW's two moments: 16 bytes each) need more memory than is available. Returns the parameter count."""
    per_parameter = 16 if training_on_cpu else 4
    available = memory_available()
    count = parameter_count(config, where, per_parameter, available)
    need = count * per_parameter
    if available is not None and need > available:
        what = ("weights, gradients and AdamW's two moments in float32, 16 bytes each, as training on the CPU "
                "holds them" if training_on_cpu else "its float32 weights as the model is built")
        bound = "at least " if count == _lower_bound(config) else ""
        raise ChatflowError(f"{where}: a model of {bound}{count / 1e9:,.2f}B parameters needs about {bound}"
                            f"{need / GIB:,.1f} GiB ({what}); {available / GIB:,.1f} GiB of memory is available")
    return count


def last_line(exc: BaseException) -> str:
    """The message's last line: validation errors wrap their cause's message after their own."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def pretrained_config(model_path: str | os.PathLike):
    """The config of the HF model directory ``model_path`` (its ``config.json``), read without its weights."""
    from transformers import AutoConfig

    path = Path(model_path, "config.json")
    if not path.is_file():
        raise ChatflowError(f"{model_path}: not a HuggingFace model directory (no config.json)")
    try:
        return AutoConfig.from_pretrained(model_path)
    except Exception as exc:   # ValueError, OSError, JSON errors, huggingface_hub's validation errors
        raise ChatflowError(f"{path}: not a valid model config ({last_line(exc)})") from None


def check_weights(model_path: str | os.PathLike, config, allow_missing: bool = False) -> None:
    """Refuse ``model_path``'s weights unless torch loads every file safely and their tensors are ``config``'s
    model's (names and shapes; see the module docstring)."""
    model_path = Path(model_path)
    refs = cio.open_state_dict(model_path)
    for path in sorted({ref.path for ref in refs.values() if ref.path.suffix in (".bin", ".pt", ".pth")}):
        cio.check_torch_file(path)
    model = meta_model(config)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    owned = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    tied = set(expected) - owned                        # e.g. lm_head.weight tied to the embedding
    prefix = f"{model.base_model_prefix}."
    if refs and not set(refs) & set(expected) and all(f"{prefix}{n}" in expected for n in refs):
        refs = {f"{prefix}{n}": ref for n, ref in refs.items()}   # a base model's checkpoint (no prefix)
    ignored = list(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []) + [r"rotary_emb\.inv_freq$"]
    missing, unexpected, mismatched = cio.weight_differences(
        refs, expected, optional=tied, ignored=lambda name: any(re.search(p, name) for p in ignored))
    where = f"--model_path {model_path}"
    if mismatched:
        raise ChatflowError(f"{where}: {len(mismatched)} tensor(s) do not fit its config.json ({_listed(mismatched)}); "
                            f"the weights are of another model")
    if (missing or unexpected) and not allow_missing:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} weight(s) the model has, which would start at random ({_listed(missing)})")
        if unexpected:
            parts.append(f"holds {len(unexpected)} the model has no place for, which would be dropped "
                         f"({_listed(unexpected)})")
        raise ChatflowError(f"{where} {' and '.join(parts)}; pass --allow_missing_weights if that is what you want")


def _listed(names: list[str]) -> str:
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
