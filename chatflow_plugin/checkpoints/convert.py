"""Convert LLaMA checkpoints between TencentPretrain and HuggingFace, streaming one tensor at a time.

Python API (other modules call these)::

    convert_hf_to_tp(hf_dir, output_dir, tokenizer=None, dtype=None, force=False, max_seq_length=None)
        -> Path   # output_dir/{tencentpretrain_model.bin, config.json (host config), tokenizer.model}
    convert_tp_to_hf(tp_path, output_dir, tp_config=None, tokenizer=None, dtype=None, force=False,
                     max_shard_size="5GB", tag=None, max_position_embeddings=None)
        -> Path   # output_dir/{config.json, generation_config.json, model*.safetensors[, index],
                  #             tokenizer.model, tokenizer_config.json, special_tokens_map.json, tokenizer.json}
    load_hf(hf_dir) -> (config dict, tensor refs, LlamaShape, key mappings)   # checked against each other
    load_tp(tp_path, tp_config=None, tag=None) -> (config dict, tensor refs, tokenizer path or None)
    parse_size("5GB") -> int

``tp_path`` is a state-dict file (``.bin``/``.pt``/``.safetensors``), a directory written by
``convert_hf_to_tp``, a TencentPretrain blocks directory (``tencentpretrain_model.bin.index.json``) or
a DeepSpeed checkpoint directory (ZeRO 0-2, tensor-parallel ranks merged; ``tag`` picks a tag other
than ``latest``). Its config is
``tp_config`` or the directory's ``config.json``; its tokenizer is ``tokenizer`` or the directory's
``tokenizer.model`` or ``tokenizer.json``: a sentencepiece model (LLaMA-2's kind) or an HF ``tokenizer.json``
(byte-level BPE, LLaMA-3's or Qwen2's kind, with the ``tokenizer_config.json`` beside it), whatever
:func:`chatflow_plugin.tokenizer.load_tokenizer` reads. ``dtype`` is ``None`` (keep), ``"float32"``, ``"float16"`` or ``"bfloat16"``.

The HF side is any checkpoint of the LLaMA family the host can represent (LLaMA-2, and LLaMA-3, Mistral or Qwen2
checkpoints whose settings the host has; :func:`chatflow_plugin.checkpoints.llama_layout.host_limitations` names
what it lacks otherwise); tied embeddings become the host's ``tie_weights``. q/k projections are permuted between
TencentPretrain's interleaved rotary layout and HF's rotate-half layout
(:mod:`chatflow_plugin.checkpoints.llama_layout`); the HF tokenizer files are written by
:func:`chatflow_plugin.tokenizer.write_hf_tokenizer_files`. Output goes to a temporary sibling directory
renamed into place only when complete, ``config.json`` written last; an existing output directory is an error
unless ``force``, which replaces only a model folder chatflow wrote (:mod:`chatflow_plugin.outputs`). A tensor
holding NaN, infinities or absurd magnitudes (a damaged payload) is refused, naming the file and tensor.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

from ..files import read_json
from ..errors import ChatflowError
from ..outputs import OutputKind, atomic_directory, write_last
from ..options import option
from ..tokenizer import HF_TOKENIZER_JSON, SENTENCEPIECE, SPM_FILE, Tokenizer, load_tokenizer, write_hf_tokenizer_files
from . import tensor_io as cio
from . import llama_layout as L

TP_WEIGHTS = "tencentpretrain_model.bin"
# the kinds of output folder (chatflow_plugin.outputs): regular files only, each named by the folder's marker (a
# model folder may keep the extra files of the model it came from)
HF_KIND = OutputKind("hf-model", folders=())
TP_KIND = OutputKind("tencentpretrain-model", folders=())


def torch_equal(a, b) -> bool:
    import torch
    return a.shape == b.shape and bool(torch.equal(a, b))


def parse_size(text: str | int) -> int:
    """``"5GB"`` -> 5_000_000_000 (decimal units, like HF's ``max_shard_size``); ``"2GiB"`` binary."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ChatflowError(f"size {text!r}: expected a number with an optional unit like 500MB, 5GB, 2GiB")
    number, unit = float(match.group(1)), (match.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return max(1, int(number * scale))


def _check_vocab(vocab_rows: int, tokenizer: Tokenizer | None, where: str) -> None:
    """A sentencepiece model has one piece per embedding row; an HF tokenizer's ids must fit in the rows (padded
    embeddings, as Qwen2's, have more rows than ids)."""
    if tokenizer is None:
        return
    pieces = tokenizer.vocab_size
    if pieces != vocab_rows if tokenizer.kind == SENTENCEPIECE else pieces > vocab_rows:
        raise ChatflowError(f"{where}: the embedding has {vocab_rows} rows but tokenizer {tokenizer.path} has "
                            f"{pieces} {'pieces' if tokenizer.kind == SENTENCEPIECE else 'ids'}; pass the tokenizer "
                            "this checkpoint was trained with (or expand the weights with `chatflow expand-vocab`)")


def _tokenizer_in(folder: Path) -> Path | None:
    """The tokenizer a model folder holds: its tokenizer.model, else its tokenizer.json."""
    for name in (SPM_FILE, HF_TOKENIZER_JSON):
        if folder.is_dir() and (folder / name).is_file():
            return folder / name
    return None


def _write_tokenizer(tokenizer: Tokenizer, folder: Path, model_max_length: int | None, warn: bool = False) -> None:
    """The tokenizer's files into a model folder: a sentencepiece model as itself plus the HF files derived from
    it (checked against it); an HF tokenizer as its own files (tokenizer.json and the configs beside it)."""
    if tokenizer.kind == SENTENCEPIECE:
        write_hf_tokenizer_files(tokenizer.file, folder, model_max_length, warn=warn)
    else:
        files, _ = tokenizer.hf_files(model_max_length or 2048)
        files.write(folder)


def _check_shapes(refs: dict, expected: dict[str, tuple], where: str) -> None:
    for name, shape in expected.items():
        if name in refs and tuple(refs[name].shape) != tuple(shape):
            raise ChatflowError(f"{where}: tensor {name} has shape {tuple(refs[name].shape)}, the config implies {tuple(shape)}")


# ---- HF -> TencentPretrain ----------------------------------------------------------------------

def _expected_hf_shapes(shape: L.LlamaShape, hidden: int, ffn: int, vocab: int) -> dict[str, tuple]:
    h, kv, d = shape.heads, shape.kv_heads, shape.head_dim
    per_layer = {"self_attn.q_proj": (h * d, hidden), "self_attn.k_proj": (kv * d, hidden),
                 "self_attn.v_proj": (kv * d, hidden), "self_attn.o_proj": (hidden, h * d),
                 "mlp.gate_proj": (ffn, hidden), "mlp.up_proj": (ffn, hidden), "mlp.down_proj": (hidden, ffn)}
    out = {L.HF_EMBEDDING: (vocab, hidden), L.HF_OUTPUT: (vocab, hidden), L.HF_FINAL_NORM: (hidden,)}
    for i in range(shape.layers):
        for name, dims in per_layer.items():
            out[f"model.layers.{i}.{name}.weight"] = dims
            out[f"model.layers.{i}.{name}.bias"] = dims[:1]
        out[f"model.layers.{i}.input_layernorm.weight"] = (hidden,)
        out[f"model.layers.{i}.post_attention_layernorm.weight"] = (hidden,)
    return out


def _rotary_fn(direction: str, shape: L.LlamaShape, role: str | None):
    if role is None:
        return None
    heads = shape.heads if role == "q" else shape.kv_heads
    fn = L.interleaved_to_half if direction == "tp->hf" else L.half_to_interleaved
    return lambda w: fn(w, heads, shape.head_dim)


def _items(refs: dict, pairs, shape: L.LlamaShape, direction: str, dtype) -> list[cio.OutTensor]:
    """Output tensors: (source name, output name, rotary role) -> OutTensor with a lazy producer."""
    items = []
    for src, dst, role in pairs:
        ref = refs[src]
        permute = _rotary_fn(direction, shape, role)

        def produce(ref=ref, permute=permute):
            tensor = cio.read_checked(ref)
            return permute(tensor) if permute else tensor
        items.append(cio.OutTensor(dst, ref.shape, dtype or ref.dtype, produce))
    return items


def load_hf(hf_dir: Path):
    """(config dict, tensor refs, LlamaShape, key mappings) of an HF ``LlamaForCausalLM`` directory, checked
    against each other (layout, layer count, keys, shapes, vocab_size)."""
    if not hf_dir.is_dir():
        raise ChatflowError(f"{hf_dir}: expected a HuggingFace model directory")
    cfg = read_json(hf_dir / "config.json", "HuggingFace config")
    refs = cio.open_state_dict(hf_dir)
    if L.detect_layout(refs) != "hf":
        raise ChatflowError(f"{hf_dir}: holds TencentPretrain keys, not a HuggingFace LlamaForCausalLM")
    for key in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size"):
        if key not in cfg:
            raise ChatflowError(f"{hf_dir / 'config.json'}: lacks {key}")
    refs = {k: v for k, v in refs.items() if not k.endswith("rotary_emb.inv_freq")}   # a buffer old exports saved
    shape = L.hf_shape(cfg, refs)
    if L.count_layers(refs, "hf") != shape.layers:
        raise ChatflowError(f"{hf_dir}: config says {shape.layers} layers, the weights have {L.count_layers(refs, 'hf')}")
    maps = L.key_mappings(shape)
    L.check_keys(refs, [m.hf for m in maps], f"{hf_dir}", allow_missing=(L.HF_OUTPUT,) if shape.tied else ())
    vocab = refs[L.HF_EMBEDDING].shape[0]
    _check_shapes(refs, _expected_hf_shapes(shape, cfg["hidden_size"], cfg["intermediate_size"], vocab), str(hf_dir))
    if cfg.get("vocab_size", vocab) != vocab:
        raise ChatflowError(f"{hf_dir / 'config.json'}: vocab_size {cfg['vocab_size']} but the embedding has {vocab} rows")
    return cfg, refs, shape, maps


def convert_hf_to_tp(hf_dir, output_dir, tokenizer=None, dtype=None, force: bool = False,
                     max_seq_length: int | None = None, progress: bool = False) -> Path:
    """An HF ``LlamaForCausalLM`` directory -> ``output_dir`` with the host's model file and config."""
    hf_dir, output_dir = Path(hf_dir), Path(output_dir)
    cfg, refs, shape, maps = load_hf(hf_dir)
    tokenizer = Path(tokenizer) if tokenizer else _tokenizer_in(hf_dir)
    tok = load_tokenizer(tokenizer) if tokenizer is not None else None
    _check_vocab(refs[L.HF_EMBEDDING].shape[0], tok, str(hf_dir))
    tp_cfg = L.tp_config_from_hf(cfg, str(hf_dir / "config.json"), max_seq_length, keys=refs)
    pairs = [(m.hf if m.hf in refs else L.HF_EMBEDDING, m.tp, m.rotary) for m in maps]   # tied: lm_head = embedding
    items = _items(refs, pairs, shape, "hf->tp", cio.as_dtype(dtype))
    with atomic_directory(output_dir, TP_KIND, force=force, inputs=(hf_dir, tokenizer)) as tmp, \
            cio.progress_bar(sum(i.nbytes for i in items), "hf->tp", progress) as bar:
        cio.write_torch_file(tmp / TP_WEIGHTS, items, progress=bar)
        if tok is not None and tok.kind == SENTENCEPIECE:
            shutil.copyfile(tok.file, tmp / SPM_FILE)        # the host reads the sentencepiece model itself
        elif tok is not None:
            _write_tokenizer(tok, tmp, cfg.get("max_position_embeddings"))
        write_last(tmp, "config.json", json.dumps(tp_cfg, indent=2) + "\n")   # last: it loads
    return output_dir


# ---- TencentPretrain -> HF ----------------------------------------------------------------------

def load_tp(tp_path, tp_config=None, tag: str | None = None):
    """(config dict, tensor refs, tokenizer path or None) of a TencentPretrain LLaMA checkpoint."""
    tp_path = Path(tp_path)
    if not tp_path.exists():
        raise ChatflowError(f"{tp_path}: no such file or directory")
    if tp_config is not None:
        cfg_path = Path(tp_config)
    elif tp_path.is_dir() and (tp_path / "config.json").is_file():
        cfg_path = tp_path / "config.json"
    else:
        raise ChatflowError(f"{tp_path}: pass --tp_config, the host's model config (e.g. models/llama2/7b_config.json)")
    cfg = read_json(cfg_path, "TencentPretrain config")
    L.check_tp_config(cfg, str(cfg_path))
    refs = cio.open_state_dict(tp_path, tag=tag, parallel_dim=L.tp_parallel_dim)
    if L.detect_layout(refs) != "tp":
        raise ChatflowError(f"{tp_path}: holds HuggingFace keys, not a TencentPretrain checkpoint")
    layers = L.count_layers(refs, "tp")
    if layers != cfg["layers_num"]:
        raise ChatflowError(f"{tp_path}: {cfg_path} says layers_num {cfg['layers_num']}, the weights have {layers} layers")
    return cfg, refs, _tokenizer_in(tp_path)


def convert_tp_to_hf(tp_path, output_dir, tp_config=None, tokenizer=None, dtype=None, force: bool = False,
                     max_shard_size="5GB", tag: str | None = None, max_position_embeddings: int | None = None,
                     progress: bool = False) -> Path:
    """A TencentPretrain LLaMA checkpoint -> a HuggingFace ``LlamaForCausalLM`` directory (safetensors)."""
    tp_path, output_dir = Path(tp_path), Path(output_dir)
    cfg, refs, found_tokenizer = load_tp(tp_path, tp_config, tag)
    tokenizer = Path(tokenizer) if tokenizer else found_tokenizer
    if tokenizer is None:
        raise ChatflowError(f"{tp_path}: pass --tokenizer, the tokenizer of this checkpoint (a sentencepiece model or "
                            "a tokenizer.json; a release without tokenizer files cannot be loaded with AutoTokenizer)")
    tok = load_tokenizer(tokenizer)
    shape = L.tp_shape(cfg)
    maps = L.key_mappings(shape)
    L.check_keys(refs, [m.tp for m in maps], str(tp_path))
    vocab = refs[L.TP_EMBEDDING].shape[0]
    expected = _expected_hf_shapes(shape, cfg["hidden_size"], cfg["feedforward_size"], vocab)
    _check_shapes(refs, {m.tp: expected[m.hf] for m in maps}, str(tp_path))
    _check_vocab(vocab, tok, str(tp_path))
    out_dtype = cio.as_dtype(dtype)
    if cfg.get("tie_weights"):   # the host ties the output layer to the embedding: HF saves the embedding only
        if not torch_equal(refs[L.TP_OUTPUT].read(), refs[L.TP_EMBEDDING].read()):
            raise ChatflowError(f"{tp_path}: tie_weights is set in its config but {L.TP_OUTPUT} differs from "
                                f"{L.TP_EMBEDDING}")
        maps = [m for m in maps if m.tp != L.TP_OUTPUT]
    items = _items(refs, [(m.tp, m.hf, m.rotary) for m in maps], shape, "tp->hf", out_dtype)
    hf_cfg = L.hf_config_from_tp(cfg, vocab, tok.bos_id, tok.eos_id,
                                 cio.dtype_name(out_dtype or refs[L.TP_EMBEDDING].dtype), max_position_embeddings)
    with atomic_directory(output_dir, HF_KIND, force=force, inputs=(tp_path, tp_config, tokenizer)) as tmp, \
            cio.progress_bar(sum(i.nbytes for i in items), "tp->hf", progress) as bar:
        cio.write_safetensors(tmp, items, parse_size(max_shard_size), progress=bar)
        generation = {"bos_token_id": hf_cfg["bos_token_id"], "eos_token_id": hf_cfg["eos_token_id"]}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
        _write_tokenizer(tok, tmp, hf_cfg["max_position_embeddings"], warn=True)
        # config.json last: the temporary folder of a killed run never loads with from_pretrained
        write_last(tmp, "config.json", json.dumps(hf_cfg, indent=2) + "\n")
    return output_dir


# ---- command line -------------------------------------------------------------------------------

@dataclasses.dataclass
class ConvertOptions:
    direction: str = option(positional=True, choices=["tp2hf", "hf2tp"],
                            help="tp2hf: TencentPretrain -> HuggingFace; hf2tp: HuggingFace -> TencentPretrain")
    input: str = option(positional=True, help="tp2hf: state-dict file, converted directory, blocks directory or "
                                              "DeepSpeed checkpoint directory; hf2tp: HF model directory")
    output: str = option(positional=True, help="output directory (must not exist unless --force)")
    tp_config: str | None = option(None, type=str, help="tp2hf: the host's LLaMA config JSON (default: <input>/config.json)")
    tokenizer: str | None = option(None, type=str, help="the checkpoint's tokenizer: a sentencepiece model (its piece "
                                              "count must equal the embedding rows) or an HF tokenizer.json / a "
                                              "folder holding one, e.g. byte-level BPE (its ids must fit in the "
                                              "rows); default: <input>/tokenizer.model, else <input>/tokenizer.json")
    dtype: str = option("keep", choices=["keep", "float32", "float16", "bfloat16"], help="output dtype")
    max_shard_size: str = option("5GB", help="tp2hf: largest safetensors shard (decimal units: 500MB, 5GB; GiB binary)")
    tag: str | None = option(None, type=str, help="tp2hf, DeepSpeed input: checkpoint tag (default: the 'latest' file)")
    max_positions: int | None = option(None, type=int, help="max_position_embeddings (tp2hf) / max_seq_length (hf2tp); "
                                                  "default: taken from the input config")
    force: bool = option(False, help="replace an existing output directory (only once the new one is complete)")
    quiet: bool = option(False, help="no progress bar")


def convert(opts: ConvertOptions) -> None:
    """Convert a LLaMA checkpoint between TencentPretrain and HuggingFace (hf2tp or tp2hf), streaming one
    tensor at a time, q/k permuted between the two rotary layouts."""
    common = dict(tokenizer=opts.tokenizer, dtype=opts.dtype, force=opts.force, progress=not opts.quiet)
    if opts.direction == "tp2hf":
        out = convert_tp_to_hf(opts.input, opts.output, tp_config=opts.tp_config, max_shard_size=opts.max_shard_size,
                               tag=opts.tag, max_position_embeddings=opts.max_positions, **common)
    else:
        if opts.tp_config:
            raise ChatflowError("--tp_config is for tp2hf; hf2tp derives the host config from config.json")
        out = convert_hf_to_tp(opts.input, opts.output, max_seq_length=opts.max_positions, **common)
    print(f"wrote {out}")
