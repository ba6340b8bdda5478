"""`chatflow search` with real proxies: the printed `chatflow train` lines run as they are (from another
directory), and the search collects their folders, fits and reports without training anything itself."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from chatflow_plugin.cli import main as chatflow_main  # noqa: E402
from search_support import split_dataset  # noqa: E402
from test_hf_train import TINY_CONFIG  # noqa: E402


@pytest.fixture(scope="module")
def splits(tmp_path_factory, spm_model) -> dict[str, Path]:
    """train/valid/test of one `chatflow preprocess --split`, as docs/search.md makes them."""
    return split_dataset(tmp_path_factory.mktemp("searchdata"), spm_model, n_docs=150)


@pytest.mark.slow
def test_printed_commands_run_and_are_collected(splits, tmp_path, capsys):
    args = ["search", "--output_dir", str(tmp_path / "search"), "--dataset_dir", str(splits["train"]),
            "--heldout_dir", str(splits["valid"]), "--test_dir", str(splits["test"]), "--objective", "mean(zh, inst)",
            "--constraint", "en <= reference + 0.05", "--model_config", str(TINY_CONFIG), "--train_steps", "2",
            "--micro_batch_size", "2", "--learning_rate", "3e-3", "--heldout_windows", "2", "--proxies", "7",
            "--seeds", "1", "--mixture", str(splits["mixture"])]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bin_dir = Path(sys.executable).parent

    def scheduler(lines):       # what a Slurm array task runs: the line, in a shell, in any directory
        for line in lines:
            subprocess.run(["bash", "-c", line], cwd=elsewhere, check=True, capture_output=True,
                           env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})

    assert chatflow_main(args + ["--print_commands"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 7 and all(f"--heldout_dir {splits['valid'].resolve()}" in line for line in lines)
    scheduler(lines)
    assert chatflow_main(args + ["--print_commands"]) == 0          # fits, chooses, prints the test re-runs
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(f"--heldout_dir {splits['test'].resolve()}" in line for line in lines)
    scheduler(lines)
    assert chatflow_main(args + ["--collect_only"]) == 0
    out = json.loads(capsys.readouterr().out)
    chosen = tmp_path / "search" / "chosen_mixture.json"
    assert Path(out["chosen_mixture"]) == chosen
    first = chosen.read_bytes()
    assert chatflow_main(args) == 0                      # nothing left to train; the same file
    assert chosen.read_bytes() == first
    report = json.loads((tmp_path / "search" / "report" / "report.json").read_text())
    assert len(report["proxies"]) == 7 and report["final"]["test_set"]["split"]["part"] == "test"
    assert set(report["final"]["runs"]) == {"chosen", "reference", "static"}
