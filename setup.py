"""chatflow-plugin's build.

Version ranges: each upper bound sits below the next major release nobody has tested; the exact versions the
suite was last verified with are in constraints.txt (``pip install -c constraints.txt ...``).

Packaged files: the top-level ``models/`` (mixture, model and DeepSpeed configs, the special-token map) and the
bundled synthetic ``corpora/`` are what the code reads at run time. They keep their one home at the top level
(what host users edit); a regular build copies them into the package as ``chatflow_plugin/_bundled/``, where
``chatflow_plugin.resources`` finds them. An editable install reads the checkout's own files instead.
"""
import fnmatch
import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = {  # top-level folder -> file patterns copied into chatflow_plugin/_bundled/<folder>/
    "models": ["*.json", "*.txt", "*.md"],
    "corpora": ["*.jsonl", "*.json", "*.csv", "README.md"],
}


def _bundled_files():
    for folder, patterns in BUNDLED.items():
        for root, dirs, files in os.walk(os.path.join(HERE, folder)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            for name in sorted(files):
                if any(fnmatch.fnmatch(name, p) for p in patterns):
                    yield os.path.relpath(os.path.join(root, name), HERE)


class BuildWithBundle(build_py):
    """Copy models/ and corpora/ into the built package (never into the source tree)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return   # an editable install reads the checkout's files (chatflow_plugin.resources)
        for rel in _bundled_files():
            target = os.path.join(self.build_lib, "chatflow_plugin", "_bundled", rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(HERE, rel), target)


def _version():
    with open(os.path.join(HERE, "chatflow_plugin", "__init__.py"), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("no __version__ in chatflow_plugin/__init__.py")


setup(
    name="chatflow-plugin",
    version=_version(),
    description="ChatFlow's dynamic data sampler, vocabulary expansion and CLO for TencentPretrain and HuggingFace",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["chatflow_plugin", "chatflow_plugin.*"]),
    cmdclass={"build_py": BuildWithBundle},
    install_requires=[
        "torch>=2.1,<2.15",
        "sentencepiece>=0.1.99,<0.3",
        "numpy>=1.24,<3",
        "argparse-dataclass>=2.0,<3",
        "tqdm>=4.60,<5",
        "xxhash>=3,<5",   # the shard checksums (xxh3-128, ~10 GB/s; blake2b, ~0.4 GB/s, is the fallback)
    ],
    extras_require={
        # selenium drives Debian's chromium/chromium-driver in tests/test_arena_browser.py (skipped without them)
        "test": ["pytest>=7,<10", "selenium>=4.10,<5", "zstandard>=0.19,<1", "pyarrow>=12,<27", "tensorboard>=2.10,<3"],
        # corpus files: .zst text (Python 3.14+ reads it without this) and parquet / Arrow / datasets folders
        "zstd": ["zstandard>=0.19,<1"],
        "parquet": ["pyarrow>=12,<27"],
        # experiment trackers (`--report_to`; docs/demo.md "Experiment trackers"), each optional
        "tensorboard": ["tensorboard>=2.10,<3"],
        "wandb": ["wandb>=0.17,<1"],
        "mlflow": ["mlflow-skinny>=2.14,<4", "sqlalchemy>=1.4,<3", "alembic>=1.8,<2"],   # the SQLite store
        "trackio": ["trackio>=0.2,<1"],
        "plot": ["matplotlib>=3.5,<4"],
        "hf": ["transformers>=4.40,<6", "tokenizers>=0.19,<1", "safetensors>=0.4,<1", "accelerate>=0.30,<2",
               "protobuf>=3.20,<8",
               "sacremoses>=0.1,<1"],
        # only for the test that checks our scores against lm-evaluation-harness
        "lmeval": ["lm-eval==0.4.13"],
        "host": ["six>=1.16,<2", "regex>=2023.0", "packaging>=23,<27", "deepspeed>=0.14,<1"],
        # `chatflow arena`: the web page (served locally, offline; see docs/arena.md)
        "arena": ["gradio>=6.0,<7", "matplotlib>=3.5,<4"],
    },
    entry_points={"console_scripts": ["chatflow=chatflow_plugin.cli:main"]},
)
