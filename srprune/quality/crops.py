"""Side-by-side crops, as SR papers show results: where do the models differ, and how much?

For one image, :func:`crop_sets` takes the outputs of several models (the unpruned one first,
then every compressed one, INT8 files included), the bicubic upscale and, when there is one,
the ground truth (HR); it picks the regions where the models disagree most
(:func:`choose_regions`) and cuts the same square from every picture, each with its PSNR on
Y: against HR when there is one, otherwise against the first model's output ("vs ...").
:func:`crops_section` renders them as HTML: a thumbnail of the whole image with the regions
boxed, a row of crops per region (shown enlarged with square pixels; click one to see it
larger), every picture embedded as a base64 PNG, so the page needs no file or URL beside it.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from srprune.quality.metrics import bicubic_upscale, psnr_y, rgb_to_y

SHOW = 200  # CSS pixels a crop is shown at (enlarged; five fit in a row of the reports)
THUMB = 280  # longest side of the whole-image thumbnail


@dataclass
class Panel:
    """One picture's crop: ``pixels`` uint8 hxwx3, its PSNR (dB) and what it was measured
    against (``"HR"``, the reference label; ``None`` for HR and the reference itself)."""

    label: str
    pixels: np.ndarray
    psnr: float | None = None
    against: str | None = None


@dataclass
class CropSet:
    """One region of one image: where it is and every picture's crop of it."""

    image: str
    box: tuple[int, int, int]  # y, x, side (output pixels)
    panels: list[Panel]
    thumbnail: np.ndarray  # uint8, the whole image small, every region of it boxed


