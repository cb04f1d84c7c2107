"""The authors' channel-config text format: one inner width per line, in network order.

Order: the P DownBlock inner widths; then for each decoder stage its B RCAB inner widths
followed by the stage's upsampler width. So a file has P + P * (B + 1) lines.
"""

from __future__ import annotations

from pathlib import Path

from srprune.io.widths import format_width_lines, parse_width_lines, read_text
from srprune.models.drn import DRNWidths, full_widths

CONFIG_DIR = Path(__file__).parent / "configs"


def parse_widths(text: str, source: str, scale: int, n_feats: int, n_blocks: int) -> DRNWidths:
    """Parse and validate a channel config against the full DRN it prunes."""
    full = full_widths(scale, n_feats, n_blocks)
    values = parse_width_lines(text, source, full.as_lines(), what="channel config",
                               expected=f" for a x{scale} DRN with {n_blocks} blocks",
                               bound="the original width")
    return widths_from_lines(values, full)


def widths_from_lines(values: list[int], full: DRNWidths) -> DRNWidths:
    """Split a flat list (already validated) into the DRN width structure."""
    levels, n_blocks = len(full.down), len(full.rcab[0])
    rest = values[levels:]
    stages = [rest[i * (n_blocks + 1):(i + 1) * (n_blocks + 1)] for i in range(levels)]
    return DRNWidths(
        down=values[:levels],
        rcab=[stage[:n_blocks] for stage in stages],
        up=[stage[n_blocks] for stage in stages],
    )


def read_widths(path: str | Path, scale: int, n_feats: int, n_blocks: int) -> DRNWidths:
    """Read a channel-config file; a missing or unreadable file raises SrpruneError."""
    path = Path(path)
    return parse_widths(read_text(path, "channel config"), str(path), scale, n_feats, n_blocks)


def format_widths(widths: DRNWidths) -> str:
    """Write widths in the authors' text format."""
    return format_width_lines(widths.as_lines())
