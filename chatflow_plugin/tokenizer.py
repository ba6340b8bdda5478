"""Tokenizers: one interface over a sentencepiece model and a HuggingFace fast tokenizer, loaded with errors
that name the file; sentencepiece models turned into HuggingFace tokenizer files.

Python API (other modules call these)::

    load_tokenizer(path, kind=None) -> Tokenizer   # the rule below; errors name the file
    tokenizer_from_options(tokenizer, spm_model_path, required=True) -> Tokenizer | None   # the two flags
    Tokenizer: kind ("sentencepiece" | "hf"), path, file, sha256, vocab_size, bos_id, eos_id, pad_id, unk_id
        encode(text) -> list[int]                  # no special tokens
        encode_batch(texts) -> list[np.ndarray]    # int64 ids per text, batch-encoded natively
        encode_offsets_batch(texts) -> list[(ids, offsets)]   # offsets (n, 2): [start, end) characters
        decode(ids) -> str; id_to_piece(i); piece_to_id(piece) -> int | None
        padding_id; require_eos() -> int           # the id batches are padded with; EOS or a clear error
        identity() -> dict                         # what a shard manifest records about it
        differs_from(record) -> str | None         # why a recorded identity is another tokenizer
        hf_files(model_max_length) -> (TokenizerFiles, mismatches)   # saved with HF checkpoints
    load_sentencepiece(path) -> sentencepiece.SentencePieceProcessor
    read_sentencepiece_proto(path) -> sentencepiece_model_pb2.ModelProto   # the model's pieces, specs, normalizer
    write_hf_tokenizer_files(sp_model, output_dir, model_max_length=None, warn=False) -> list[str]   # mismatches
    TokenizerFiles                                 # a model directory's tokenizer files, copied as bytes

**Which tokenizer a path names** (every command that takes ``--tokenizer`` follows this rule):

* a directory: its ``tokenizer.json`` if there is one (what ``AutoTokenizer`` runs for that model, added tokens
  included: LLaMA-3, Qwen2, Mistral and converted LLaMA-2 directories all have it), else its
  ``tokenizer.model`` (sentencepiece); a directory with neither is an error naming both;
* a ``.json`` file: a HuggingFace ``tokenizer.json``, its special tokens read from the ``tokenizer_config.json``
  and ``special_tokens_map.json`` beside it;
* any other file: a sentencepiece model (``--spm_model_path`` accepts only this kind).

**Special tokens.** Every document is ``BOS + ids + EOS``, and BOS only where the tokenizer has one:

* sentencepiece: the model's ``bos_id``/``eos_id`` (-1 = none);
* HuggingFace: BOS is what the tokenizer puts in front of a text itself (its ``post_processor`` template,
  or ``add_bos_token`` in ``tokenizer_config.json`` when that is set): ``<|begin_of_text|>`` for LLaMA-3,
  ``<s>`` for LLaMA-2 and Mistral, none for Qwen2; EOS is ``eos_token`` of ``tokenizer_config.json`` (else
  ``special_tokens_map.json``). That is what ``AutoTokenizer(text)["input_ids"]`` starts with (checked in
  ``tests/test_tokenizer.py``).

**Identity.** ``sha256`` is the digest of the file that defines the tokenizer (``tokenizer.model`` or
``tokenizer.json``): a dataset records it with the kind, the ids of BOS and EOS and the vocabulary size, and is
refused by a trainer given a tokenizer whose record differs.

**Encoding speed.** An HF tokenizer is run by the ``tokenizers`` library directly (``encode_batch_fast``:
Rust, no Python per token, no ``transformers`` import); sentencepiece's batch ``encode`` returns numpy arrays.
Both run on the threads their library decides; ``chatflow preprocess`` runs one per worker process
(``TOKENIZERS_PARALLELISM=false`` there), the pool being the parallelism.

Sentencepiece errors: a missing file, a directory, a file that is not a sentencepiece model and (for the
proto) a model without pieces are each a :class:`~chatflow_plugin.errors.ChatflowError` that starts with the
path: ``<path>: sentencepiece model not found`` or ``<path>: not a sentencepiece model (<reason>)``.

**HF tokenizer files of a sentencepiece model.** transformers 5's ``LlamaTokenizer`` builds its pipeline from
``tokenizer.model`` but differs from sentencepiece on leading or repeated spaces and ignores the model's
normalization (NFKC, whitespace collapsing). :func:`write_hf_tokenizer_files` therefore writes, besides
``tokenizer.model``, ``tokenizer_config.json`` and ``special_tokens_map.json``, a ``tokenizer.json``
whose normalizer reproduces the model's ``NormalizerSpec`` (dummy prefix included) and no
pre-tokenizer, loaded as ``PreTrainedTokenizerFast``; the result is compared with sentencepiece on a
mixed English/Chinese probe.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .errors import ChatflowError
from .files import atomic_file, read_json
from .resources import local_model

# English and Chinese, leading, repeated and odd whitespace, digits, emoji, full-width forms, a rare
# character: the cases on which an HF pipeline built naively from a sentencepiece model goes wrong.
_PROBE = ("  Hello world, the model learns 语言 from data.  Two  spaces,\ttabs\nand lines; 数字 12345; "
          "émojis 😀, ｆｕｌｌ-width！ rare 龘 char. 中文和English混合的句子。")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ChatflowError(f"{path}: sentencepiece model not found")
    if path.is_dir():
        raise ChatflowError(f"{path}: not a sentencepiece model (a directory)")


def load_sentencepiece(path: str | os.PathLike):
    """A ``SentencePieceProcessor`` of the model file ``path``; errors name the file."""
    import sentencepiece as spm

    path = Path(path)
    _check_file(path)
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise ChatflowError(f"{path}: not a sentencepiece model ({_first_line(exc)})") from None


def read_sentencepiece_proto(path: str | os.PathLike):
    """The ``ModelProto`` of the model file ``path`` (pieces, trainer and normalizer specs); errors name the file."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(path)
    _check_file(path)
    proto = pb.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:   # protobuf's DecodeError and friends
        raise ChatflowError(f"{path}: not a sentencepiece model ({_first_line(exc)})") from None
    if not proto.pieces:
        raise ChatflowError(f"{path}: sentencepiece model without pieces")
    return proto


