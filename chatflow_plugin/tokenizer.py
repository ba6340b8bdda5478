"""Sentencepiece models: loaded with errors that name the file, and turned into HuggingFace tokenizer files.

Python API (other modules call these)::

    load_sentencepiece(path) -> sentencepiece.SentencePieceProcessor
    read_sentencepiece_proto(path) -> sentencepiece_model_pb2.ModelProto   # the model's pieces, specs, normalizer
    write_hf_tokenizer_files(sp_model, output_dir, model_max_length=None, warn=False) -> list[str]   # mismatches

A missing file, a directory, a file that is not a sentencepiece model and (for the proto) a model
without pieces are each a :class:`~chatflow_plugin.errors.ChatflowError` that starts with the path:
``<path>: sentencepiece model not found`` or ``<path>: not a sentencepiece model (<reason>)``.

**HF tokenizer files.** transformers 5's ``LlamaTokenizer`` builds its pipeline from ``tokenizer.model``
but differs from sentencepiece on leading or repeated spaces and ignores the model's normalization
(NFKC, whitespace collapsing). :func:`write_hf_tokenizer_files` therefore writes, besides
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
                   "added_tokens.json")


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
