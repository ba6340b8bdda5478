"""Read and write checkpoints one tensor at a time: safetensors, torch ``.bin`` (zip), sharded, DeepSpeed.

Reading never loads a whole file: :func:`open_state_dict` returns :class:`TensorRef` handles whose
``read()`` copies just that tensor's bytes from disk (``safetensors`` headers are parsed directly; torch
zip files are unpickled with a restricted unpickler that records where each storage lives and never
imports or runs code from the file). Only pre-1.6 *legacy* torch files (not zip) are loaded whole.

Writing streams as well: :func:`write_safetensors` plans shards from shapes alone, writes each header,
then each tensor's bytes as it is produced; :func:`write_torch_file` writes a file that ``torch.load``
reads (same zip layout as ``torch.save``: ``data.pkl`` + 64-byte-aligned ``data/<n>`` records) without
holding more than one tensor. Peak memory is therefore about one tensor (plus its converted copy), not
one shard.

Accepted inputs of :func:`open_state_dict`: a ``.safetensors`` / ``.bin`` / ``.pt`` file; a
``*.index.json`` (HF ``weight_map`` or TencentPretrain's ``tencentpretrain_model.bin.index.json``); a
directory holding one of those; a DeepSpeed checkpoint directory (see :func:`resolve_deepspeed`).

Before a library loads a checkpoint itself (``from_pretrained``, the Trainer's optimizer, scheduler and RNG
states), :func:`check_torch_file` proves that ``torch.load(weights_only=True)`` takes the file (memory-mapped:
no tensor data is read) and :func:`weight_differences` that the tensors' names and shapes are the ones the model
has, so that a pickle with code in it, a damaged file or weights of another model is one line naming the file
(:func:`load_problem`), not a traceback, and never a model partly initialised at random.
"""
from __future__ import annotations

import collections
import io
import json
import math
import os
import pickle
import re
import struct
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

import torch

from ..errors import ChatflowError

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
DTYPE_TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_DTYPES.items()}
DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Files a directory may hold, in the order they are looked for.
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json", "tencentpretrain_model.bin.index.json")
SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin", "tencentpretrain_model.bin")


@dataclass
class TensorRef:
    """One tensor on disk: its metadata now, its values on ``read()``."""
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    path: Path
    _read: Callable[[], torch.Tensor] = field(repr=False)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)

    def read(self) -> torch.Tensor:
        tensor = self._read()
        if tuple(tensor.shape) != self.shape or tensor.dtype != self.dtype:
            raise ChatflowError(f"{self.path}: tensor {self.name} read as {tuple(tensor.shape)} {tensor.dtype}, "
                                f"header says {self.shape} {self.dtype}")
        return tensor


# A LLaMA weight is far below this; random bytes in a float payload are above it (or not finite) for almost
# half of their values, so a damaged tensor is caught however few values it holds.
PLAUSIBLE_MAGNITUDE = 1e6