def _hf_normalizer(spec):
    """A ``tokenizers`` normalizer reproducing a sentencepiece NormalizerSpec (dummy prefix included)."""
    from tokenizers import Regex, normalizers
    steps = []
    name = spec.name or "identity"
    if name.startswith("nmt_"):
        steps.append(normalizers.Replace(Regex(r"\s"), " "))   # nmt rules map all whitespace to a space
    if "nfkc" in name:
        steps.append(normalizers.NFKC())
    if name.endswith("_cf"):
        steps.append(normalizers.Lowercase())
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip(left=True, right=True)]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(" "))
    steps.append(normalizers.Replace(" ", "▁"))
    return normalizers.Sequence(steps)


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_hf_tokenizer_files(sp_model: str | os.PathLike, output_dir: str | os.PathLike,
                             model_max_length: int | None = None, warn: bool = False) -> list[str]:
    """``tokenizer.model`` + ``tokenizer_config.json`` + ``special_tokens_map.json`` + ``tokenizer.json``
    of the sentencepiece model ``sp_model``, written into the existing directory ``output_dir``.

    ``model_max_length`` (the tokenizer's idea of the context length, which transformers warns against and
    lm-evaluation-harness may fall back to) defaults to the ``max_position_embeddings`` of the ``config.json``
    already in ``output_dir``, else 2048: the model's real context length, never the training sequence length.

    Returns the probe texts on which ``AutoTokenizer`` ids differ from sentencepiece's (empty when they
    agree); ``warn`` also prints a warning naming the first of them on stderr. The files are written in
    place: callers write into a temporary directory that is renamed when complete.
    """
    from transformers import AutoTokenizer

    sp_model, out = Path(sp_model), Path(output_dir)
    if model_max_length is None:
        config_file = out / "config.json"
        positions = read_json(config_file, "HuggingFace config").get("max_position_embeddings") \
            if config_file.is_file() else None
        model_max_length = int(positions or 2048)
    proto = read_sentencepiece_proto(sp_model)
    sp = load_sentencepiece(sp_model)
    shutil.copyfile(sp_model, out / "tokenizer.model")
    special = {}
    for role, index in (("bos_token", sp.bos_id()), ("eos_token", sp.eos_id()), ("unk_token", sp.unk_id()),
                        ("pad_token", sp.pad_id())):
        if index >= 0:
            special[role] = sp.id_to_piece(index)
    config = {
        "tokenizer_class": "LlamaTokenizer", **special,
        "add_bos_token": sp.bos_id() >= 0, "add_eos_token": False, "legacy": False,
        "clean_up_tokenization_spaces": False, "model_max_length": int(model_max_length),
        "padding_side": "right", "sp_model_kwargs": {},
    }
    if "pad_token" not in config:
        config["pad_token"] = None
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", special)
    # the fast pipeline transformers derives from tokenizer.model, with the normalizer replaced
    backend = AutoTokenizer.from_pretrained(str(out)).backend_tokenizer
    backend.normalizer = _hf_normalizer(proto.normalizer_spec)
    backend.pre_tokenizer = None
    backend.save(str(out / "tokenizer.json"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    _write_json(out / "tokenizer_config.json", config)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    mismatches = []
    for text in [_PROBE, *_PROBE.split(" ")]:
        want = ([sp.bos_id()] if sp.bos_id() >= 0 else []) + sp.encode(text)
        if tokenizer(text, verbose=False)["input_ids"] != want:
            mismatches.append(text)
    if warn and mismatches:
        print(f"warning: the HF tokenizer differs from sentencepiece on {len(mismatches)} probe text(s), "
              f"e.g. {mismatches[0]!r}", file=sys.stderr)
    return mismatches


# The files a HuggingFace LLaMA model directory keeps its tokenizer in.
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja")


@dataclass(frozen=True)
class TokenizerFiles:
    """A model directory's tokenizer files (name -> bytes), written as they are into other directories (every
    checkpoint of a run holds its tokenizer)."""

    files: dict[str, bytes]

    @classmethod
    def read(cls, directory: str | os.PathLike, names: Iterable[str] = TOKENIZER_FILES) -> "TokenizerFiles":
        """The files of ``names`` that exist in ``directory``."""
        directory = Path(directory)
        return cls({name: (directory / name).read_bytes() for name in names if (directory / name).is_file()})

    @classmethod
    def from_sentencepiece(cls, spm_model: str | os.PathLike, model_max_length: int
                           ) -> tuple["TokenizerFiles", list[str]]:
        """The HF tokenizer files of a sentencepiece model, and the probe texts on which they differ from it."""
        with tempfile.TemporaryDirectory(prefix="chatflow-tokenizer-") as tmp:
            mismatches = write_hf_tokenizer_files(spm_model, tmp, model_max_length=model_max_length)
            return cls.read(tmp, sorted(os.listdir(tmp))), mismatches

    def write(self, directory: str | os.PathLike) -> None:
        for name, data in self.files.items():
            with atomic_file(Path(directory) / name, "wb") as handle:
                handle.write(data)


# ---- one interface over both kinds ----------------------------------------------------------------------

SENTENCEPIECE, HF = "sentencepiece", "hf"
KINDS = (SENTENCEPIECE, HF)
HF_TOKENIZER_JSON = "tokenizer.json"
SPM_FILE = "tokenizer.model"


def _as_int64(ids) -> "np.ndarray":
    import numpy as np
    return np.asarray(ids, dtype=np.int64)


class Tokenizer:
    """A tokenizer of either kind behind one interface (see the module docstring)."""

    kind: str
    path: Path           # what was given: a file or a directory
    file: Path           # the file that defines it (tokenizer.model or tokenizer.json)
    vocab_size: int      # ids 0 .. vocab_size-1 (added tokens included)
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    unk_id: int | None

    _sha256: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            from .files import sha256_file
            self._sha256 = sha256_file(self.file)
        return self._sha256

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list:
        raise NotImplementedError

    def encode_offsets_batch(self, texts: list[str]) -> list[tuple]:
        raise NotImplementedError

    def encode_with_offsets(self, text: str) -> tuple:
        """Ids and (n, 2) character spans ``[start, end)`` of each token."""
        return self.encode_offsets_batch([text])[0]

    def decode(self, ids) -> str:
        raise NotImplementedError

    def id_to_piece(self, index: int) -> str:
        raise NotImplementedError

    def piece_to_id(self, piece: str) -> int | None:
        raise NotImplementedError

    def hf_files(self, model_max_length: int) -> tuple["TokenizerFiles", list[str]]:
        """The HuggingFace tokenizer files of this tokenizer (saved with every checkpoint), and the probe texts on
        which they encode differently from it (always none for the HF kind: they are its own files)."""
        raise NotImplementedError

    @property
    def padding_id(self) -> int:
        """The id batches are padded with (never attended to, never a target): PAD, else UNK, else EOS."""
        for index in (self.pad_id, self.unk_id, self.eos_id):
            if index is not None:
                return index
        return 0

    def require_eos(self) -> int:
        if self.eos_id is None:
            raise ChatflowError(f"{self.path}: the tokenizer has no EOS token (it ends every document)"
                                + ("; set eos_token in tokenizer_config.json" if self.kind == HF else ""))
        return self.eos_id

    def identity(self) -> dict:
        """What a dataset manifest records about the tokenizer (``data/README.md``, table ``tokenizer``)."""
        return {"kind": self.kind, "path": str(self.path.resolve()), "file": str(self.file.resolve()),
                "sha256": self.sha256, "vocab_size": self.vocab_size, "bos_id": self.bos_id, "eos_id": self.eos_id}

    def differs_from(self, record: dict) -> str | None:
        """None when ``record`` (a manifest's ``tokenizer``) is this tokenizer, else what differs. A record
        without ``kind`` was written before HF tokenizers were read, by a sentencepiece model."""
        kind = record.get("kind", SENTENCEPIECE)
        if kind != self.kind or record.get("sha256") != self.sha256:
            return (f"{record.get('path')} ({kind}, sha256 {str(record.get('sha256'))[:12]}), not {self.path} "
                    f"({self.kind}, sha256 {self.sha256[:12]})")
        for key in ("bos_id", "eos_id"):
            if key in record and record[key] is not None and record[key] >= 0 and record[key] != getattr(self, key):
                return f"{record.get('path')} with {key} {record[key]}, not {getattr(self, key)} as {self.path} says"
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} ({self.vocab_size} ids)>"


class SentencePieceTokenizer(Tokenizer):
    kind = SENTENCEPIECE

    def __init__(self, path: str | os.PathLike):
        self.path = self.file = Path(path)
        self.sp = load_sentencepiece(self.path)
        sp = self.sp
        self.vocab_size = sp.get_piece_size()
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = (
            i if i >= 0 else None for i in (sp.bos_id(), sp.eos_id(), sp.pad_id(), sp.unk_id()))

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list:
        try:
            return self.sp.encode(texts, num_threads=1, return_type="numpy")
        except (TypeError, ValueError):   # sentencepiece < 0.2.1
            return [_as_int64(ids) for ids in self.sp.encode(texts, num_threads=1)]

    def encode_offsets_batch(self, texts: list[str]) -> list[tuple]:
        import numpy as np
        return [(_as_int64(enc["ids"]), np.asarray(enc["offsets"], dtype=np.int64).reshape(-1, 2))
                for enc in self.sp.encode(texts, num_threads=1, return_type="offset_mapping")]

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) for i in ids])

    def id_to_piece(self, index: int) -> str:
        return self.sp.id_to_piece(int(index))

    def piece_to_id(self, piece: str) -> int | None:
        index = self.sp.piece_to_id(piece)
        return None if index == self.sp.unk_id() and piece != self.sp.id_to_piece(index) else index

    def hf_files(self, model_max_length: int) -> tuple["TokenizerFiles", list[str]]:
        return TokenizerFiles.from_sentencepiece(self.path, model_max_length)


