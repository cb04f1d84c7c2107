"""srprune: make super-resolution networks physically smaller and really faster."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("srprune")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"

from srprune.errors import SrpruneError

__all__ = ["SrpruneError", "__version__", "compress", "load"]


def __getattr__(name: str):  # lazy: importing srprune stays cheap
    if name == "compress":
        from srprune.api import compress_model

        return compress_model
    if name == "load":
        from srprune.api import load

        return load
    raise AttributeError(name)
