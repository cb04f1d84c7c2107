"""Which method wins each ratio, by how much, and whether seeds could explain the margin.

The winner has the highest mean PSNR over its seeds on the first evaluation set; the margin
is its lead over the runner-up's mean. The *seed spread* is the larger of the two methods'
sample standard deviations over seeds (of those with two seeds or more): a margin above it is
reported as exceeding the seed spread, anything else honestly as "within seed spread". With
one seed per method there is no spread to compare with, and the verdict says so. A margin
below 0.001 dB is a tie. Beside it:
in how many of the seeds both ran the winner was ahead, and, when the two removed visibly
different fractions of the parameters (a searched plan hits the ratio less exactly than a
uniform one), that they are not the same size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from srprune.compare.stats import Group

SIZE_TOLERANCE = 0.01  # achieved ratios further apart than this are named in the verdict
TIE_DB = 0.001  # a smaller margin is a tie, whatever the seeds say


@dataclass(frozen=True)
class Verdict:
    ratio: float
    eval_name: str
    winner: str | None
    winner_psnr: float | None
    runner_up: str | None
    margin: float | None  # dB, winner mean - runner-up mean
    spread: float | None  # dB, max sample std over seeds of the two; None: one seed
    seeds: int  # seeds of the winner
    ahead: int  # seeds (run by both) where the winner beat the runner-up
    paired: int  # seeds run by both
    decisive: bool | None  # margin > spread; None when there is no spread or no runner-up
    text: str

    def as_dict(self) -> dict:
        return asdict(self)


def verdicts(groups: Sequence[Group], eval_name: str) -> list[Verdict]:
    """One verdict per ratio, in the order the ratios first appear in ``groups``."""
    ratios = list(dict.fromkeys(g.ratio for g in groups))
    return [judge([g for g in groups if g.ratio == r], r, eval_name) for r in ratios]


def judge(groups: Sequence[Group], ratio: float, eval_name: str) -> Verdict:
    """The verdict for the methods of one ratio."""
    ranked = sorted((g for g in groups if g.rows), key=lambda g: g.psnr(eval_name).mean,
                    reverse=True)
    head = f"ratio {ratio:g}"
    if not ranked:
        return Verdict(ratio, eval_name, None, None, None, None, None, 0, 0, 0, None,
                       f"{head}: no finished cell, no verdict")
    best = ranked[0]
    best_psnr = best.psnr(eval_name)
    if len(ranked) == 1:
        return Verdict(ratio, eval_name, best.method, best_psnr.mean, None, None, None,
                       best_psnr.n, 0, 0, None,
                       f"{head}: only {best.method} finished ({best_psnr.mean:.3f} dB on "
                       f"{eval_name}); nothing to compare")
    second = ranked[1]
    second_psnr = second.psnr(eval_name)
    margin = best_psnr.mean - second_psnr.mean
    stds = [s for s in (best_psnr.std, second_psnr.std) if s is not None]
    spread = max(stds) if stds else None
    mine, theirs = best.by_seed(eval_name), second.by_seed(eval_name)
    both = sorted(set(mine) & set(theirs))
    ahead = sum(mine[s] > theirs[s] for s in both)
    text = (f"{head}: {best.method} wins on {eval_name} with {best_psnr.mean:.3f} dB, "
            f"{margin:+.3f} dB over {second.method}")
    if margin < TIE_DB:
        decisive = False
        text = (f"{head}: {best.method} and {second.method} tie on {eval_name} at "
                f"{best_psnr.mean:.3f} dB (a margin below {TIE_DB:g} dB)")
    elif spread is None:
        decisive = None
        text += ("; one seed per method, so the spread over seeds is unknown "
                 "(pass --seeds 0,1,2 to measure it)")
    else:
        decisive = margin > spread
        judged = ("the margin exceeds the seed spread" if decisive
                  else "within seed spread")
        seeds = (f"{best_psnr.n} seeds" if best_psnr.n == second_psnr.n
                 else f"{best_psnr.n} and {second_psnr.n} seeds")
        text += (f"; {judged} (std up to {spread:.3f} dB over {seeds}; "
                 f"ahead in {ahead} of {len(both)} seeds)")
    removed = [g.spread(lambda r: r.get("ratio_achieved")).mean for g in (best, second)]
    if not any(map(math.isnan, removed)) and abs(removed[0] - removed[1]) > SIZE_TOLERANCE:
        text += (f"; not the same size: {best.method} removed {removed[0]:.3f} of the "
                 f"parameters, {second.method} {removed[1]:.3f}")
    return Verdict(ratio, eval_name, best.method, best_psnr.mean, second.method, margin,
                   spread, best_psnr.n, ahead, len(both), decisive, text)