def crop_side(size: tuple[int, int]) -> int:
    """A crop side for an output of ``size``: a quarter of the short side, 32 to 128 px."""
    return int(max(min(32, min(size)), min(128, min(size) // 4)))


def disagreement(outputs: Sequence[np.ndarray], hr: np.ndarray | None = None,
                 bicubic: np.ndarray | None = None) -> np.ndarray:
    """Per pixel, how much the models' outputs differ (std of Y across them); with one
    output, its distance to HR (or, without HR, to bicubic: where the model did work)."""
    ys = [rgb_to_y(np.clip(o, 0, 255)) for o in outputs]
    if len(ys) >= 2:
        return np.std(np.stack(ys), axis=0)
    other = hr if hr is not None else bicubic
    if other is None or not ys:
        return np.zeros(outputs[0].shape[:2]) if len(outputs) else np.zeros((1, 1))
    return np.abs(ys[0] - rgb_to_y(np.clip(other, 0, 255)))


def choose_regions(score: np.ndarray, side: int, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping ``side`` x ``side`` windows (top-left y, x) with the
    largest summed ``score``, best first (windows searched on a grid of side/4 steps)."""
    h, w = score.shape
    side = min(side, h, w)
    total = np.zeros((h + 1, w + 1))
    total[1:, 1:] = np.cumsum(np.cumsum(score, axis=0), axis=1)
    step = max(1, side // 4)
    ys = np.unique(np.r_[np.arange(0, h - side + 1, step), h - side])
    xs = np.unique(np.r_[np.arange(0, w - side + 1, step), w - side])
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    sums = (total[yy + side, xx + side] - total[yy, xx + side] - total[yy + side, xx]
            + total[yy, xx])
    chosen: list[tuple[int, int]] = []
    order = np.argsort(-sums, axis=None, kind="stable")
    for flat in order:
        y, x = int(yy.flat[flat]), int(xx.flat[flat])
        if all(abs(y - cy) >= side or abs(x - cx) >= side for cy, cx in chosen):
            chosen.append((y, x))
            if len(chosen) == count:
                break
    return chosen


def crop_sets(image: str, outputs: Sequence[tuple[str, np.ndarray]],
              bicubic: np.ndarray | None = None, hr: np.ndarray | None = None,
              count: int = 2, side: int | None = None) -> list[CropSet]:
    """The crops of one image: HR (if given), bicubic (if given), then ``outputs`` in order
    (label, SR HxWx3 on 0..255, the first is the reference when there is no HR), at the
    ``count`` regions where the outputs differ most."""
    if not outputs:
        return []
    size = outputs[0][1].shape[:2]
    side = side or crop_side(size)
    regions = choose_regions(disagreement([o for _, o in outputs], hr, bicubic), side, count)
    side = min(side, *size)
    pictures: list[tuple[str, np.ndarray]] = ([("HR", hr)] if hr is not None else []) + (
        [("bicubic", bicubic)] if bicubic is not None else []) + list(outputs)
    against_label = "HR" if hr is not None else outputs[0][0]
    against = hr if hr is not None else outputs[0][1]
    base = hr if hr is not None else outputs[0][1]
    thumb = _thumbnail(base, [(y, x, side) for y, x in regions])
    sets = []
    for y, x in regions:
        window = (slice(y, y + side), slice(x, x + side))
        panels = []
        for label, picture in pictures:
            crop = _levels(picture[window])
            is_reference = picture is against
            score = None if is_reference else _psnr(crop, _levels(against[window]))
            panels.append(Panel(label, crop, score, None if is_reference else against_label))
        sets.append(CropSet(image, (y, x, side), panels, thumb))
    return sets


def image_set_crops(runs: Sequence[tuple[str, Callable[[np.ndarray], np.ndarray]]],
                    images: Sequence, scale: int, limit: int = 3,
                    per_image: int = 2) -> list[CropSet]:
    """Crops of the first ``limit`` images of an evaluation set (``ImagePair``: HR and LR):
    HR, bicubic and every ``runs`` entry (label, ``LR HxWx3 -> SR`` function, the unpruned
    model first), ``per_image`` regions each."""
    sets: list[CropSet] = []
    for i in range(min(limit, len(images))):
        pair = images[i]
        lr = pair.lr[0]
        outputs = [(label, np.asarray(run(lr), dtype=np.float32)) for label, run in runs]
        sets += crop_sets(pair.name, outputs, bicubic_upscale(lr, scale), pair.hr, per_image)
    return sets


def _levels(picture: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(picture, 0, 255)).astype(np.uint8)


def _psnr(crop: np.ndarray, reference: np.ndarray) -> float:
    return psnr_y(crop.astype(np.float64), reference.astype(np.float64), 0)


def _thumbnail(picture: np.ndarray, boxes: list[tuple[int, int, int]]) -> np.ndarray:
    h, w = picture.shape[:2]
    factor = min(1.0, THUMB / max(h, w))
    im = Image.fromarray(_levels(picture))
    if factor < 1.0:
        im = im.resize((max(1, round(w * factor)), max(1, round(h * factor))),
                       Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(im)
    for i, (y, x, side) in enumerate(boxes, 1):
        box = [x * factor, y * factor, (x + side) * factor - 1, (y + side) * factor - 1]
        draw.rectangle(box, outline=(255, 40, 40), width=2)
        draw.text((box[0] + 3, box[1] + 2), str(i), fill=(255, 40, 40))
    return np.asarray(im)


# ------------------------------------------------------------------ HTML

CROP_STYLE = f"""
.crops figure {{ display: inline-block; margin: 0 6px 10px 0; vertical-align: top; }}
.crops figcaption {{ font-size: 12px; text-align: center; max-width: {SHOW}px; }}
.crops img.crop {{ width: {SHOW}px; height: {SHOW}px; image-rendering: pixelated; cursor: zoom-in;
  border: 1px solid #bbb; }}
.crops img.thumb {{ cursor: zoom-in; border: 1px solid #bbb; }}
.crops .region {{ margin: 4px 0 14px 0; }}
.crops h3 {{ font-size: 15px; margin: 18px 0 6px 0; }}
.crops .psnr {{ color: #333; }} .crops .best {{ font-weight: bold; color: #14532d; }}
#srp-zoom {{ display: none; position: fixed; inset: 0; background: rgba(0,0,0,.85);
  z-index: 10; cursor: zoom-out; align-items: center; justify-content: center;
  flex-direction: column; }}
#srp-zoom img {{ max-width: 94vw; max-height: 88vh; min-width: min(94vw, 88vh);
  image-rendering: pixelated; object-fit: contain; }}
#srp-zoom p {{ color: #fff; font: 15px system-ui, sans-serif; }}
"""

CROP_SCRIPT = """
function srpZoom(img) {
  var z = document.getElementById('srp-zoom');
  z.querySelector('img').src = img.src;
  z.querySelector('p').textContent = img.alt;
  z.style.display = 'flex';
}
"""


def png_data_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def crops_section(sets: Sequence[CropSet], heading: str, note: str = "") -> str:
    """HTML for ``sets`` (grouped by image), with its own style, zoom overlay and script."""
    esc = html.escape
    parts = ['<section class="crops">', f"<h2>{esc(heading)}</h2>"]
    if note:
        parts.append(f'<p class="note">{esc(note)}</p>')
    done_thumbs: set[str] = set()
    for n, s in enumerate(sets):
        if s.image not in done_thumbs:
            done_thumbs.add(s.image)
            parts.append(f"<h3>{esc(s.image)}</h3>")
            parts.append(f'<img class="thumb" alt="{esc(s.image)}: the regions cropped" '
                         f'src="{png_data_uri(s.thumbnail)}" onclick="srpZoom(this)">')
            index = 0
        index += 1
        y, x, side = s.box
        scored = [p.psnr for p in s.panels if p.psnr is not None and math.isfinite(p.psnr)]
        best = max(scored) if scored else None
        parts.append(f'<div class="region" data-region="{n}">'
                     f"<div>region {index}: {side}x{side} px at x={x}, y={y}</div>")
        for p in s.panels:
            if p.psnr is None:
                score = "reference"
            elif math.isinf(p.psnr):
                score = f"identical to {esc(p.against or '')}"
            else:
                mark = ' best' if (best is not None and p.psnr == best and len(scored) > 1
                                   and p.against == "HR") else ""
                vs = "" if p.against == "HR" else f" vs {esc(p.against or '')}"
                score = f'<span class="psnr{mark}">{p.psnr:.2f} dB{vs}</span>'
            alt = f"{s.image}, region {index}: {p.label}"
            parts.append(f'<figure><img class="crop" alt="{esc(alt)}" '
                         f'src="{png_data_uri(p.pixels)}" onclick="srpZoom(this)">'
                         f"<figcaption>{esc(p.label)}<br>{score}</figcaption></figure>")
        parts.append("</div>")
    parts += ['<div id="srp-zoom" onclick="this.style.display=\'none\'">'
              '<img class="zoomed" alt=""><p></p></div>', f"<style>{CROP_STYLE}</style>",
              f"<script>{CROP_SCRIPT}</script>", "</section>"]
    return "\n".join(parts)


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1200px; color: #222;
  padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
p.note { font-size: 13px; color: #444; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
"""


def page(title: str, body: Sequence[str]) -> str:
    """A self-contained HTML page: ``body`` (HTML fragments) under ``title``."""
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                      f"<title>{html.escape(title)}</title>", f"<style>{PAGE_STYLE}</style>",
                      "</head><body>", f"<h1>{html.escape(title)}</h1>", *body,
                      "</body></html>"]) + "\n"


def table_html(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = html.escape
    lines = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join([*lines, "</table>"])