def _token_content(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or ``{"content": ...}``."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


class HFTokenizer(Tokenizer):
    """A ``tokenizer.json`` run by the ``tokenizers`` library, special tokens from the files beside it."""

    kind = HF

    def __init__(self, path: str | os.PathLike, file: str | os.PathLike):
        try:
            from tokenizers import Tokenizer as Backend
        except ImportError:
            raise ChatflowError(f"{file}: reading a HuggingFace tokenizer needs the tokenizers library "
                                "(pip install 'chatflow-plugin[hf]')") from None
        self.path, self.file = Path(path), Path(file)
        try:
            self.backend = Backend.from_file(str(self.file))
        except Exception as exc:   # tokenizers raises a bare Exception for bad JSON or an unknown model
            raise ChatflowError(f"{self.file}: not a HuggingFace tokenizer.json ({_first_line(exc)})") from None
        folder = self.file.parent
        self.config = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):   # the config wins
            if (folder / name).is_file():
                value = read_json(folder / name, "HuggingFace tokenizer config")
                self.config.update({k: v for k, v in value.items() if v is not None or k not in self.config})
        ids = self.backend.get_vocab(with_added_tokens=True).values()
        self.vocab_size = max(ids) + 1 if ids else 0     # rows an embedding needs, even if some ids are unused
        self.eos_id = self._special("eos_token")
        self.pad_id = self._special("pad_token")
        self.unk_id = self._special("unk_token")
        self.bos_id = self._bos()
        self._fast = hasattr(self.backend, "encode_batch_fast")

    def _special(self, role: str) -> int | None:
        token = _token_content(self.config.get(role))
        if token is None:
            return None
        index = self.backend.token_to_id(token)
        if index is None:
            raise ChatflowError(f"{self.file.parent}: {role} {token!r} of tokenizer_config.json is not a token of "
                                f"{self.file.name}")
        return index

    def _bos(self) -> int | None:
        """The BOS the tokenizer itself puts in front of a text (see the module docstring)."""
        explicit = self.config.get("add_bos_token")
        if explicit is False:
            return None
        bos = self._special("bos_token")
        if explicit is True:
            if bos is None:
                raise ChatflowError(f"{self.file.parent}: add_bos_token is set but there is no bos_token")
            return bos
        plain = self.backend.encode("a", add_special_tokens=False).ids
        full = self.backend.encode("a", add_special_tokens=True).ids
        prefix = []
        for end in range(len(full) - len(plain) + 1):       # a template may also append (EOS): find the text
            if full[end:end + len(plain)] == plain:
                prefix = full[:end]
                break
        if len(prefix) > 1:
            raise ChatflowError(f"{self.file}: the tokenizer puts {len(prefix)} tokens before every text "
                                f"({prefix}); one BOS token is supported")
        return prefix[0] if prefix else None

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list:
        encode = self.backend.encode_batch_fast if self._fast else self.backend.encode_batch
        return [_as_int64(enc.ids) for enc in encode(texts, add_special_tokens=False)]

    def encode_offsets_batch(self, texts: list[str]) -> list[tuple]:
        import numpy as np
        return [(_as_int64(enc.ids), np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2))
                for enc in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def id_to_piece(self, index: int) -> str:
        return self.backend.id_to_token(int(index))

    def piece_to_id(self, piece: str) -> int | None:
        return self.backend.token_to_id(piece)

    def hf_files(self, model_max_length: int) -> tuple["TokenizerFiles", list[str]]:
        if self.file.name == HF_TOKENIZER_JSON:
            files = TokenizerFiles.read(self.file.parent)
        else:
            files = TokenizerFiles({HF_TOKENIZER_JSON: self.file.read_bytes()})
        if "tokenizer_config.json" not in files.files:
            config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": int(model_max_length),
                      "clean_up_tokenization_spaces": False}
            for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
                if _token_content(self.config.get(role)):
                    config[role] = _token_content(self.config.get(role))
            files.files["tokenizer_config.json"] = (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode()
        return files, []


def _is_json_file(path: Path) -> bool:
    if path.suffix.lower() == ".json":
        return True
    with open(path, "rb") as handle:
        return handle.read(64).lstrip()[:1] == b"{"


def load_tokenizer(path: str | os.PathLike, kind: str | None = None) -> Tokenizer:
    """The tokenizer ``path`` names (the rule of the module docstring); ``kind`` ("sentencepiece" or "hf")
    insists on one kind, as ``--spm_model_path`` does."""
    path = local_model(path, "tokenizer")     # a Hugging Face Hub id: its folder in the local cache
    if kind not in (None, *KINDS):
        raise ChatflowError(f"unknown tokenizer kind {kind!r} (choose from {', '.join(KINDS)})")
    if not path.exists():
        raise ChatflowError(f"{path}: tokenizer not found (a sentencepiece model, a tokenizer.json, or a "
                            "directory holding one)")
    if path.is_dir():
        if (path / HF_TOKENIZER_JSON).is_file() and kind != SENTENCEPIECE:
            return HFTokenizer(path, path / HF_TOKENIZER_JSON)
        if (path / SPM_FILE).is_file() and kind != HF:
            return SentencePieceTokenizer(path / SPM_FILE)
        wanted = {None: f"{HF_TOKENIZER_JSON} or {SPM_FILE}", HF: HF_TOKENIZER_JSON, SENTENCEPIECE: SPM_FILE}[kind]
        hint = ("; vocab.json + merges.txt alone are a slow tokenizer: save it once with "
                "AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR) to get tokenizer.json"
                if (path / "vocab.json").is_file() else "")
        raise ChatflowError(f"{path}: no tokenizer in this directory (expected {wanted}){hint}")
    if _is_json_file(path):
        if kind == SENTENCEPIECE:
            raise ChatflowError(f"{path}: a HuggingFace tokenizer.json, not a sentencepiece model (use --tokenizer)")
        return HFTokenizer(path, path)
    if kind == HF:
        raise ChatflowError(f"{path}: expected a HuggingFace tokenizer.json or a directory holding one")
    return SentencePieceTokenizer(path)


def as_tokenizer(value: "str | os.PathLike | Tokenizer") -> Tokenizer:
    """A :class:`Tokenizer` as it is, or the one a path names."""
    return value if isinstance(value, Tokenizer) else load_tokenizer(value)


def tokenizer_from_options(tokenizer: str | None, spm_model_path: str | None, required: bool = True
                           ) -> Tokenizer | None:
    """The tokenizer of a command's ``--tokenizer`` or ``--spm_model_path`` (the sentencepiece-only spelling):
    at most one of them, and one of them when ``required``."""
    if tokenizer and spm_model_path:
        raise ChatflowError("give the tokenizer with --tokenizer or --spm_model_path, not both")
    if not tokenizer and not spm_model_path:
        if required:
            raise ChatflowError("give the tokenizer with --tokenizer PATH (a sentencepiece model, a tokenizer.json or "
                                "a model directory; --spm_model_path also takes a sentencepiece model)")
        return None
    return load_tokenizer(tokenizer) if tokenizer else load_tokenizer(spm_model_path, SENTENCEPIECE)
