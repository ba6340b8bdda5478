"""Vocabulary expansion: append pieces to a sentencepiece model and grow the weights to match.

ChatFlow extends LLaMA's 32,000 pieces with 8,701 Chinese characters and 62 symbols and initialises each
new input-embedding row and output row with the mean of the rows of the tokens the ORIGINAL tokenizer
splits that piece into.

Python API (other modules call these)::

    read_piece_file(path) -> list[str]
    mine_pieces(corpora, base_model, scripts=("cjk",), min_count=1, max_new_pieces=None) -> list[tuple[str, int]]
    expand_sentencepiece(base_model, new_pieces, output_model, pad_to_multiple=None, new_piece_score=None)
        -> TokenizerExpansion
    mean_init_ids(base_model, expanded_model) -> list[list[int]]    # one list per new id; [] = fallback
    expand_rows(matrix, id_lists) -> Tensor                          # old rows + one mean row per list
    expand_checkpoint_rows(checkpoint, output, base_model, expanded_model, tp_config=None, dtype=None,
                           force=False, max_shard_size="5GB") -> RowExpansion

Tokenizer: the model proto is edited with ``sentencepiece.sentencepiece_model_pb2`` (shipped with
sentencepiece; needs ``protobuf``). Old pieces keep ids, types and scores; new pieces are appended as
NORMAL pieces in the given order (file pieces first, then mined ones by descending count, ties by code
point). A new piece's score is 0.0 for BPE models (the highest merge priority: LLaMA's scores are
negative ranks; Chinese-LLaMA uses the same) and, for unigram models, the lowest existing piece score.
Skipped and reported: empty or whitespace-only pieces, duplicates, pieces already in the model, and
pieces the expanded model would still not produce as one token (normalization rewrites them, or a BPE
model has no merge path to them, e.g. a multi-character word whose prefixes are not pieces). Padding to
a multiple adds ``<reserved_N>`` pieces of type UNUSED, which encoding never produces.

Mean initialisation: for each new piece the ids are ``base.encode(piece with "▁" as " ")`` with
(1) the lone "▁" piece the dummy prefix puts in front removed (unless the new piece itself starts with
"▁") and (2) the unknown id removed (it says nothing about the piece); byte-fallback ids are kept.
If nothing remains (and for reserved pieces) the row is the mean of all old rows. Means are computed
in float32 and cast to the checkpoint's dtype.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_file, json_strings, read_json, read_jsonl
from ..errors import ChatflowError, DataError
from ..outputs import atomic_directory, check_not_input, output_lock, remove_leftovers
from ..languages import in_scripts, script_names
from ..options import option
from ..tokenizer import load_sentencepiece, read_sentencepiece_proto, write_hf_tokenizer_files

RESERVED_PIECE = "<reserved_{}>"
SPACE = "▁"


def _processor(proto):
    """A SentencePieceProcessor of a ``ModelProto`` built in memory."""
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString(deterministic=True))


# ---- new pieces: from files and corpora ---------------------------------------------------------

def read_piece_file(path: str | os.PathLike) -> list[str]:
    """One piece per line (UTF-8). A tab ends the piece (a count or score after it is ignored); spaces
    inside a piece become "▁", sentencepiece's space. Empty/whitespace-only lines are kept as "" so that
    :func:`expand_sentencepiece` reports them."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ChatflowError(f"{path}: piece file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason} at byte {exc.start})", str(path)) from None
    pieces = []
    for line in lines:
        piece = line.split("\t", 1)[0].lstrip("\ufeff")
        pieces.append("" if not piece.strip() else piece.replace(" ", SPACE))
    return pieces


def _corpus_texts(path: Path):
    """Lines of a text file; every string field of each line of a ``.jsonl`` file or of a ``.json`` file."""
    try:
        if path.suffix == ".jsonl":
            for _, record in read_jsonl(path):
                yield from json_strings(record)
            return
        with open(path, encoding="utf-8") as handle:
            if path.suffix == ".json":
                try:
                    yield from json_strings(json.load(handle))
                except ValueError as exc:
                    raise DataError(f"not JSON ({exc})", str(path)) from None
                return
            yield from handle
    except FileNotFoundError:
        raise ChatflowError(f"{path}: corpus not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 ({exc.reason})", str(path)) from None


