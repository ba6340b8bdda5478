"""docs/search.md's commands as they are shown: the split by `chatflow preprocess --split`, then the Slurm array
block (with an `sbatch` that runs the array's tasks here, one after the other), from a directory of its own with
relative paths."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from conftest import train_spm  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "search.md"

# An sbatch for the test: runs every task of --array=LO-HI of --wrap's script, in order, with SLURM_ARRAY_TASK_ID
# set; like sbatch --wait, it returns when they have all finished (and refuses a block that would not wait).
FAKE_SBATCH = """#!{python}
import os, subprocess, sys
args, array, wrap = sys.argv[1:], None, None
for i, arg in enumerate(args):
    if arg.startswith("--array="):
        array = arg.split("=", 1)[1]
    elif arg == "--wrap":
        wrap = args[i + 1]
if "--wait" not in args:
    sys.exit("sbatch (test): the block goes on before the array has finished: it needs --wait")
low, high = map(int, array.split("-"))
if high < low:
    sys.exit("sbatch: error: Batch job submission failed: Invalid job array specification")
for task in range(low, high + 1):
    subprocess.run(["/bin/sh", "-c", wrap], env=dict(os.environ, SLURM_ARRAY_TASK_ID=str(task)), check=True)
"""


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.slow
def test_the_split_and_the_slurm_block_run_as_shown(tmp_path):
    preprocess = next(b for b in _blocks() if b.startswith("chatflow preprocess --mixture tiny_corpora"))
    preprocess = preprocess.split("\nchatflow search")[0]            # its search is the Slurm block's, run below
    slurm = next(b for b in _blocks() if "sbatch" in b)
    work = tmp_path / "work"
    work.mkdir()
    train_spm(work, name="tokenizer")                                # the user's tokenizer.model
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    (bin_dir / "sbatch").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    for block in (preprocess, slurm):
        done = subprocess.run(["bash", "-e", "-c", block], cwd=work, env=env, text=True, capture_output=True,
                              timeout=3000)
        assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert len((work / "proxies.txt").read_text().splitlines()) == 8
    assert len((work / "check.txt").read_text().splitlines()) == 6            # 2 seeds x chosen, reference, static
    report = json.loads((work / "search" / "report" / "report.json").read_text())
    assert report["final"]["test_set"]["split"]["part"] == "test" and report["final"]["seeds"] == ["0", "1"]
    assert (work / "search" / "chosen_mixture.json").is_file()
