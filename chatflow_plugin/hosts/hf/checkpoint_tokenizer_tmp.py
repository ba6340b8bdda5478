"""The tokenizer files saved with every checkpoint and final model of ``chatflow train`` and ``clo-train``.

A ``transformers.Trainer`` checkpoint (``checkpoint-N/``) holds weights, config and optimizer state,
and tokenizer files only when the Trainer was given a ``processing_class``, whose ``save_pretrained``
then writes what that object makes of itself (no ``tokenizer.model`` for a fast tokenizer), after the
weights. Here the exact files of the final model (the HF files that
:func:`~chatflow_plugin.tokenizer.write_hf_tokenizer_files` makes from the sentencepiece model, or the
start model's own files) are read once into memory and written into every directory the Trainer
saves to, *before* the weights and each one atomically: a checkpoint that has its ``config.json``
has its tokenizer, so a save killed half-way never leaves a folder that looks loadable without one.
Only the process that saves (``args.should_save``: rank 0) writes.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ...files import atomic_file


@dataclass(frozen=True)
class TokenizerFiles:
    """File name -> bytes, written as they are into a model directory."""

    files: dict[str, bytes]

    @classmethod
    def read(cls, directory: str | os.PathLike, names: Iterable[str]) -> "TokenizerFiles":
        """The files of ``names`` that exist in ``directory``."""
        directory = Path(directory)
        return cls({name: (directory / name).read_bytes() for name in names if (directory / name).is_file()})

    @classmethod
    def from_sentencepiece(cls, spm_model: str | os.PathLike, model_max_length: int
                           ) -> tuple["TokenizerFiles", list[str]]:
        """The HF tokenizer files of a sentencepiece model, and the probe texts on which they differ from it."""
        from ...tokenizer import write_hf_tokenizer_files

        with tempfile.TemporaryDirectory(prefix="chatflow-tokenizer-") as tmp:
            mismatches = write_hf_tokenizer_files(spm_model, tmp, model_max_length=model_max_length)
            return cls.read(tmp, sorted(os.listdir(tmp))), mismatches

    def write(self, directory: str | os.PathLike) -> None:
        for name, data in self.files.items():
            with atomic_file(Path(directory) / name, "wb") as handle:
                handle.write(data)


class SavesTokenizerFiles:
    """Mixin for a ``transformers.Trainer`` subclass: ``tokenizer_files`` go into every directory it saves
    a model to (each ``checkpoint-N/`` and ``save_model``'s), before the model."""

    tokenizer_files: TokenizerFiles | None = None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if self.tokenizer_files is not None and self.args.should_save:
            self.tokenizer_files.write(output_dir if output_dir is not None else self.args.output_dir)
        super().save_model(output_dir, _internal_call)