def read_checked(ref: TensorRef) -> torch.Tensor:
    """``ref.read()``, refused if a floating-point tensor holds NaN, infinities or values beyond
    :data:`PLAUSIBLE_MAGNITUDE` (a damaged payload: the header is intact, the bytes are not)."""
    tensor = ref.read()
    if tensor.is_floating_point() and tensor.numel():
        finite = torch.isfinite(tensor)
        bad = int((~finite).sum())
        largest = float(tensor[finite].abs().max()) if bad < tensor.numel() else float("inf")
        if bad or largest > PLAUSIBLE_MAGNITUDE:
            what = f"{bad} NaN or infinite value(s)" if bad else f"values as large as {largest:.3g}"
            raise ChatflowError(f"{ref.path}: tensor {ref.name} holds {what}: the checkpoint's data is damaged")
    return tensor


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _read_into(path: Path, offset: int, nbytes: int, dtype: torch.dtype) -> torch.Tensor:
    """``nbytes`` from ``path`` at ``offset`` straight into a new 1-D tensor (no intermediate bytes copy)."""
    out = torch.empty(nbytes // _itemsize(dtype), dtype=dtype)
    if nbytes == 0:
        return out
    view = memoryview(out.view(torch.uint8).numpy())
    with open(path, "rb") as handle:
        handle.seek(offset)
        got = handle.readinto(view)
    if got != nbytes:
        raise ChatflowError(f"{path}: file is truncated (wanted {nbytes} bytes at offset {offset}, got {got})")
    return out


# ---- safetensors -------------------------------------------------------------------------------

def safetensors_header(path: Path) -> tuple[dict, int]:
    """The JSON header of a safetensors file and the offset where its data starts."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ChatflowError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > min(size - 8, 100 << 20):
            raise ChatflowError(f"{path}: not a safetensors file (header length {length} is impossible)")
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:
            raise ChatflowError(f"{path}: safetensors header is not JSON ({exc})") from None
    return header, 8 + length


def read_safetensors_refs(path: Path) -> dict[str, TensorRef]:
    header, start = safetensors_header(path)
    file_size = path.stat().st_size
    refs = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ChatflowError(f"{path}: tensor {name} has unsupported dtype {info.get('dtype')!r}")
        begin, end = info["data_offsets"]
        shape = tuple(int(s) for s in info["shape"])
        if start + end > file_size or end - begin != math.prod(shape) * _itemsize(dtype):
            raise ChatflowError(f"{path}: tensor {name} lies outside the file or has the wrong size (truncated?)")

        def read(begin=begin, end=end, dtype=dtype, shape=shape):
            return _read_into(path, start + begin, end - begin, dtype).reshape(shape)
        refs[name] = TensorRef(name, shape, dtype, path, read)
    return refs


# ---- torch zip files, read lazily ----------------------------------------------------------------

class _Opaque:
    """Stands in for any non-tensor object in a checkpoint (optimizer configs, argparse Namespaces ...)."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state

    def __call__(self, *args, **kwargs):
        return _Opaque(*args)


@dataclass
class _LazyStorage:
    key: str
    dtype: torch.dtype


@dataclass
class _LazyTensor:
    storage: _LazyStorage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _storage_types() -> dict[str, torch.dtype]:
    names = {"UntypedStorage": torch.uint8, "ByteStorage": torch.uint8}
    for dtype, name in torch.storage._dtype_to_storage_type_map().items():
        names[name] = dtype
    return names


def load_problem(exc: BaseException) -> str:
    """What ``torch.load`` (or the lazy reader) found wrong with a file, in one line: a pickled object that
    ``weights_only`` refuses (named; refused unread, so nothing in it ran), a damaged zip, or the error's first
    line."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.<>]+)", text) or re.search(r"Unsupported operand (\d+)", text)
    if found is not None and "GLOBAL" in found.group(0):
        return (f"it holds a pickled {found.group(1)}, which is not weights: torch refused to load it (weights_only), "
                f"so nothing in it ran")
    if found is not None or "Weights only load failed" in text:
        return "it holds a pickle that is not weights: torch refused to load it (weights_only), so nothing in it ran"
    if "zip archive" in text or "central directory" in text or isinstance(exc, (EOFError, zipfile.BadZipFile)):
        return f"not a complete torch file (damaged or cut short: {_first_line(text) or type(exc).__name__})"
    return f"not a loadable torch file ({type(exc).__name__}: {_first_line(text)[:200]})"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def check_torch_file(path: str | os.PathLike, what: str = "") -> None:
    """Refuse a torch file that ``torch.load(weights_only=True)`` would not load (a pickle with code in it, a
    damaged file): one line naming it (and ``what`` it is). Zip files are memory-mapped, so no tensor data is
    read. Call it inside ``torch.serialization.safe_globals`` to allow what the file's reader allows."""
    path = Path(path)
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:   # UnpicklingError, RuntimeError (zip), EOFError, ValueError ...
        raise ChatflowError(f"{path}: {what + ' ' if what else ''}cannot be loaded: {load_problem(exc)}") from None


def weight_differences(refs: dict[str, "TensorRef"], expected: dict[str, tuple[int, ...]],
                       optional: Collection[str] = (), ignored: Callable[[str], bool] = lambda name: False
                       ) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, mismatched) between a checkpoint's tensors ``refs`` and the ``expected`` names and
    shapes of a model: missing are expected names absent (``optional`` ones, such as an output matrix tied to
    the embedding, may be), unexpected are names the model has no place for (unless ``ignored``), mismatched
    are ``"name: (shape) where the model has (shape)"``."""
    missing = sorted(n for n in expected if n not in refs and n not in optional)
    unexpected = sorted(n for n in refs if n not in expected and not ignored(n))
    mismatched = [f"{n}: {tuple(refs[n].shape)} where the model has {tuple(expected[n])}" for n in sorted(refs)
                  if n in expected and tuple(refs[n].shape) != tuple(expected[n])]
    return missing, unexpected, mismatched


def _rebuild_tensor(storage, offset, size, stride, *_args):
    return _LazyTensor(storage, int(offset), tuple(size), tuple(stride))


class _LazyUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` into :class:`_LazyTensor` records; imports nothing from the file."""
    _storage_names = None

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name.startswith("_rebuild_parameter"):
            return lambda data, *args: data
        if module == "torch":
            if _LazyUnpickler._storage_names is None:
                _LazyUnpickler._storage_names = _storage_types()
            if name in _LazyUnpickler._storage_names:
                return _StorageType(_LazyUnpickler._storage_names[name])
            if isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
        return _Opaque

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        return _LazyStorage(key, dtype)


