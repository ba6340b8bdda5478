"""Vocabulary expansion: append pieces to a tokenizer (sentencepiece or byte-level BPE) and grow the weights.

ChatFlow extends LLaMA's 32,000 pieces with 8,701 Chinese characters and 62 symbols and initialises each
new input-embedding row and output row with the mean of the rows of the tokens the ORIGINAL tokenizer
splits that piece into. The same recipe runs here for the tokenizers models ship today: a sentencepiece model
(LLaMA-2, ChatFlow's case) or a byte-level BPE ``tokenizer.json`` (LLaMA-3, Qwen2, GPT-2 style).

Python API (other modules call these)::

    read_piece_file(path) -> list[str]
    mine_pieces(corpora, tokenizer, scripts=("cjk",), min_count=1, max_new_pieces=None) -> list[tuple[str, int]]
    mine_symbols(corpora, tokenizer, max_new_pieces=None, min_documents=1) -> list[tuple[str, int]]
    expand_tokenizer(tokenizer, new_pieces, output, strategy=None, pad_to_multiple=None, ...) -> TokenizerExpansion
    expand_sentencepiece(base_model, new_pieces, output_model, pad_to_multiple=None, new_piece_score=None)
    expand_byte_bpe(base_dir, new_pieces, output_dir, strategy="added_tokens", pad_to_multiple=None, force=False)
    mean_init_ids(base, expanded) -> list[list[int]]    # one list per new id; [] = fallback
    expand_rows(matrix, id_lists, start=None) -> Tensor  # rows start.. = one mean row per list
    expand_checkpoint_rows(checkpoint, output, base, expanded, tp_config=None, dtype=None,
                           force=False, max_shard_size="5GB") -> RowExpansion

Pieces are text; in piece files and sentencepiece models a space is written "▁" (sentencepiece's space).
File pieces come first, then mined ones by descending count, ties by code point. Mining takes the characters
of the scripts a language of :mod:`chatflow_plugin.languages` is written with (``--language ja``: Han, kana and
CJK punctuation) that the tokenizer does not already encode as one token.

**Sentencepiece.** The model proto is edited with ``sentencepiece.sentencepiece_model_pb2`` (shipped with
sentencepiece; needs ``protobuf``). Old pieces keep ids, types and scores; new pieces are appended as
NORMAL pieces in the given order. A new piece's score is 0.0 for BPE models (the highest merge priority: LLaMA's
scores are negative ranks; Chinese-LLaMA uses the same) and, for unigram models, the lowest existing piece score.
Skipped and reported: empty or whitespace-only pieces, duplicates, pieces already in the model, and
pieces the expanded model would still not produce as one token (normalization rewrites them, or a BPE
model has no merge path to them, e.g. a multi-character word whose prefixes are not pieces). Padding to
a multiple adds ``<reserved_N>`` pieces of type UNUSED, which encoding never produces.

**Byte-level BPE** (a ``tokenizer.json`` whose pre-tokenizer maps bytes to characters, as GPT-2 does). Old ids,
old merges and the pre-tokenizer stay as they are; new ids follow the last old id (added tokens such as
LLaMA-3's ``<|begin_of_text|>`` included). Two ways to make a new piece one token, ``--strategy``:

* ``added_tokens`` (the default): the piece becomes a non-special added token, matched in the text before
  pre-tokenization wherever it occurs: always produced, and text without it is untouched. Around it the text
  is pre-tokenized in two parts, so an old token spanning it (LLaMA-3's "中国" once 中 is added) is no longer
  produced.
* ``merges``: the piece enters the BPE vocabulary with ONE new merge of the two tokens the tokenizer splits it
  into, placed first in the merge list (the highest priority). A merge of two tokens fires only where both stand
  next to each other, i.e. where the text holds the piece's bytes, so text without new pieces is encoded exactly
  as before; inside a word it competes with the old merges like any learnt token. Pieces are taken in rounds
  (one split into three tokens becomes reachable once a new piece covers two of them: "東京" after "東"); a piece
  left with more than two tokens is skipped, since an intermediate merge of partial bytes would change the
  encoding of other characters that share them.

Why ``added_tokens`` is the default, measured by ``benchmarks/bench_vocab_bpe.py`` on held-out Chinese paragraphs
(docs/vocab_and_conversion.md has the tables): for an English-first byte-level BPE (16k, 5 % Chinese training
text) it adds every mined character (merges: 66 %, the rest are three single bytes to the tokenizer) and brings
1.44 tokens per character to 0.95 (merges: 1.12; LLaMA-2-style sentencepiece + ChatFlow's expansion: 0.97); for
a tokenizer that already holds many Chinese merges the two are close (0.846 vs 0.852). Both produce the added
pieces as single tokens (100 % and 99.5-99.9 % of their occurrences), leave text without new pieces untouched
and encode at the same speed. ``merges`` stays for pieces that must live in the BPE model itself (later merges
building on them, tools that drop added tokens). Padding to a multiple adds ``<|reserved_N|>`` special tokens.
Other HF tokenizers (a sentencepiece-derived ``tokenizer.json`` of LLaMA-2 or Mistral) are expanded through
their ``tokenizer.model``: the error message says so.

**Mean initialisation.** For each new piece the ids are the ORIGINAL tokenizer's encoding of the piece (spaces
as spaces) with (1) a leading token that is only whitespace removed when the piece itself does not start
with whitespace (sentencepiece's dummy-prefix "▁", a prefix space) and (2) the unknown id removed (it says
nothing about the piece); byte tokens (sentencepiece's byte fallback, byte-level BPE's byte characters) are kept.
If nothing remains (and for reserved pieces) the row is the mean of all old rows. Means are computed in float32
and cast to the checkpoint's dtype. Tied embeddings (no ``lm_head.weight``) have one matrix to grow. A
checkpoint with more rows than the tokenizer has ids (Qwen2 pads its embedding) keeps its extra rows: new ids
take the first of them, and the matrix grows only past its end.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import shutil
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..data.inputs import COLUMNAR, detect, iter_json_records, text_blocks, text_name
from ..resources import named, not_found_hint
from ..files import atomic_file, json_strings, read_json
from ..errors import ChatflowError, DataError
from ..languages import get_language, in_scripts, script_names
from ..outputs import (OutputKind, atomic_directory, check_not_input, check_replaceable, output_lock,
                       remove_leftovers, write_last)
from ..options import option
from ..tokenizer import (HF, SENTENCEPIECE, HFTokenizer, Tokenizer, as_tokenizer, load_tokenizer, read_sentencepiece_proto)

RESERVED_PIECE = "<reserved_{}>"
RESERVED_TOKEN = "<|reserved_{}|>"      # byte-level BPE padding: special added tokens
SPACE = "▁"
STRATEGIES = ("added_tokens", "merges")
DEFAULT_STRATEGY = "added_tokens"      # why: the module docstring and docs/vocab_and_conversion.md
TOKENIZER_KIND = OutputKind("tokenizer", folders=())   # an expanded tokenizer directory: files only


def _processor(proto):
    """A SentencePieceProcessor of a ``ModelProto`` built in memory."""
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString(deterministic=True))


# ---- new pieces: from files and corpora ---------------------------------------------------------

def read_piece_file(path: str | os.PathLike) -> list[str]:
    """One piece per line (UTF-8). A tab ends the piece (a count or score after it is ignored); spaces
    inside a piece become "▁", sentencepiece's space; a line starting with "#" is a comment (so a piece cannot
    start with "#"). Empty/whitespace-only lines are kept as "" so that :func:`expand_sentencepiece` reports
    them."""
    path = named("pieces", path)        # or a packaged file's name: chatflow_62_symbols
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ChatflowError(f"{path}: piece file not found {not_found_hint('pieces')}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason} at byte {exc.start})", str(path)) from None
    except IsADirectoryError:
        raise ChatflowError(f"--pieces {path} is a folder; give a file of pieces, one per line") from None
    except OSError as exc:
        raise ChatflowError(f"--pieces {path}: cannot read it ({exc.strerror})") from None
    pieces = []
    for line in lines:
        piece = line.split("\t", 1)[0].lstrip("\ufeff")
        if piece.startswith("#"):
            continue
        pieces.append("" if not piece.strip() else piece.replace(" ", SPACE))
    return pieces


def _corpus_documents(path: Path):
    """The documents of a corpus file, each as one string: the lines of a text file; the records of a ``.jsonl``
    file, a parquet or Arrow file or a ``datasets`` folder and the items of a ``.json`` list (or the whole ``.json``
    value), every string field joined by newlines. Compressed files are read by content, as a stream
    (:mod:`chatflow_plugin.data.inputs`)."""
    try:
        if not path.exists():
            raise FileNotFoundError(path)
        kind = "datasets" if path.is_dir() else detect(path)
        if kind == "datasets" or kind in COLUMNAR or text_name(path).endswith(".jsonl"):
            for where, record in iter_json_records(path):
                if isinstance(record, DataError):
                    raise DataError(record.reason, where)
                yield "\n".join(json_strings(record))
            return
        if path.suffix == ".json":
            with open(path, encoding="utf-8") as handle:
                try:
                    value = json.load(handle)
                except ValueError as exc:
                    raise DataError(f"not JSON ({exc})", str(path)) from None
            for item in value if isinstance(value, list) else [value]:
                yield "\n".join(json_strings(item))
            return
        for _, _, block in text_blocks(path, kind, 1 << 22):
            yield from block.decode("utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        raise ChatflowError(f"{path}: corpus not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason})", str(path)) from None


def mine_pieces(corpora, tokenizer, scripts=("cjk",), min_count: int = 1,
                max_new_pieces: int | None = None) -> list[tuple[str, int]]:
    """Characters of ``scripts`` (names of :data:`chatflow_plugin.languages.SCRIPTS`: ``cjk``, ``cjk_punct``,
    ``Thai`` ...) in the corpora that ``tokenizer`` (a path or a Tokenizer) does not already have as one token,
    most frequent first (ties by code point), with their counts; at least ``min_count`` occurrences, at most
    ``max_new_pieces`` of them."""
    if max_new_pieces is not None and max_new_pieces < 0:
        raise ChatflowError(f"max_new_pieces must be 0 or more, got {max_new_pieces}")
    wanted = in_scripts(scripts)
    counts: Counter = Counter()
    for corpus in corpora:
        for text in _corpus_documents(Path(corpus)):
            counts.update(text)                  # every character (C speed), filtered once at the end
    return _ranked(Counter({ch: n for ch, n in counts.items() if wanted(ch)}), as_tokenizer(tokenizer), min_count,
                   max_new_pieces)


def _ranked(counts: Counter, tok: Tokenizer, min_count: int, limit: int | None) -> list[tuple[str, int]]:
    """Characters that ``tok`` does not already have as one token, most counted first (ties by code point)."""
    present = _present(tok, [ch for ch, n in counts.items() if n >= min_count])
    ranked = sorted(((ch, n) for ch, n in counts.items() if n >= min_count and ch not in present),
                    key=lambda item: (-item[1], ord(item[0])))
    return ranked[:limit] if limit is not None else ranked


_IDEOGRAPH = in_scripts(("cjk",))   # the table's CJK ideograph ranges (chatflow_plugin.languages)


def is_symbol(ch: str) -> bool:
    """A non-letter character of the Basic Multilingual Plane that is not a CJK ideograph: Unicode punctuation
    (P*), symbols (S*) or numbers (N*), e.g. full-width punctuation, CJK brackets and marks, circled digits."""
    return (len(ch) == 1 and ord(ch) <= 0xFFFF and unicodedata.category(ch)[0] in "PSN"
            and not _IDEOGRAPH(ch))


def mine_symbols(corpora, tokenizer, max_new_pieces: int | None = None,
                 min_documents: int = 1) -> list[tuple[str, int]]:
    """The rule of ``models/chatflow_62_symbols.txt``: :func:`is_symbol` characters that are not single tokens
    of ``tokenizer`` (a path or a Tokenizer; it would spell them in UTF-8 bytes), ranked by the number of documents of the corpora
    containing them (so one page's bullets cannot outrank a mark every page uses), ties by code point; with
    those numbers."""
    documents: Counter = Counter()
    for corpus in corpora:
        for text in _corpus_documents(Path(corpus)):
            documents.update(set(text))
    return _ranked(Counter({ch: n for ch, n in documents.items() if is_symbol(ch)}), as_tokenizer(tokenizer),
                   min_documents, max_new_pieces)


def _present(tok: Tokenizer, candidates: list[str]) -> set[str]:
    """The candidates the tokenizer already has: sentencepiece pieces, or text an HF tokenizer encodes as one token."""
    if tok.kind == SENTENCEPIECE:
        return {p.piece for p in read_sentencepiece_proto(tok.file).pieces}
    return {text for text in candidates if len(_piece_ids(tok, text, drop_unknown=False)) == 1}


def _piece_ids(tok: Tokenizer, text: str, drop_unknown: bool = True) -> list[int]:
    """The ids ``tok`` encodes a piece's text into, without the whitespace-only token a prefix space (or
    sentencepiece's dummy prefix) puts before a piece that does not start with whitespace."""
    ids = tok.encode(text)
    if len(ids) > 1 and not text[:1].isspace():
        if tok.kind == SENTENCEPIECE:
            lone = tok.id_to_piece(ids[0]) == SPACE
        else:
            first = tok.decode([ids[0]])
            lone = first != "" and not first.strip()
        if lone:
            ids = ids[1:]
    return [i for i in ids if not (drop_unknown and i == tok.unk_id)]


# ---- tokenizer expansion ------------------------------------------------------------------------

@dataclass
class TokenizerExpansion:
    """What :func:`expand_sentencepiece` or :func:`expand_byte_bpe` did."""
    output: Path
    base_size: int
    size: int
    added: list[str]
    reserved: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    strategy: str | None = None     # byte-level BPE: "merges" or "added_tokens"

    def summary(self) -> str:
        how = f", as {self.strategy.replace('_', ' ')}" if self.strategy else ""
        lines = [f"{self.output}: {self.base_size} -> {self.size} pieces "
                 f"({len(self.added)} added{how}, {self.reserved} reserved for padding)"]
        for reason, pieces in self.skipped.items():
            if pieces:
                shown = " ".join(repr(p) for p in pieces[:10])
                lines.append(f"  skipped {len(pieces)} {reason}: {shown}{' ...' if len(pieces) > 10 else ''}")
        return "\n".join(lines)


UNREACHABLE = "that would not tokenize as one token"


def _candidates(new_pieces, present) -> tuple[list[str], dict[str, list[str]]]:
    """The new pieces to try, in order, and the ones skipped at once (by reason)."""
    skipped: dict[str, list[str]] = {"empty or whitespace-only": [], "duplicates": [], "already in the model": [],
                                     UNREACHABLE: []}
    candidates, seen = [], set()
    for piece in new_pieces:
        if not piece.replace(SPACE, " ").strip():
            skipped["empty or whitespace-only"].append(piece)
        elif piece in seen:
            skipped["duplicates"].append(piece)
        elif present(piece):
            skipped["already in the model"].append(piece)
        else:
            seen.add(piece)
            candidates.append(piece)
    return candidates, skipped


def _reserved_names(count: int, template: str, taken) -> list[str]:
    """``count`` padding names of ``template`` not in ``taken``."""
    names, k = [], 0
    while len(names) < count:
        if template.format(k) not in taken:
            names.append(template.format(k))
        k += 1
    return names


def _padding(size: int, pad_to_multiple: int | None) -> int:
    if pad_to_multiple is None:
        return 0
    if pad_to_multiple < 1:
        raise ChatflowError(f"--pad_to_multiple must be positive, got {pad_to_multiple}")
    return -size % pad_to_multiple


def _single_token(sp, piece: str) -> bool:
    ids = sp.encode(piece.replace(SPACE, " "))
    space = sp.piece_to_id(SPACE)
    if ids and not piece.startswith(SPACE) and ids[0] == space and sp.id_to_piece(space) == SPACE:
        ids = ids[1:]
    return ids == [sp.piece_to_id(piece)]


def expand_sentencepiece(base_model, new_pieces, output_model, pad_to_multiple: int | None = None,
                         new_piece_score: float | None = None) -> TokenizerExpansion:
    """Append ``new_pieces`` to ``base_model`` and write ``output_model`` (atomically, deterministic bytes)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = read_sentencepiece_proto(base_model)
    base_size = len(proto.pieces)
    present = {p.piece for p in proto.pieces}
    is_bpe = proto.trainer_spec.model_type == pb.TrainerSpec.BPE
    if new_piece_score is None:
        normal = [p.score for p in proto.pieces if p.type == pb.ModelProto.SentencePiece.NORMAL]
        new_piece_score = 0.0 if is_bpe else (min(normal) if normal else 0.0)
    candidates, skipped = _candidates(new_pieces, present.__contains__)

    def build(pieces: list[str]):
        out = pb.ModelProto()
        out.CopyFrom(proto)
        for piece in pieces:
            out.pieces.add(piece=piece, score=new_piece_score, type=pb.ModelProto.SentencePiece.NORMAL)
        return out

    # Drop pieces the expanded model cannot produce as one token; repeat, since a dropped piece can be
    # another one's only BPE merge path.
    while True:
        sp = _processor(build(candidates))
        unreachable = [p for p in candidates if not _single_token(sp, p)]
        if not unreachable:
            break
        skipped[UNREACHABLE] += unreachable
        dropped = set(unreachable)
        candidates = [p for p in candidates if p not in dropped]
    expanded = build(candidates)
    reserved = _padding(len(expanded.pieces), pad_to_multiple)
    for name in _reserved_names(reserved, RESERVED_PIECE, {p.piece for p in expanded.pieces}):
        expanded.pieces.add(piece=name, score=0.0, type=pb.ModelProto.SentencePiece.UNUSED)
    output_model = Path(output_model)
    with atomic_file(output_model, "wb") as handle:
        handle.write(expanded.SerializeToString(deterministic=True))
    return TokenizerExpansion(output_model, base_size, len(expanded.pieces), candidates, reserved, skipped)


# ---- byte-level BPE (tokenizer.json) --------------------------------------------------------------

def byte_to_char() -> dict[int, str]:
    """The byte -> character table of byte-level BPE (GPT-2's ``bytes_to_unicode``, kept by LLaMA-3 and Qwen2):
    the printable Latin-1 bytes stand for themselves, the other bytes, in order, for U+0100 onwards."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(0x100 + extra)
            extra += 1
    return table


def _components(node):
    """A tokenizer.json component and, for a Sequence, its members (recursively)."""
    if isinstance(node, dict):
        yield node
        for key in ("pretokenizers", "decoders", "processors", "normalizers"):
            for child in node.get(key) or []:
                yield from _components(child)


def _byte_level_bpe(tok: HFTokenizer) -> dict:
    """The tokenizer.json of a byte-level BPE tokenizer, parsed; anything else is a clear error."""
    data = json.loads(tok.file.read_text(encoding="utf-8"))
    model_type = (data.get("model") or {}).get("type")
    byte_level = any(c.get("type") == "ByteLevel" for part in ("pre_tokenizer", "decoder")
                     for c in _components(data.get(part)))
    if model_type != "BPE" or not byte_level:
        spm_file = tok.file.parent / "tokenizer.model"
        hint = (f"; it comes from a sentencepiece model: expand that one (--tokenizer {spm_file})"
                if spm_file.is_file() else "")
        raise ChatflowError(f"{tok.file}: expand-vocab expands sentencepiece models and byte-level BPE tokenizer.json "
                            f"files (LLaMA-3, Qwen2, GPT-2 style); this is a {model_type} model "
                            f"{'with' if byte_level else 'without'} a ByteLevel pre-tokenizer{hint}")
    return data


def _backend(data: dict):
    from tokenizers import Tokenizer as Backend
    return Backend.from_str(json.dumps(data, ensure_ascii=False))


@dataclass(frozen=True)
class _NewToken:
    piece: str                          # as given (a space written "▁")
    text: str                           # what it matches in text
    form: str = ""                      # merges: its BPE vocabulary entry (byte characters)
    pair: tuple[str, str] | None = None  # merges: the two tokens it is merged from


def _build_byte_bpe(base: dict, new: list[_NewToken], strategy: str, reserved: list[str] = ()) -> tuple[dict, int]:
    """A copy of the tokenizer.json ``base`` with the new tokens (ids from the first free id on, in order) and
    the reserved padding tokens after them; and that first new id."""
    data = copy.deepcopy(base)
    model = data["model"]
    next_id = 1 + max([*model["vocab"].values(), *(t["id"] for t in data.get("added_tokens") or [])])
    first = next_id
    added = data.setdefault("added_tokens", [])
    old_merges = model.get("merges") or []
    as_list = not old_merges or isinstance(old_merges[0], list)
    merges = []
    if strategy == "merges":
        # tokenizers renumbers an added token that the model's vocabulary lacks to follow the vocabulary, which now
        # grows: entered in the vocabulary under their ids, LLaMA-3's special tokens keep them (ids after the old
        # tokens, so the model never produces them from merges)
        for token in added:
            model["vocab"].setdefault(token["content"], token["id"])
    for token in new:
        if strategy == "merges":
            model["vocab"][token.form] = next_id
            left, right = token.pair
            merges.append([left, right] if as_list else f"{left} {right}")
        else:
            added.append({"id": next_id, "content": token.text, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": True, "special": False})
        next_id += 1
    model["merges"] = merges + old_merges       # first = the highest priority
    for name in reserved:
        added.append({"id": next_id, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        if strategy == "merges":
            model["vocab"][name] = next_id
        next_id += 1
    return data, first


def _merge_candidates(base: dict, pieces: list[str], normalize) -> tuple[list[_NewToken], list[str]]:
    """The pieces that one merge of two tokens makes single tokens, found in rounds (a piece the original splits
    into three tokens may need another new piece first), and the pieces left over."""
    table = byte_to_char()
    found: list[_NewToken] = []
    pending = list(pieces)
    while pending:
        backend = _backend(_build_byte_bpe(base, found, "merges")[0])
        taken = {t.form for t in found}
        progress, rest = [], []
        for piece in pending:
            text = piece.replace(SPACE, " ")
            form = "".join(table[b] for b in normalize(text).encode("utf-8"))
            tokens = backend.encode(text, add_special_tokens=False).tokens
            if len(tokens) == 2 and "".join(tokens) == form and form not in taken:
                progress.append(_NewToken(piece, text, form, (tokens[0], tokens[1])))
                taken.add(form)
            else:
                rest.append(piece)
        if not progress:
            break
        found += progress
        pending = rest
    return found, pending


def expand_byte_bpe(base, new_pieces, output_dir, strategy: str = "added_tokens", pad_to_multiple: int | None = None,
                    force: bool = False) -> TokenizerExpansion:
    """Append ``new_pieces`` to the byte-level BPE tokenizer ``base`` (a directory or tokenizer.json) and write
    ``output_dir`` (tokenizer.json, tokenizer_config.json, special_tokens_map.json ...; atomically). See the
    module docstring for the two strategies."""
    tok = as_tokenizer(base)
    if tok.kind != HF:
        raise ChatflowError(f"{tok.path}: a sentencepiece model; expand it with expand_sentencepiece")
    if strategy not in STRATEGIES:
        raise ChatflowError(f"unknown --strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    data = _byte_level_bpe(tok)
    normalize = tok.backend.normalizer.normalize_str if tok.backend.normalizer is not None else (lambda t: t)
    candidates, skipped = _candidates(
        new_pieces, lambda piece: len(_piece_ids(tok, piece.replace(SPACE, " "), drop_unknown=False)) == 1)
    if strategy == "merges":
        new, unreachable = _merge_candidates(data, candidates, normalize)
        skipped[UNREACHABLE] += unreachable
    else:
        new = [_NewToken(piece, piece.replace(SPACE, " ")) for piece in candidates]
    # Keep only pieces the expanded tokenizer produces as one token; repeat, since a dropped piece can be
    # another one's merge.
    while True:
        built, first = _build_byte_bpe(data, new, strategy)
        backend = _backend(built)
        unreachable = [t.piece for i, t in enumerate(new)
                       if backend.encode(t.text, add_special_tokens=False).ids != [first + i]]
        if not unreachable:
            break
        skipped[UNREACHABLE] += unreachable
        dropped = set(unreachable)
        new = [t for t in new if t.piece not in dropped]
    size = first + len(new)
    taken = set(backend.get_vocab(with_added_tokens=True))
    reserved = _reserved_names(_padding(size, pad_to_multiple), RESERVED_TOKEN, taken)
    built, _ = _build_byte_bpe(data, new, strategy, reserved)
    final = _backend(built).get_vocab(with_added_tokens=True)
    old = tok.backend.get_vocab(with_added_tokens=True)
    moved = [token for token, index in old.items() if final.get(token) != index]
    if moved:
        raise ChatflowError(f"{tok.file}: the expanded tokenizer would give {len(moved)} old tokens other ids (e.g. "
                            f"{moved[:3]}); its ids are not numbered as tokenizers numbers them on loading")
    with atomic_directory(output_dir, TOKENIZER_KIND, force=force, inputs=[tok.file]) as tmp:
        _backend(built).save(str(tmp / "tokenizer.json"))
        _write_tokenizer_config(tok, tmp, [t for t in built["added_tokens"] if t["id"] >= first])
    return TokenizerExpansion(Path(output_dir), tok.vocab_size, size + len(reserved), [t.piece for t in new],
                              len(reserved), skipped, strategy)


def _write_tokenizer_config(tok: HFTokenizer, directory: Path, added: list[dict]) -> None:
    """The base tokenizer's config files beside the expanded tokenizer.json; a config that lists its added tokens
    (``added_tokens_decoder``) lists the new ones too. Never a ``tokenizer.model``, ``vocab.json`` or
    ``merges.txt``: they would describe the tokenizer before expansion."""
    folder = tok.file.parent if tok.file.name == "tokenizer.json" else None
    for name in ("special_tokens_map.json", "chat_template.jinja"):
        if folder is not None and (folder / name).is_file():
            shutil.copyfile(folder / name, directory / name)
    files, _ = tok.hf_files(2048)
    config = json.loads(files.files["tokenizer_config.json"])
    if "added_tokens_decoder" in config:
        for token in added:
            config["added_tokens_decoder"][str(token["id"])] = {
                k: token[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n",
                                                     encoding="utf-8")


def expand_tokenizer(tokenizer, new_pieces, output, strategy: str | None = None, pad_to_multiple: int | None = None,
                     new_piece_score: float | None = None, force: bool = False) -> TokenizerExpansion:
    """Append ``new_pieces`` to a tokenizer of either kind: a sentencepiece model -> the model file ``output``;
    a byte-level BPE tokenizer.json -> the tokenizer directory ``output``."""
    tok = as_tokenizer(tokenizer)
    if tok.kind == SENTENCEPIECE:
        if strategy is not None:
            raise ChatflowError("--strategy chooses between merges and added tokens for byte-level BPE tokenizers; "
                                f"{tok.path} is a sentencepiece model")
        if Path(output).is_dir():
            raise ChatflowError(f"{output}: a directory; a sentencepiece model is written to a file (e.g. "
                                f"{Path(output) / 'tokenizer.model'})")
        if Path(output).exists() and not force:
            raise ChatflowError(f"output {output} already exists (pass --force to replace it)")
        return expand_sentencepiece(tok.file, new_pieces, output, pad_to_multiple, new_piece_score)
    if new_piece_score is not None:
        raise ChatflowError("--new_piece_score is for sentencepiece models")
    return expand_byte_bpe(tok, new_pieces, output, strategy or DEFAULT_STRATEGY, pad_to_multiple, force=force)


# ---- weight expansion ---------------------------------------------------------------------------

def mean_init_ids(base, expanded) -> list[list[int]]:
    """For each id the expanded tokenizer adds, the base ids whose rows are averaged ([] = use the fallback).
    ``base`` and ``expanded``: paths or Tokenizers of the same kind."""
    base, expanded = as_tokenizer(base), as_tokenizer(expanded)
    if base.kind != expanded.kind:
        raise ChatflowError(f"{expanded.path} ({expanded.kind}) is not an expansion of {base.path} ({base.kind})")
    if base.kind == SENTENCEPIECE:
        return _sentencepiece_mean_ids(base, expanded)
    return _byte_bpe_mean_ids(base, expanded)


def _sentencepiece_mean_ids(base: Tokenizer, expanded: Tokenizer) -> list[list[int]]:
    from sentencepiece import sentencepiece_model_pb2 as pb
    base_proto, new_proto = read_sentencepiece_proto(base.file), read_sentencepiece_proto(expanded.file)
    n = len(base_proto.pieces)
    if len(new_proto.pieces) < n or any(a.piece != b.piece for a, b in zip(base_proto.pieces, new_proto.pieces)):
        raise ChatflowError(f"{expanded.file} is not an expansion of {base.file}: "
                            "its first pieces differ from the base model's")
    lists = []
    for piece in new_proto.pieces[n:]:
        if piece.type in (pb.ModelProto.SentencePiece.UNUSED, pb.ModelProto.SentencePiece.CONTROL):
            lists.append([])
        else:
            lists.append(_piece_ids(base, piece.piece.replace(SPACE, " ")))
    return lists


def _byte_bpe_mean_ids(base: Tokenizer, expanded: Tokenizer) -> list[list[int]]:
    old, new = base.backend.get_vocab(with_added_tokens=True), expanded.backend.get_vocab(with_added_tokens=True)
    changed = [token for token, index in old.items() if new.get(token) != index]
    if changed or expanded.vocab_size < base.vocab_size:
        raise ChatflowError(f"{expanded.path} is not an expansion of {base.path}: {len(changed)} of its tokens have "
                            f"other ids, e.g. {changed[:3]}")
    added = expanded.backend.get_added_tokens_decoder()
    lists = []
    for index in range(base.vocab_size, expanded.vocab_size):
        token = added.get(index)
        if token is not None and token.special:
            lists.append([])                       # reserved padding: never produced
        else:
            lists.append(_piece_ids(base, token.content if token is not None else expanded.decode([index])))
    return lists


def expand_rows(matrix, id_lists, start: int | None = None):
    """``matrix`` with rows ``start, start+1, ...`` (default: after its last row) set to one row per id list:
    the mean of those rows (float32), or of rows ``[0, start)`` if the list is empty. Rows past ``start`` that the
    matrix already has (an embedding padded beyond its tokenizer) are overwritten; it grows only past its end.

    The means are one sparse (new x old) averaging matrix times the old rows, so 8,701 new rows of a
    4096-wide matrix take about a second rather than a Python loop's minutes.
    """
    import torch
    start = matrix.shape[0] if start is None else start
    if not 0 <= start <= matrix.shape[0]:
        raise ChatflowError(f"new rows start at {start}, outside the matrix's {matrix.shape[0]} rows")
    if not id_lists:
        return matrix.clone()
    old = matrix[:start].float()
    rows, cols, weights = [], [], []
    for row, ids in enumerate(id_lists):
        rows += [row] * len(ids)
        cols += list(ids)
        weights += [1.0 / len(ids)] * len(ids) if ids else []
    if cols and (min(cols) < 0 or max(cols) >= start):
        raise ChatflowError(f"mean-init ids reach outside the tokenizer's {start} rows")
    averaging = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
                                        torch.tensor(weights, dtype=torch.float32), (len(id_lists), start),
                                        check_invariants=True)
    new = torch.sparse.mm(averaging, old)
    empty = torch.tensor([not ids for ids in id_lists])
    if empty.any():
        new[empty] = old.mean(dim=0)
    end = start + len(id_lists)
    out = torch.empty((max(end, matrix.shape[0]),) + tuple(matrix.shape[1:]), dtype=matrix.dtype)
    out[:matrix.shape[0]] = matrix
    out[start:end] = new.to(matrix.dtype)
    return out


@dataclass
class RowExpansion:
    output: Path
    layout: str
    old_vocab: int
    new_vocab: int
    fallback_rows: int
    matrices: list[str]
    reused_rows: int = 0      # rows the checkpoint had beyond its tokenizer, now holding new tokens


def _copy_extra_files(src: Path, dst: Path, skip) -> None:
    for item in src.iterdir():
        if item.is_file() and not skip(item.name) and not item.name.startswith("."):
            shutil.copyfile(item, dst / item.name)


# Tokenizer files of a model directory that an expanded tokenizer replaces (never copied from the old model).
_OLD_TOKENIZER_FILES = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                        "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja"}


def _hf_embeddings(checkpoint: Path):
    """(config, tensor refs, names of the matrices with a row per token) of an HF causal LM directory: the input
    embedding, and the output layer unless the embeddings are tied."""
    from . import llama_layout as L
    from . import tensor_io as cio
    cfg = read_json(checkpoint / "config.json", "HuggingFace config")
    refs = cio.open_state_dict(checkpoint)
    if L.HF_EMBEDDING not in refs:
        raise ChatflowError(f"{checkpoint}: no {L.HF_EMBEDDING} (expand-vocab grows LLaMA-family checkpoints: "
                            "LLaMA, Mistral, Qwen2)")
    tied = bool(cfg.get("tie_word_embeddings", False)) and L.HF_OUTPUT not in refs
    return cfg, refs, [L.HF_EMBEDDING] + ([] if tied else [L.HF_OUTPUT])


def expand_checkpoint_rows(checkpoint, output, base, expanded, tp_config=None, dtype=None,
                           force: bool = False, max_shard_size="5GB", progress: bool = False) -> RowExpansion:
    """Grow embedding and output rows of a TencentPretrain or HF LLaMA-family checkpoint to the ``expanded``
    tokenizer (``base``: the tokenizer it was trained with; paths or Tokenizers of the same kind).

    HF input (a directory with ``config.json``): output is an HF directory (safetensors, ``vocab_size``
    updated, other files copied, the expanded tokenizer's HF files). TencentPretrain input (file,
    converted/blocks/DeepSpeed directory): output is one ``.bin`` file if ``output`` ends in ``.bin``/``.pt``,
    else a directory like ``chatflow convert hf2tp`` writes (``tencentpretrain_model.bin``, config,
    ``tokenizer.model``).
    """
    from . import tensor_io as cio
    from . import llama_layout as L
    from .convert import HF_KIND, TP_KIND, TP_WEIGHTS, load_tp, parse_size

    checkpoint, output = Path(checkpoint), Path(output)
    base, expanded = as_tokenizer(base), as_tokenizer(expanded)
    id_lists = mean_init_ids(base, expanded)
    old_vocab = base.vocab_size
    is_hf = checkpoint.is_dir() and (checkpoint / "config.json").is_file() and \
        "num_hidden_layers" in read_json(checkpoint / "config.json", "config")
    if is_hf:
        hf_cfg, refs, names = _hf_embeddings(checkpoint)
        layout = "hf"
    else:
        if tp_config or (checkpoint.is_dir() and (checkpoint / "config.json").is_file()):
            tp_cfg, refs, _ = load_tp(checkpoint, tp_config)   # config known: checked against the weights
        else:
            tp_cfg, refs = None, cio.open_state_dict(checkpoint, parallel_dim=L.tp_parallel_dim)
        if L.detect_layout(refs) != "tp":
            raise ChatflowError(f"{checkpoint}: expected a TencentPretrain LLaMA checkpoint (or an HF directory with config.json)")
        names = [L.TP_EMBEDDING, L.TP_OUTPUT]
        layout = "tp"
    rows = None
    for name in names:
        if name not in refs:
            raise ChatflowError(f"{checkpoint}: tensor {name} is missing")
        rows = refs[name].shape[0]
        if rows < old_vocab:
            raise ChatflowError(f"{checkpoint}: {name} has {rows} rows but the base tokenizer {base.path} has "
                                f"{old_vocab} pieces; expand from the tokenizer this checkpoint was trained with")
    new_vocab = max(rows, old_vocab + len(id_lists))
    out_dtype = cio.as_dtype(dtype)
    items = []
    for name, ref in refs.items():
        if name in names:
            produce = (lambda ref=ref: expand_rows(cio.read_checked(ref), id_lists, start=old_vocab))
            items.append(cio.OutTensor(name, (new_vocab,) + tuple(ref.shape[1:]), out_dtype or ref.dtype, produce))
        else:
            items.append(cio.OutTensor(name, ref.shape, out_dtype or ref.dtype, lambda ref=ref: cio.read_checked(ref)))
    total = sum(i.nbytes for i in items)
    inputs = (checkpoint, base.file, expanded.file, tp_config)
    if layout == "hf":
        files, mismatches = expanded.hf_files(hf_cfg.get("max_position_embeddings", 2048))
        if mismatches:
            print(f"warning: the HF tokenizer differs from sentencepiece on {len(mismatches)} probe text(s), "
                  f"e.g. {mismatches[0]!r}", file=sys.stderr)
        with atomic_directory(output, HF_KIND, force=force, inputs=inputs) as tmp, \
                cio.progress_bar(total, "expand", progress) as bar:
            cio.write_safetensors(tmp, items, parse_size(max_shard_size), progress=bar)
            weight_files = {ref.path.name for ref in refs.values()}
            _copy_extra_files(checkpoint, tmp, lambda n: n in weight_files or n.endswith(".index.json") or
                              n == "config.json" or n in _OLD_TOKENIZER_FILES)
            hf_cfg = dict(hf_cfg, vocab_size=new_vocab)
            if out_dtype is not None:
                hf_cfg["torch_dtype"] = hf_cfg["dtype"] = cio.dtype_name(out_dtype)
            files.write(tmp)
            # config.json last: the temporary folder of a killed run never loads with from_pretrained
            write_last(tmp, "config.json", json.dumps(hf_cfg, indent=2) + "\n")
    elif output.suffix in (".bin", ".pt"):
        check_not_input(output, inputs)
        with output_lock(output):
            check_output_file(output, force, _is_torch_file, "a torch checkpoint file")
            remove_leftovers(output)
            with atomic_file(output, "wb") as handle, cio.progress_bar(total, "expand", progress) as bar:
                cio.write_torch_file(handle, items, progress=bar)
    else:
        with atomic_directory(output, TP_KIND, force=force, inputs=inputs) as tmp, \
                cio.progress_bar(total, "expand", progress) as bar:
            cio.write_torch_file(tmp / TP_WEIGHTS, items, progress=bar)
            if expanded.kind == SENTENCEPIECE:
                shutil.copyfile(expanded.file, tmp / "tokenizer.model")
            else:
                expanded.hf_files(2048)[0].write(tmp)
            if tp_cfg is not None:
                write_last(tmp, "config.json", json.dumps(tp_cfg, indent=2) + "\n")   # last: it loads
    return RowExpansion(output, layout, old_vocab, new_vocab, sum(1 for ids in id_lists if not ids), names,
                        reused_rows=max(0, min(rows, old_vocab + len(id_lists)) - old_vocab))


# ---- outputs that are single files -------------------------------------------------------------

def check_output_file(path: Path, force: bool, recognise, what: str) -> None:
    """An existing output file needs ``force``, and is replaced only if ``recognise(path)`` says it is ``what``
    (an output of this command), never a folder or a file of another kind."""
    if not path.exists() and not path.is_symlink():
        return
    if not force:
        raise ChatflowError(f"output {path} already exists (pass --force to replace it)")
    if path.is_dir() or not recognise(path):
        raise ChatflowError(f"output {path} exists and is not {what}; --force replaces only an output of this "
                            f"command (remove it yourself or choose another output)")


def _is_sentencepiece_model(path: Path) -> bool:
    try:
        read_sentencepiece_proto(path)
    except Exception:   # any parse failure: not a model
        return False
    return True


def _is_expand_report(path: Path) -> bool:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and {"base_size", "size", "added", "mean_init_ids"} <= set(report)


def _is_torch_file(path: Path) -> bool:
    import zipfile
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("data.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _check_outputs(opts: "ExpandVocabOptions", base: Tokenizer, output: str) -> None:
    """Every output is new (or, with --force, an earlier output of this command), none is an input of the run,
    no two are the same file: checked before any work is done. ``output``: the expanded tokenizer (a
    sentencepiece model file, or a tokenizer directory for a byte-level BPE ``base``)."""
    inputs = [base.file, opts.model_path, opts.tp_config, *opts.pieces, *opts.corpus]
    outputs = [("--output_tokenizer", output), ("--output_model_path", opts.output_model_path),
               ("--report", opts.report)]
    outputs = [(flag, value) for flag, value in outputs if value]
    for flag, value in outputs:
        check_not_input(value, inputs, what=flag)
    for i, (flag, value) in enumerate(outputs):
        for other_flag, other in outputs[i + 1:]:
            check_not_input(value, [other], what=flag)
            check_not_input(other, [value], what=other_flag)
    if base.kind == SENTENCEPIECE:
        check_output_file(Path(output), opts.force, _is_sentencepiece_model, "a sentencepiece model")
    elif Path(output).exists() or Path(output).is_symlink():
        if not opts.force:
            raise ChatflowError(f"output {output} already exists (pass --force to replace it)")
        check_replaceable(output, TOKENIZER_KIND)
    if opts.report:
        check_output_file(Path(opts.report), opts.force, _is_expand_report, "an expand-vocab report")
    if opts.model_path:
        out = Path(opts.output_model_path)
        if out.suffix in (".bin", ".pt"):
            check_output_file(out, opts.force, _is_torch_file, "a torch checkpoint file")
        elif out.exists() and not opts.force:
            raise ChatflowError(f"output {out} already exists (pass --force to replace it)")


# ---- command line -------------------------------------------------------------------------------

@dataclasses.dataclass
class ExpandVocabOptions:
    tokenizer: str = option("", help="the original tokenizer: a sentencepiece model (LLaMA-2's tokenizer.model) or a "
                                     "byte-level BPE tokenizer.json / model directory (LLaMA-3, Qwen2)",
                            aliases=["--base_model"])
    output_tokenizer: str = option("", help="where to write the expanded tokenizer: a model file for sentencepiece, "
                                            "a directory for a tokenizer.json", aliases=["--output_model"])
    pieces: list[str] = option(default_factory=list, repeatable=True, type=str,
                               help="files of new pieces, one per line (added first, in file order)")
    corpus: list[str] = option(default_factory=list, repeatable=True, type=str,
                               help="text, .jsonl or .json files to mine characters from (every string field of the JSON)")
    language: str = option("", help="mine the scripts this language is written with, from chatflow_plugin/languages.py "
                                    "(zh: Han + CJK punctuation; ja: + kana; ko: Hangul; th, hi, ar, ru ...); "
                                    "replaces --script")
    script: list[str] = option(default_factory=lambda: ["cjk"], repeatable=True, type=str,
                               help=f"scripts to mine: {', '.join(n for n in script_names() if n.islower())}, or an "
                                    "ISO 15924 code of chatflow_plugin/languages.py (Thai, Cyrl, Deva, ...)")
    min_count: int = option(1, help="mined characters must occur at least this many times")
    max_new_pieces: int | None = option(None, type=int, help="at most this many mined characters (most frequent first); "
                                                   "default: all")
    strategy: str | None = option(None, type=str, choices=list(STRATEGIES),
                                  help="byte-level BPE: new pieces as added tokens (default) or as merges of two old "
                                       "tokens (docs/vocab_and_conversion.md compares them)")
    pad_to_multiple: int | None = option(None, type=int, help="pad the vocabulary size to a multiple of this with "
                                                    "reserved pieces (e.g. 64); default: no padding")
    new_piece_score: float | None = option(None, type=float, help="sentencepiece: score of new pieces (default: 0.0 "
                                                                  "for BPE, the lowest existing score for unigram)")
    model_path: str | None = option(None, type=str, aliases=["--checkpoint"], help="also expand this checkpoint (HF LLaMA/Mistral/Qwen2 "
                                                         "directory, TencentPretrain file/directory/DeepSpeed directory)")
    output_model_path: str | None = option(None, type=str, aliases=["--output_checkpoint"],
                                           help="where to write the expanded checkpoint (with --model_path)")
    tp_config: str | None = option(None, type=str, help="TencentPretrain config JSON of --model_path (copied to a TP output directory)")
    dtype: str = option("keep", choices=["keep", "float32", "float16", "bfloat16"], help="output checkpoint dtype")
    max_shard_size: str = option("5GB", help="HF output: largest safetensors shard (500MB, 5GB, 2GiB)")
    expect_vocab_size: int = option(0, help="refuse (and write nothing) unless the expanded tokenizer has exactly this "
                                            "many pieces (ChatFlow: 40763 = 32000 + 8701 + 62); 0: no check")
    report: str | None = option(None, type=str, help="write a JSON report (added pieces, skipped pieces by reason, mean-init ids)")
    force: bool = option(False, help="replace existing outputs (only outputs this command wrote: a tokenizer, a "
                                      "checkpoint folder chatflow wrote, a report)")
    quiet: bool = option(False, help="no progress bar")


def _remove_output(output) -> None:
    """Take back an expanded tokenizer just written (a sentencepiece file or a tokenizer directory)."""
    path = Path(output)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def expand_vocab(opts: ExpandVocabOptions) -> None:
    """Append pieces (from files and mined from corpora) to a tokenizer (sentencepiece, or byte-level BPE) and
    expand a checkpoint's embedding and output rows, each new row the mean of the rows of the tokens the
    original tokenizer splits the new piece into."""
    if not opts.tokenizer or not opts.output_tokenizer:
        raise ChatflowError("give the tokenizer to expand (--tokenizer) and where to write it (--output_tokenizer)")
    base_path, output = opts.tokenizer, opts.output_tokenizer
    if bool(opts.model_path) != bool(opts.output_model_path):
        raise ChatflowError("--model_path and --output_model_path go together")
    if not opts.pieces and not opts.corpus:
        raise ChatflowError("give new pieces with --pieces FILE and/or --corpus FILE to mine them from")
    if opts.max_new_pieces is not None and opts.max_new_pieces < 0:
        raise ChatflowError(f"--max_new_pieces must be 0 or more, got {opts.max_new_pieces}")
    if opts.min_count < 1:
        raise ChatflowError(f"--min_count must be 1 or more, got {opts.min_count}")
    if opts.pad_to_multiple is not None and opts.pad_to_multiple < 1:
        raise ChatflowError(f"--pad_to_multiple must be positive, got {opts.pad_to_multiple}")
    if opts.new_piece_score is not None and not math.isfinite(opts.new_piece_score):
        raise ChatflowError(f"--new_piece_score must be a finite number, got {opts.new_piece_score}")
    base = load_tokenizer(base_path)
    with contextlib.ExitStack() as locks:      # the outputs' locks, from the checks to the last write
        for path in [output, opts.output_model_path, opts.report]:
            if path:
                locks.enter_context(output_lock(path))
        _check_outputs(opts, base, output)
        for path in [output, opts.report]:
            if path:
                remove_leftovers(path)
        _expand_vocab(opts, base, output)


def _expand_vocab(opts: ExpandVocabOptions, base: Tokenizer, output: str) -> None:
    """:func:`expand_vocab` once its outputs are checked and locked."""
    scripts = get_language(opts.language).expansion_scripts if opts.language else opts.script
    if opts.language and not scripts:
        raise ChatflowError(f"chatflow_plugin/languages.py lists no scripts to mine for {opts.language!r}; "
                            "give --script")
    new_pieces = [p for path in opts.pieces for p in read_piece_file(path)]
    mined = mine_pieces(opts.corpus, base, scripts, opts.min_count, opts.max_new_pieces) if opts.corpus else []
    result = expand_tokenizer(base, new_pieces + [ch for ch, _ in mined], output, strategy=opts.strategy,
                              pad_to_multiple=opts.pad_to_multiple, new_piece_score=opts.new_piece_score,
                              force=opts.force)
    print(result.summary())
    if opts.expect_vocab_size and result.size != opts.expect_vocab_size:
        _remove_output(output)
        raise ChatflowError(f"the expanded tokenizer has {result.size} pieces, not the {opts.expect_vocab_size} asked for "
                            f"(--expect_vocab_size): {result.base_size} + {len(new_pieces)} listed + {len(mined)} mined, "
                            f"{result.size - result.base_size} added; see the skipped pieces above (a corpus with fewer "
                            f"new characters than --max_new_pieces, or listed pieces the model already has); "
                            f"{output} was not written")
    expanded = load_tokenizer(output)
    rows = None
    if opts.model_path:
        rows = expand_checkpoint_rows(opts.model_path, opts.output_model_path, base, expanded,
                                      tp_config=opts.tp_config, dtype=opts.dtype, force=opts.force,
                                      max_shard_size=opts.max_shard_size, progress=not opts.quiet)
        reused = f", {rows.reused_rows} of them unused rows it already had" if rows.reused_rows else ""
        print(f"{rows.output}: {', '.join(rows.matrices)} {rows.old_vocab} -> {rows.new_vocab} rows "
              f"({rows.fallback_rows} from the mean of all rows{reused})")
    if opts.report:
        ids = mean_init_ids(base, expanded)
        report = {"tokenizer_kind": base.kind, "strategy": result.strategy, "scripts": list(scripts),
                  "base_size": result.base_size, "size": result.size, "added": result.added,
                  "reserved": result.reserved, "skipped": result.skipped,
                  "mined_counts": dict(mined), "mean_init_ids": dict(zip(result.added, ids)),
                  "checkpoint": str(rows.output) if rows else None}
        with atomic_file(opts.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
