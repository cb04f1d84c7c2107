"""Search strategies; importing this package registers the built-ins."""

from srprune.search import dr_search, latency, simple  # noqa: F401  (registers the built-ins)
from srprune.search.base import Strategy, register_strategy, round_width

__all__ = ["Strategy", "register_strategy", "round_width"]
