"""chatflow-plugin: ChatFlow's dynamic data sampler (arXiv 2405.10626) for TencentPretrain and HuggingFace.

The core (mixture, schedule, sampler, formats, shards) imports no host. Host adapters live in
``chatflow_plugin.hosts``; ``register()`` plugs the plugin into TencentPretrain's registries.
"""
__version__ = "0.1.0"


def register():
    """Add ``dynamic_mixture`` and ``chatflow_instruction`` to TencentPretrain's registries (idempotent)."""
    from .hosts.tencentpretrain.host import register as _register

    return _register()