def mine_pieces(corpora, base_model, scripts=("cjk",), min_count: int = 1,
                max_new_pieces: int | None = None) -> list[tuple[str, int]]:
    """Characters of ``scripts`` (names of :data:`chatflow_plugin.languages.SCRIPTS`: ``cjk``, ``cjk_punct``,
    ``Thai`` ...) in the corpora that are not single pieces of ``base_model``, most frequent first (ties by
    code point), with their counts; at least ``min_count`` occurrences, at most ``max_new_pieces`` of them."""
    if max_new_pieces is not None and max_new_pieces < 0:
        raise ChatflowError(f"max_new_pieces must be 0 or more, got {max_new_pieces}")
    wanted = in_scripts(scripts)
    present = {p.piece for p in read_sentencepiece_proto(base_model).pieces}
    counts: Counter = Counter()
    for corpus in corpora:
        for text in _corpus_texts(Path(corpus)):
            counts.update(ch for ch in text if wanted(ch))
    ranked = sorted(((ch, n) for ch, n in counts.items() if n >= min_count and ch not in present),
                    key=lambda item: (-item[1], ord(item[0])))
    return ranked[:max_new_pieces] if max_new_pieces is not None else ranked


# ---- tokenizer expansion ------------------------------------------------------------------------

@dataclass
class TokenizerExpansion:
    """What :func:`expand_sentencepiece` did."""
    output: Path
    base_size: int
    size: int
    added: list[str]
    reserved: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"{self.output}: {self.base_size} -> {self.size} pieces "
                 f"({len(self.added)} added, {self.reserved} reserved for padding)"]
        for reason, pieces in self.skipped.items():
            if pieces:
                shown = " ".join(repr(p) for p in pieces[:10])
                lines.append(f"  skipped {len(pieces)} {reason}: {shown}{' ...' if len(pieces) > 10 else ''}")
        return "\n".join(lines)


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
    skipped: dict[str, list[str]] = {"empty or whitespace-only": [], "duplicates": [], "already in the model": [],
                                     "that would not tokenize as one token": []}
    candidates, seen = [], set()
    for piece in new_pieces:
        if not piece.replace(SPACE, " ").strip():
            skipped["empty or whitespace-only"].append(piece)
        elif piece in present:
            skipped["already in the model"].append(piece)
        elif piece in seen:
            skipped["duplicates"].append(piece)
        else:
            seen.add(piece)
            candidates.append(piece)

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
        skipped["that would not tokenize as one token"] += unreachable
        dropped = set(unreachable)
        candidates = [p for p in candidates if p not in dropped]
    expanded = build(candidates)
    reserved = 0
    if pad_to_multiple:
        if pad_to_multiple < 1:
            raise ChatflowError(f"--pad_to_multiple must be positive, got {pad_to_multiple}")
        reserved = -len(expanded.pieces) % pad_to_multiple
        taken = {p.piece for p in expanded.pieces}
        k = 0
        for _ in range(reserved):
            while RESERVED_PIECE.format(k) in taken:
                k += 1
            expanded.pieces.add(piece=RESERVED_PIECE.format(k), score=0.0, type=pb.ModelProto.SentencePiece.UNUSED)
            k += 1
    output_model = Path(output_model)
    with atomic_file(output_model, "wb") as handle:
        handle.write(expanded.SerializeToString(deterministic=True))
    return TokenizerExpansion(output_model, base_size, len(expanded.pieces), candidates, reserved, skipped)


# ---- weight expansion ---------------------------------------------------------------------------