def _zip_record_offset(path: Path, info: zipfile.ZipInfo) -> int:
    if info.compress_type != zipfile.ZIP_STORED:
        raise ChatflowError(f"{path}: record {info.filename} is compressed; torch never writes that")
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _tensors_in(obj, path: Path) -> dict:
    """The state dict inside a loaded object: itself, or DeepSpeed's ``module`` / a ``state_dict`` entry."""
    if isinstance(obj, dict):
        for key in ("module", "state_dict", "model"):
            if isinstance(obj.get(key), dict) and any(isinstance(v, (_LazyTensor, torch.Tensor)) for v in obj[key].values()):
                return obj[key]
        if any(isinstance(v, (_LazyTensor, torch.Tensor)) for v in obj.values()):
            return obj
    raise ChatflowError(f"{path}: holds no state dict of tensors")


def read_torch_refs(path: Path) -> dict[str, TensorRef]:
    """Tensor handles of a ``torch.save`` file; only the pickled index is read now."""
    if not zipfile.is_zipfile(path):
        return _read_legacy_torch(path)
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        pkl = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise ChatflowError(f"{path}: zip file without data.pkl: not a torch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        try:
            obj = _LazyUnpickler(io.BytesIO(archive.read(pkl[0]))).load()
        except Exception as exc:   # corrupt or foreign pickles: say which file
            raise ChatflowError(f"{path}: cannot read the checkpoint index ({_first_line(str(exc))[:200]})") from None
    state = _tensors_in(obj, path)
    offsets: dict[str, int] = {}
    refs = {}
    for name, lazy in state.items():
        if not isinstance(lazy, _LazyTensor):
            continue
        key = lazy.storage.key
        if key not in offsets:
            info = infos.get(f"{prefix}data/{key}")
            if info is None:
                raise ChatflowError(f"{path}: storage data/{key} of tensor {name} is missing (truncated file?)")
            offsets[key] = _zip_record_offset(path, info)
            offsets[key + "/size"] = info.file_size
        refs[name] = _torch_ref(path, name, lazy, offsets[key], offsets[key + "/size"])
    return refs


def _torch_ref(path: Path, name: str, lazy: _LazyTensor, record_offset: int, record_size: int) -> TensorRef:
    dtype, item = lazy.storage.dtype, _itemsize(lazy.storage.dtype)
    span = 0 if 0 in lazy.shape else 1 + sum((s - 1) * st for s, st in zip(lazy.shape, lazy.stride))
    if (lazy.offset + span) * item > record_size:
        raise ChatflowError(f"{path}: tensor {name} lies outside its storage record (truncated file?)")

    def read():
        flat = _read_into(path, record_offset + lazy.offset * item, span * item, dtype)
        if not lazy.shape:
            return flat.reshape(())
        return flat.as_strided(lazy.shape, lazy.stride).contiguous()
    return TensorRef(name, lazy.shape, dtype, path, read)


def _read_legacy_torch(path: Path) -> dict[str, TensorRef]:
    """Pre-zip torch files cannot be read lazily: load once (weights only) and hand out the tensors."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ChatflowError(f"{path}: cannot be loaded: {load_problem(exc)}") from None
    state = _tensors_in(obj, path)
    return {name: TensorRef(name, tuple(t.shape), t.dtype, path, (lambda t=t: t))
            for name, t in state.items() if isinstance(t, torch.Tensor)}


# ---- files, indexes, directories, DeepSpeed -----------------------------------------------------

def read_file_refs(path: Path) -> dict[str, TensorRef]:
    """One checkpoint file: safetensors by suffix, torch zip/legacy by suffix or content, else by trying."""
    if path.suffix == ".safetensors":
        return read_safetensors_refs(path)
    if path.suffix in (".bin", ".pt", ".pth") or zipfile.is_zipfile(path):
        return read_torch_refs(path)
    try:
        return read_safetensors_refs(path)
    except ChatflowError:
        return read_torch_refs(path)


def read_index_refs(index_path: Path) -> dict[str, TensorRef]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (ValueError, KeyError) as exc:
        raise ChatflowError(f"{index_path}: not a checkpoint index with a weight_map ({exc})") from None
    refs: dict[str, TensorRef] = {}
    for shard in dict.fromkeys(weight_map.values()):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            raise ChatflowError(f"{index_path}: shard {shard} is missing")
        for name, ref in read_file_refs(shard_path).items():
            if weight_map.get(name) == shard:
                refs[name] = ref
    missing = sorted(set(weight_map) - set(refs))
    if missing:
        raise ChatflowError(f"{index_path}: {len(missing)} tensor(s) listed but absent from their shards, e.g. {missing[0]}")
    return refs


def resolve_deepspeed(path: Path, tag: str | None = None) -> list[Path]:
    """The ``mp_rank_XX_model_states.pt`` files of a DeepSpeed checkpoint directory ([] if it is not one).

    DeepSpeed's ``save_checkpoint(dir, tag)`` writes ``dir/<tag>/mp_rank_00_model_states.pt`` (ZeRO 0-2:
    the full module under ``"module"``; one file per tensor-parallel rank) and ``dir/latest`` naming the
    tag. ZeRO-3 keeps only partitions (``zero_pp_rank_*_mp_rank_00_model_states.pt``) and pipeline
    parallelism writes ``layer_*-model_states.pt``; those are refused with the command that consolidates them.
    """
    if tag is not None or (path / "latest").is_file():
        tag = tag if tag is not None else read_latest(path)
        check_tag(tag, path)
        if not (path / tag).is_dir():
            raise ChatflowError(f"{path}: DeepSpeed checkpoint tag {tag!r} has no directory {path / tag}")
        path = path / tag
    states = path / "mp_rank_00_model_states.pt"
    ranks = sorted(path.glob("mp_rank_*_model_states.pt"))
    zero3 = sorted(path.glob("zero_pp_rank_*_model_states.pt"))
    layers = sorted(path.glob("layer_*-model_states.pt"))
    consolidate = (f"consolidate it first with DeepSpeed's script (written next to the checkpoint): "
                   f"python {path.parent / 'zero_to_fp32.py'} {path.parent} consolidated.bin --tag {path.name}")
    if zero3 and not states.is_file():
        raise ChatflowError(f"{path}: a ZeRO-3 checkpoint holds only parameter partitions; {consolidate}")
    if layers:
        raise ChatflowError(f"{path}: a pipeline-parallel checkpoint (layer_*-model_states.pt); merge it with the "
                            "host's scripts/convert_llama_from_3d_parallelism_checkpoint_to_pytorch_checkpoint.py first")
    if ranks and ranks != [path / f"mp_rank_{k:02d}_model_states.pt" for k in range(len(ranks))]:
        raise ChatflowError(f"{path}: tensor-parallel ranks are not numbered 00..{len(ranks) - 1:02d}: "
                            f"{', '.join(p.name for p in ranks)}")
    return ranks


def read_latest(path: Path) -> str:
    """The tag DeepSpeed's ``latest`` file in the checkpoint folder ``path`` names (checked: see :func:`check_tag`)."""
    latest = path / "latest"
    try:
        tag = latest.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatflowError(f"{latest}: unreadable ({exc})") from None
    check_tag(tag, path, latest)
    return tag


