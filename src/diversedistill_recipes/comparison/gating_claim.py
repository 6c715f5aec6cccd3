"""METHOD.md's claim 5, decided from the τ sweep (:mod:`~diversedistill_recipes.comparison.sweep`).

"Importance gating at τ = 0.6 saves ~30% of teacher passes with no quality loss" is read at
the paper's τ and at the τ chosen on validation, by the claims' rule
(:mod:`~diversedistill_recipes.comparison.claims`): it holds at a τ that skips passes, saves
epoch time and whose test MSE is not really worse than τ = 0's (the spreads overlap or it
is lower). A τ whose asked rows are mostly the random exploration's saves passes by asking
a random sample, not by importance; the claim is about importance, so it does not hold
there.
"""

from __future__ import annotations

import math
import statistics

from diversedistill_recipes.comparison.claims import (
    FAILS,
    HIGHER,
    HOLDS,
    NO_SPREAD,
    UNDECIDED,
    Claim,
    Spread,
    compare,
)
from diversedistill_recipes.comparison.results import mean_std
from diversedistill_recipes.comparison.sweep import SweepRow, choose_tau, group_by_tau

PAPER_TAU = 0.6  # METHOD.md, claim 5


def decide_gating_claim(rows: list[SweepRow], paper_tau: float = PAPER_TAU) -> Claim:
    """METHOD.md's claim 5, at ``paper_tau`` and at the τ chosen on validation (module
    docstring): holds if it holds at both, does not hold if it fails at either."""
    statement = (f"Importance gating at τ = {paper_tau:g} saves ~30% of teacher passes with no "
                 "quality loss.")
    reading = ("each τ against τ = 0 on test MSE (spreads over seeds), with the passes it skips, "
               "the epoch time it saves, and whether α or the random exploration picked the "
               "rows asked")
    by_tau = group_by_tau(rows)
    if 0.0 not in by_tau:
        return Claim(5, statement, reading, f"{UNDECIDED} (no τ = 0 runs to compare with)")
    chosen = choose_tau(rows)
    taus = list(dict.fromkeys(t for t in (paper_tau, chosen) if t is not None and t != 0.0))
    verdicts, evidence = [], []
    for tau in taus:
        if tau not in by_tau:
            verdicts.append(f"{UNDECIDED} (τ = {tau:g} not run)")
            evidence.append(f"τ = {tau:g}: not run")
            continue
        verdict, line = _gating_at(by_tau[tau], by_tau[0.0])
        which = "the paper's" if tau == paper_tau else "chosen on validation"
        verdicts.append(verdict)
        evidence.append(f"τ = {tau:g} ({which}): {line}")
    if any(v == FAILS for v in verdicts):
        verdict = FAILS
    elif verdicts and all(v == HOLDS for v in verdicts):
        verdict = HOLDS
    else:
        verdict = next((v for v in verdicts if v.startswith(UNDECIDED)), UNDECIDED)
    return Claim(5, statement, reading, verdict, evidence)


def _gating_at(rows: list[SweepRow], base: list[SweepRow]) -> tuple[str, str]:
    """(verdict, evidence) of one τ's runs against the τ = 0 runs."""
    test = Spread(*mean_std([r.test_mse for r in rows]), len(rows))
    test0 = Spread(*mean_std([r.test_mse for r in base]), len(base))
    skipped = statistics.fmean(v for r in rows for v in r.skipped.values()) if any(
        r.skipped for r in rows) else 0.0
    seconds = statistics.fmean(r.epoch_seconds for r in rows)
    saved = 1 - seconds / statistics.fmean(r.epoch_seconds for r in base)
    by_alpha_values = [v for r in rows for v in r.by_alpha.values()]
    by_alpha = statistics.fmean(by_alpha_values) if by_alpha_values else math.nan
    explored = 1 - skipped - by_alpha
    relation = compare(test, test0)
    line = (f"skips {skipped:.1%} of teacher passes, saves {saved:.1%} of epoch time; of all "
            f"rows, {by_alpha:.1%} asked because α > τ and {explored:.1%} by the random "
            f"exploration; test MSE {test.mean:.4f} ± {test.std:.4f} against τ = 0's "
            f"{test0.mean:.4f} ± {test0.std:.4f} ({len(rows)} and {len(base)} seeds)")
    if relation == NO_SPREAD:
        return f"{UNDECIDED} (fewer than 2 seeds)", line
    if relation == HIGHER:
        return FAILS, line + ": really worse"
    if skipped <= 0 or saved <= 0:
        return FAILS, line + ": nothing saved"
    if not math.isnan(by_alpha) and explored >= by_alpha:
        return FAILS, line + ": the rows asked are mostly the random exploration's"
    return HOLDS, line + ": no real loss"



def format_gating_claim(claim: Claim) -> str:
    return "\n".join([f"Claim 5: {claim.verdict}. {claim.statement}",
                      *[f"- {e}" for e in claim.evidence]])
