"""What the code reads at run time ships with the package, from the one copy in models/ and corpora/; paths
written into generated files follow one rule; `chatflow --version`."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chatflow_plugin import __version__
from chatflow_plugin.errors import ChatflowError
from chatflow_plugin.files import path_for_file, resolve_from_file
from chatflow_plugin.resources import resource

ROOT = Path(__file__).resolve().parents[1]


def test_resources_found_in_a_checkout():
    assert resource("models/mixtures/tiny_corpora.json") == ROOT / "models/mixtures/tiny_corpora.json"
    assert (resource("corpora") / "en_corpus").is_dir()
    with pytest.raises(ChatflowError, match="no/such.json"):
        resource("models/no/such.json")


@pytest.mark.slow
def test_wheel_bundles_models_and_corpora_unchanged(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next(tmp_path.glob("chatflow_plugin-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        bundled = {n[len("chatflow_plugin/_bundled/"):]: hashlib.sha256(z.read(n)).hexdigest()
                   for n in z.namelist() if n.startswith("chatflow_plugin/_bundled/")}
    expected = {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in list((ROOT / "models").rglob("*.json")) + list((ROOT / "corpora").rglob("*.jsonl"))}
    assert expected and all(bundled.get(k) == v for k, v in expected.items())   # the same bytes, nothing missing
    assert not any(k.endswith(".py") for k in bundled)                          # data only, no generator code


def test_paths_in_generated_files_are_relative_inside_the_tree_else_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = Path("out")
    assert path_for_file(out / "data" / "train", out / "mixtures" / "m.json", tree=out) == "../data/train"
    assert path_for_file("/opt/corpus", out / "mixtures" / "m.json", tree=out) == "/opt/corpus"
    assert path_for_file("elsewhere", out / "m.json", tree=out) == str(tmp_path / "elsewhere")   # outside the tree
    assert path_for_file(out / "x", out / "m.json") == str(tmp_path / "out" / "x")              # no tree: absolute
    # read back from anywhere
    monkeypatch.chdir("/")
    assert resolve_from_file("../data/train", tmp_path / "out" / "mixtures" / "m.json") == tmp_path / "out/data/train"
    assert resolve_from_file("/opt/corpus", tmp_path / "m.json") == Path("/opt/corpus")


def test_version_flag(capsys):
    from chatflow_plugin.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"chatflow-plugin {__version__}"


def test_readme_has_the_two_fresh_machine_commands_ci_runs():
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        from readme_commands import fresh_machine_commands
    finally:
        sys.path.pop(0)
    main_job, tests = fresh_machine_commands((ROOT / "README.md").read_text(encoding="utf-8"))[:2]
    assert main_job.startswith("pip install torch==2.13.0 && ") and "-c constraints.txt" in main_job
    assert "chatflow demo --quick" in main_job and " -e " not in main_job     # a regular install
    assert "-c constraints.txt" in tests and tests.endswith("python -m pytest -q tests")
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


# --- resources by name ---------------------------------------------------------------------------------------------

def test_every_named_resource_is_a_packaged_file_and_commands_take_the_names(capsys, tmp_path, monkeypatch):
    from chatflow_plugin.cli import main
    from chatflow_plugin.resources import NAMED, named

    for kind, entries in NAMED.items():
        for name, (relative, about) in entries.items():
            assert named(kind, name) == resource(relative) and about
    monkeypatch.chdir(tmp_path)                              # from any directory
    assert named("model_config", "models/hf/demo_tiny.json") == resource("models/hf/demo_tiny.json")
    assert main(["mixture", "table1", "--at", "0"]) == 0
    assert "mixture chatflow_table1" in capsys.readouterr().out
    assert main(["resources", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["model_config"]["tiny"]["path"] == str(resource("models/hf/demo_tiny.json"))
    (tmp_path / "table1").write_text("{}")                    # a file of that name wins over the packaged one
    assert named("mixture", "table1") == Path("table1")
    assert main(["mixture", "nosuch", "--at", "0"]) == 2
    assert "or the name of a packaged mixture: table1" in capsys.readouterr().err


def _fake_hub_cache(home: Path, repo: str, model: Path) -> Path:
    """A Hugging Face cache under ``home`` holding ``model`` as the snapshot of ``repo``'s main branch."""
    import shutil

    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    snapshot = folder / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(model, snapshot)
    return snapshot


def test_a_hub_id_resolves_through_the_local_cache_or_says_how_to_download(tmp_path, spm_model):
    pytest.importorskip("huggingface_hub")
    from test_clo_support import tiny_llama_dir

    model = tiny_llama_dir(tmp_path / "model", spm_model)
    home = tmp_path / "hf_home"
    snapshot = _fake_hub_cache(home, "someorg/tiny-llama", model)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1")
    script = ("import sys; from chatflow_plugin.resources import local_model; from chatflow_plugin.tokenizer import "
              "load_tokenizer; print(local_model(sys.argv[1])); print(load_tokenizer(sys.argv[1]).file)")
    done = subprocess.run([sys.executable, "-c", script, "someorg/tiny-llama"], env=env, capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert Path(lines[0]) == snapshot and Path(lines[1]).parent == snapshot
    missing = subprocess.run([sys.executable, "-m", "chatflow_plugin.cli", "clo-train", "--model",
                              "meta-llama/Llama-2-7b-hf", "--data", str(tmp_path), "--output_dir", str(tmp_path / "o")],
                             env=env, capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "--model meta-llama/Llama-2-7b-hf: no such folder here, and not in the local Hugging Face cache" in \
        missing.stderr and "hf download meta-llama/Llama-2-7b-hf" in missing.stderr


@pytest.mark.slow
def test_after_a_regular_install_the_names_work_from_an_empty_directory(tmp_path, spm_model):
    """A real `pip install .` (not editable) into a scratch virtual environment, then commands by name from an
    empty directory: chatflow mixture table1, preprocess of the bundled corpora split in two, train --model_config
    tiny with TensorBoard."""
    venv = tmp_path / "venv"
    # without pip of its own: the system's pip and setuptools (which builds wheels) install into it
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    str(ROOT)], check=True, timeout=900, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    chatflow = str(venv / "bin" / "chatflow")

    def run(*args):
        done = subprocess.run([chatflow, *map(str, args)], cwd=empty, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import chatflow_plugin; print(chatflow_plugin.__file__)"],
                           cwd=empty, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where and str(ROOT) not in where                     # the installed copy, not the checkout
    assert "mixture chatflow_table1" in run("mixture", "table1", "--at", "0")
    assert "_bundled" in run("resources")
    run("preprocess", "--mixture", "tiny_corpora", "--tokenizer", spm_model, "--output_dir", "data", "--split",
        "train:0.95,valid:0.05", "--workers", "1", "--quiet")
    run("train", "--dataset_dir", "data/train", "--heldout_dir", "data/valid", "--model_config", "tiny",
        "--output_dir", "run", "--train_steps", "2", "--micro_batch_size", "2", "--threads", "1", "--quiet",
        "--report_to", "tensorboard")
    assert (empty / "run" / "final" / "config.json").is_file() and list((empty / "run" / "tensorboard").iterdir())