def check_tag(tag: str, path: Path, where: Path | None = None) -> None:
    """A checkpoint tag names a folder directly inside the checkpoint folder ``path``: never ``..``, an
    absolute path or a path with separators, which would lead outside it."""
    if not tag or tag in (".", "..") or "/" in tag or "\\" in tag or "\0" in tag:
        raise ChatflowError(f"{where or path}: checkpoint tag {tag!r} does not name a folder inside {path}"
                            + (" (the file is empty: the save that wrote it was cut short?)" if not tag else ""))


def merge_ranks(ranks: list[dict[str, TensorRef]], parallel_dim: Callable[[str], int | None],
                where: str) -> dict[str, TensorRef]:
    """One state dict from tensor-parallel slices: ``parallel_dim(name)`` says which dimension to
    concatenate (None: replicated, rank 0's copy is used). Reading a merged tensor reads its slices."""
    names = list(ranks[0])
    for k, rank in enumerate(ranks[1:], 1):
        if set(rank) != set(names):
            raise ChatflowError(f"{where}: tensor-parallel rank {k} holds other tensors than rank 0 "
                                f"(e.g. {sorted(set(rank) ^ set(names))[0]})")
    merged = {}
    for name in names:
        dim = parallel_dim(name)
        parts = [rank[name] for rank in ranks]
        if dim is None:
            if any(p.shape != parts[0].shape for p in parts):
                raise ChatflowError(f"{where}: replicated tensor {name} differs in shape across ranks")
            merged[name] = parts[0]
            continue
        shape = list(parts[0].shape)
        shape[dim] = sum(p.shape[dim] for p in parts)

        def read(parts=parts, dim=dim):
            return torch.cat([p.read() for p in parts], dim=dim)
        merged[name] = TensorRef(name, tuple(shape), parts[0].dtype, parts[0].path, read)
    return merged


