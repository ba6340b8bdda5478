from setuptools import find_packages, setup

setup(
    name="chatflow-plugin",
    version="0.1.0",
    description="ChatFlow's dynamic data sampler, vocabulary expansion and CLO for TencentPretrain and HuggingFace",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["chatflow_plugin", "chatflow_plugin.*"]),
    include_package_data=True,
    install_requires=[
        "torch>=2.1,<2.15",
        "sentencepiece>=0.1.99",
        "numpy>=1.24",
        "argparse-dataclass>=2.0",
        "tqdm>=4.60",
    ],
    extras_require={
        # selenium drives Debian's chromium/chromium-driver in tests/test_arena_browser.py (skipped without them)
        "test": ["pytest>=7", "selenium>=4.10,<5"],
        "plot": ["matplotlib>=3.5"],
        "hf": ["transformers>=4.40", "safetensors>=0.4", "accelerate>=0.30", "protobuf>=3.20", "sacremoses"],
        # only for the test that checks our scores against lm-evaluation-harness
        "lmeval": ["lm-eval==0.4.13"],
        "host": ["six", "regex", "packaging", "deepspeed"],
        # `chatflow arena`: the web page (served locally, offline; see docs/arena.md)
        "arena": ["gradio>=6.0,<7", "matplotlib>=3.5"],
    },
    entry_points={"console_scripts": ["chatflow=chatflow_plugin.cli:main"]},
)