def mean_init_ids(base_model, expanded_model) -> list[list[int]]:
    """For each id the expanded model adds, the base ids whose rows are averaged ([] = use the fallback)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    base_proto, new_proto = read_sentencepiece_proto(base_model), read_sentencepiece_proto(expanded_model)
    n = len(base_proto.pieces)
    if len(new_proto.pieces) < n or any(a.piece != b.piece for a, b in zip(base_proto.pieces, new_proto.pieces)):
        raise ChatflowError(f"{expanded_model} is not an expansion of {base_model}: "
                            "its first pieces differ from the base model's")
    sp = load_sentencepiece(base_model)
    space, unk = sp.piece_to_id(SPACE), sp.unk_id()
    lists = []
    for piece in new_proto.pieces[n:]:
        if piece.type in (pb.ModelProto.SentencePiece.UNUSED, pb.ModelProto.SentencePiece.CONTROL):
            lists.append([])
            continue
        ids = sp.encode(piece.piece.replace(SPACE, " "))
        if ids and ids[0] == space and not piece.piece.startswith(SPACE) and sp.id_to_piece(space) == SPACE:
            ids = ids[1:]
        lists.append([i for i in ids if i != unk])
    return lists


def expand_rows(matrix, id_lists):
    """``matrix`` with one appended row per id list: the mean of those rows (float32), or of all rows if empty.

    The means are one sparse (new x old) averaging matrix times the old rows, so 8,701 new rows of a
    4096-wide matrix take about a second rather than a Python loop's minutes.
    """
    import torch
    if not id_lists:
        return matrix.clone()
    old = matrix.float()
    rows, cols, weights = [], [], []
    for row, ids in enumerate(id_lists):
        rows += [row] * len(ids)
        cols += list(ids)
        weights += [1.0 / len(ids)] * len(ids) if ids else []
    if cols and (min(cols) < 0 or max(cols) >= old.shape[0]):
        raise ChatflowError(f"mean-init ids reach outside the matrix's {old.shape[0]} rows")
    averaging = torch.sparse_coo_tensor(torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1),
                                        torch.tensor(weights, dtype=torch.float32), (len(id_lists), old.shape[0]),
                                        check_invariants=True)
    new = torch.sparse.mm(averaging, old)
    empty = torch.tensor([not ids for ids in id_lists])
    if empty.any():
        new[empty] = old.mean(dim=0)
    return torch.cat([matrix, new.to(matrix.dtype)], dim=0)


@dataclass
class RowExpansion:
    output: Path
    layout: str
    old_vocab: int
    new_vocab: int
    fallback_rows: int
    matrices: list[str]


def _copy_extra_files(src: Path, dst: Path, skip) -> None:
    for item in src.iterdir():
        if item.is_file() and not skip(item.name) and not item.name.startswith("."):
            shutil.copyfile(item, dst / item.name)


def expand_checkpoint_rows(checkpoint, output, base_model, expanded_model, tp_config=None, dtype=None,
                           force: bool = False, max_shard_size="5GB", progress: bool = False) -> RowExpansion:
    """Grow embedding and output rows of a TencentPretrain or HF LLaMA checkpoint to ``expanded_model``.

    HF input (a directory with ``config.json``): output is an HF directory (safetensors, ``vocab_size``
    updated, other files copied, tokenizer files of the expanded model). TencentPretrain input (file,
    converted/blocks/DeepSpeed directory): output is one ``.bin`` file if ``output`` ends in ``.bin``/``.pt``,
    else a directory like ``chatflow convert hf2tp`` writes (``tencentpretrain_model.bin``, config,
    ``tokenizer.model``).
    """
    from . import tensor_io as cio
    from . import llama_layout as L
    from .convert import HF_KIND, TP_KIND, TP_WEIGHTS, load_hf, load_tp, parse_size

    checkpoint, output = Path(checkpoint), Path(output)
    id_lists = mean_init_ids(base_model, expanded_model)
    old_vocab = len(read_sentencepiece_proto(base_model).pieces)
    new_vocab = old_vocab + len(id_lists)
    is_hf = checkpoint.is_dir() and (checkpoint / "config.json").is_file() and \
        "num_hidden_layers" in read_json(checkpoint / "config.json", "config")
    if is_hf:
        hf_cfg, refs, shape, _ = load_hf(checkpoint)
        names = [L.HF_EMBEDDING] + ([] if shape.tied else [L.HF_OUTPUT])
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
    for name in names:
        if name not in refs:
            raise ChatflowError(f"{checkpoint}: tensor {name} is missing")
        rows = refs[name].shape[0]
        if rows != old_vocab:
            raise ChatflowError(f"{checkpoint}: {name} has {rows} rows but the base tokenizer {base_model} has "
                                f"{old_vocab} pieces; expand from the tokenizer this checkpoint was trained with")
    out_dtype = cio.as_dtype(dtype)
    items = []
    for name, ref in refs.items():
        if name in names:
            produce = (lambda ref=ref: expand_rows(cio.read_checked(ref), id_lists))
            items.append(cio.OutTensor(name, (new_vocab,) + tuple(ref.shape[1:]), out_dtype or ref.dtype, produce))
        else:
            items.append(cio.OutTensor(name, ref.shape, out_dtype or ref.dtype, lambda ref=ref: cio.read_checked(ref)))
    total = sum(i.nbytes for i in items)
    inputs = (checkpoint, base_model, expanded_model, tp_config)
    if layout == "hf":
        with atomic_directory(output, HF_KIND, force=force, inputs=inputs) as tmp, \
                cio.progress_bar(total, "expand", progress) as bar:
            cio.write_safetensors(tmp, items, parse_size(max_shard_size), progress=bar)
            weight_files = {ref.path.name for ref in refs.values()}
            _copy_extra_files(checkpoint, tmp, lambda n: n in weight_files or n.endswith(".index.json") or n in (
                "config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"))
            hf_cfg = dict(hf_cfg, vocab_size=new_vocab)
            if out_dtype is not None:
                hf_cfg["torch_dtype"] = hf_cfg["dtype"] = cio.dtype_name(out_dtype)
            write_hf_tokenizer_files(expanded_model, tmp, hf_cfg.get("max_position_embeddings", 2048), warn=True)
            # config.json last: the temporary folder of a killed run never loads with from_pretrained
            (tmp / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n", encoding="utf-8")
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
            shutil.copyfile(expanded_model, tmp / "tokenizer.model")
            if tp_cfg is not None:
                (tmp / "config.json").write_text(json.dumps(tp_cfg, indent=2) + "\n", encoding="utf-8")
    return RowExpansion(output, layout, old_vocab, new_vocab, sum(1 for ids in id_lists if not ids), names)


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


def _check_outputs(opts: "ExpandVocabOptions") -> None:
    """Every output is new (or, with --force, an earlier output of this command), none is an input of the run,
    no two are the same file: checked before any work is done."""
    inputs = [opts.base_model, opts.checkpoint, opts.tp_config, *opts.pieces, *opts.corpus]
    outputs = [("--output_model", opts.output_model), ("--output_checkpoint", opts.output_checkpoint),
               ("--report", opts.report)]
    outputs = [(flag, value) for flag, value in outputs if value]
    for flag, value in outputs:
        check_not_input(value, inputs, what=flag)
    for i, (flag, value) in enumerate(outputs):
        for other_flag, other in outputs[i + 1:]:
            check_not_input(value, [other], what=flag)
            check_not_input(other, [value], what=other_flag)
    check_output_file(Path(opts.output_model), opts.force, _is_sentencepiece_model, "a sentencepiece model")
    if opts.report:
        check_output_file(Path(opts.report), opts.force, _is_expand_report, "an expand-vocab report")
    if opts.checkpoint:
        out = Path(opts.output_checkpoint)
        if out.suffix in (".bin", ".pt"):
            check_output_file(out, opts.force, _is_torch_file, "a torch checkpoint file")
        elif out.exists() and not opts.force:
            raise ChatflowError(f"output {out} already exists (pass --force to replace it)")


# ---- command line -------------------------------------------------------------------------------

@dataclasses.dataclass
class ExpandVocabOptions:
    base_model: str = option(help="the original sentencepiece model (e.g. LLaMA-2's tokenizer.model)")
    output_model: str = option(help="where to write the expanded sentencepiece model")
    pieces: list[str] = option(default_factory=list, repeatable=True, type=str,
                               help="files of new pieces, one per line (added first, in file order)")
    corpus: list[str] = option(default_factory=list, repeatable=True, type=str,
                               help="text, .jsonl or .json files to mine characters from (every string field of the JSON)")
    script: list[str] = option(default_factory=lambda: ["cjk"], repeatable=True, type=str,
                               help=f"scripts to mine: {', '.join(n for n in script_names() if n.islower())}, or an "
                                    "ISO 15924 code of chatflow_plugin/languages.py (Thai, Cyrl, Deva, ...)")
    min_count: int = option(1, help="mined characters must occur at least this many times")
    max_new_pieces: int | None = option(None, type=int, help="at most this many mined characters (most frequent first); "
                                                   "default: all")
    pad_to_multiple: int | None = option(None, type=int, help="pad the vocabulary size to a multiple of this with "
                                                    "<reserved_N> pieces (e.g. 64); default: no padding")
    new_piece_score: float | None = option(None, type=float, help="score of new pieces (default: 0.0 for BPE, the lowest "
                                                      "existing score for unigram)")
    checkpoint: str | None = option(None, type=str, help="also expand this LLaMA checkpoint (HF directory, TencentPretrain "
                                               "file/directory/DeepSpeed directory)")
    output_checkpoint: str | None = option(None, type=str, help="where to write the expanded checkpoint")
    tp_config: str | None = option(None, type=str, help="TencentPretrain config JSON of --checkpoint (copied to a TP output directory)")
    dtype: str = option("keep", choices=["keep", "float32", "float16", "bfloat16"], help="output checkpoint dtype")
    max_shard_size: str = option("5GB", help="HF output: largest safetensors shard (500MB, 5GB, 2GiB)")
    report: str | None = option(None, type=str, help="write a JSON report (added pieces, skipped pieces by reason, mean-init ids)")
    force: bool = option(False, help="replace existing outputs (only outputs this command wrote: a sentencepiece "
                                      "model, a checkpoint folder chatflow wrote, a report)")
    quiet: bool = option(False, help="no progress bar")


def expand_vocab(opts: ExpandVocabOptions) -> None:
    """Append pieces (from files and mined from corpora) to a sentencepiece model and expand a checkpoint's
    embedding and output rows, each new row the mean of the rows of the pieces the original tokenizer splits
    the new piece into."""
    if bool(opts.checkpoint) != bool(opts.output_checkpoint):
        raise ChatflowError("--checkpoint and --output_checkpoint go together")
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
    _check_outputs(opts)
    new_pieces = [p for path in opts.pieces for p in read_piece_file(path)]
    mined = mine_pieces(opts.corpus, opts.base_model, opts.script, opts.min_count, opts.max_new_pieces) if opts.corpus else []
    result = expand_sentencepiece(opts.base_model, new_pieces + [ch for ch, _ in mined], opts.output_model,
                                  pad_to_multiple=opts.pad_to_multiple, new_piece_score=opts.new_piece_score)
    print(result.summary())
    rows = None
    if opts.checkpoint:
        rows = expand_checkpoint_rows(opts.checkpoint, opts.output_checkpoint, opts.base_model, opts.output_model,
                                      tp_config=opts.tp_config, dtype=opts.dtype, force=opts.force,
                                      max_shard_size=opts.max_shard_size, progress=not opts.quiet)
        print(f"{rows.output}: {', '.join(rows.matrices)} {rows.old_vocab} -> {rows.new_vocab} rows "
              f"({rows.fallback_rows} from the mean of all rows)")
    if opts.report:
        ids = mean_init_ids(opts.base_model, opts.output_model)
        report = {"base_size": result.base_size, "size": result.size, "added": result.added,
                  "reserved": result.reserved, "skipped": result.skipped,
                  "mined_counts": dict(mined), "mean_init_ids": dict(zip(result.added, ids)),
                  "checkpoint": str(rows.output) if rows else None}
        with atomic_file(opts.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