def open_state_dict(path: str | os.PathLike, tag: str | None = None,
                    parallel_dim: Callable[[str], int | None] | None = None) -> dict[str, TensorRef]:
    """Tensor handles of any supported checkpoint file or directory (see the module docstring).

    ``parallel_dim`` lets a DeepSpeed checkpoint of several tensor-parallel ranks be merged
    (see :func:`merge_ranks`); without it such a checkpoint is an error.
    """
    path = Path(path)
    if not path.exists():
        raise ChatflowError(f"{path}: no such file or directory")
    if path.is_file():
        if path.name.endswith(".index.json"):
            return read_index_refs(path)
        return read_file_refs(path)
    for name in INDEX_NAMES:
        if (path / name).is_file():
            return read_index_refs(path / name)
    for name in SINGLE_NAMES:
        if (path / name).is_file():
            return read_file_refs(path / name)
    ranks = resolve_deepspeed(path, tag)
    if len(ranks) == 1:
        return read_torch_refs(ranks[0])
    if ranks:
        if parallel_dim is None:
            raise ChatflowError(f"{path}: {len(ranks)} tensor-parallel ranks (mp_rank_*) and no rule to merge them")
        return merge_ranks([read_torch_refs(r) for r in ranks], parallel_dim, str(path))
    raise ChatflowError(f"{path}: no checkpoint found (looked for {', '.join(INDEX_NAMES + SINGLE_NAMES)}, "
                        "and a DeepSpeed 'latest' / mp_rank_00_model_states.pt)")


# ---- writing ------------------------------------------------------------------------------------

def as_dtype(value) -> torch.dtype | None:
    """An output dtype: ``None``, ``""`` or ``"keep"`` -> None (each tensor keeps its own); a name of
    :data:`DTYPE_NAMES` -> that dtype; a ``torch.dtype`` as it is."""
    if isinstance(value, torch.dtype):
        return value
    if value in (None, "", "keep"):
        return None
    if value not in DTYPE_NAMES:
        raise ChatflowError(f"--dtype {value!r}: choose keep, float32, float16 or bfloat16")
    return DTYPE_NAMES[value]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (as HF configs write ``torch_dtype``)."""
    return str(dtype).removeprefix("torch.")


def progress_bar(total_bytes: int, desc: str, enabled: bool):
    """A tqdm bar over bytes written on stderr (a silent one unless ``enabled``), for the writers' ``progress``."""
    from tqdm import tqdm
    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc, disable=not enabled, file=sys.stderr)


@dataclass
class OutTensor:
    """A tensor to write: its metadata up front, its values from ``produce()`` when its turn comes."""
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    produce: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _itemsize(self.dtype)


def _produced(item: OutTensor) -> torch.Tensor:
    tensor = item.produce().to(item.dtype).contiguous()
    if tuple(tensor.shape) != tuple(item.shape):
        raise ChatflowError(f"tensor {item.name}: produced shape {tuple(tensor.shape)}, planned {tuple(item.shape)}")
    return tensor


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def plan_shards(items: list[OutTensor], max_shard_bytes: int) -> list[list[OutTensor]]:
    """Consecutive groups no larger than ``max_shard_bytes`` (a bigger single tensor gets its own shard)."""
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for item in items:
        if shards[-1] and size + item.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item.nbytes
    return [s for s in shards if s]


def write_safetensors(out_dir: Path, items: list[OutTensor], max_shard_bytes: int, progress=None,
                      metadata: dict | None = None, stem: str = "model") -> list[str]:
    """``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``."""
    shards = plan_shards(items, max_shard_bytes)
    names = ([f"{stem}.safetensors"] if len(shards) == 1 else
             [f"{stem}-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))])
    weight_map = {}
    for name, shard in zip(names, shards):
        header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
        offset = 0
        for item in shard:
            header[item.name] = {"dtype": DTYPE_TO_SAFETENSORS[item.dtype], "shape": list(item.shape),
                                 "data_offsets": [offset, offset + item.nbytes]}
            offset += item.nbytes
            weight_map[item.name] = name
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(out_dir / name, "wb") as handle:
            handle.write(struct.pack("<Q", len(raw)) + raw)
            for item in shard:
                tensor = _produced(item)
                handle.write(_tensor_bytes(tensor))
                if progress is not None:
                    progress.update(item.nbytes)
                del tensor
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(i.nbytes for i in items)}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return names


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _PlannedStorage):
            return ("storage", obj.storage_type, obj.key, "cpu", obj.numel)
        return None


@dataclass
class _PlannedStorage:
    storage_type: type
    key: str
    numel: int


class _PlannedTensor:
    def __init__(self, storage: _PlannedStorage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        import torch._utils
        stride, acc = [], 1
        for size in reversed(self.shape):
            stride.append(acc)
            acc *= size
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, 0, tuple(self.shape), tuple(reversed(stride)), False, collections.OrderedDict()))


def write_torch_file(path, items: list[OutTensor], progress=None) -> None:
    """A ``torch.load``-able ordered state dict, streamed tensor by tensor (same records as ``torch.save``).

    ``path`` is a file name or a seekable binary handle (e.g. from :func:`chatflow_plugin.files.atomic_file`).
    """
    storage_names = {dtype: name for dtype, name in torch.storage._dtype_to_storage_type_map().items()}
    planned = collections.OrderedDict()
    for key, item in enumerate(items):
        storage_type = getattr(torch, storage_names[item.dtype])
        planned[item.name] = _PlannedTensor(_PlannedStorage(storage_type, str(key), math.prod(item.shape)), item.shape)
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(planned)
    prefix = "archive/"
    if isinstance(path, (str, os.PathLike)):
        with open(path, "wb") as raw:
            return write_torch_file(raw, items, progress)
    raw = path
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        archive.writestr(prefix + "data.pkl", buffer.getvalue())
        archive.writestr(prefix + ".format_version", "1")
        archive.writestr(prefix + ".storage_alignment", "64")
        archive.writestr(prefix + "byteorder", "little")
        for key, item in enumerate(items):
            tensor = _produced(item)
            _write_aligned_record(archive, raw, f"{prefix}data/{key}", _tensor_bytes(tensor))
            if progress is not None:
                progress.update(item.nbytes)
            del tensor
        archive.writestr(prefix + "version", "3\n")


def _write_aligned_record(archive: zipfile.ZipFile, raw, name: str, data: memoryview) -> None:
    """A stored record whose data starts on a 64-byte boundary (torch's mmap loading relies on it)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = len(data)
    info.CRC, info.compress_size = 0, 0
    zip64 = len(data) > zipfile.ZIP64_LIMIT
    start = raw.tell()
    header_len = len(info.FileHeader(zip64))
    pad = -(start + header_len + 4) % 64          # 4 = the padding field's own id + length
    info.extra = struct.pack("<HH", 0x4246, pad) + b"\0" * pad   # "FB": the id torch uses for padding
    with archive.open(info, "w", force_zip64=zip64) as handle:
        for begin in range(0, len(data), 64 << 20):
            handle.write(data[begin:begin + (64 << 20)])
