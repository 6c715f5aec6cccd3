"""METHOD.md's claims 1-4, decided on test MSE by the project's rule.

The rule (METHOD.md, evaluation protocol): a difference between two methods is called real
only when their spreads — mean ± std over seeds — do not overlap. Each claim is reported as
"holds", "does not hold", or "not decided" with the reason (spreads overlap, a cell was not
run, fewer than two seeds), and with the numbers that decided it.

How each claim is read (the comparison it rests on):

1. "Complementary teachers help: the committee beats the foundation-model teacher alone":
   DiverseDistill from the committee LM + MLP-L against DiverseDistill from the LM alone
   (the same method, one complementary teacher more).
2. "Naive multi-teacher mixing can fall below single-teacher distillation": some
   multi-teacher baseline (MT, AMTML, AutoSKD, AEKD) on LM + MLP-L is really worse than the
   best single-teacher baseline (LD, FD, SCKD on LM or on MLP-L, the lowest mean). Holds if
   one is; does not hold if every one is really better; DiverseDistill is left out of both
   sides, so the claim is about mixing and not about DiverseDistill (that is claim 3).
3. "DiverseDistill beats every single- and multi-teacher baseline in every setting": per
   setting (LM alone, MLP-L alone, LM + MLP-L) DiverseDistill against each baseline run in
   it. Holds if DiverseDistill is really better in every comparison; does not hold if any
   baseline is really better than it.
4. "A diverse committee (LM + MLP-L) beats a similar one (MLP-M + MLP-L)": DiverseDistill
   from each.

Claim 5 (importance gating) is not decided by the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "not decided"
LOWER, HIGHER, OVERLAP, NO_SPREAD = "lower", "higher", "overlap", "no spread"
MIN_SEEDS = 2  # a spread needs at least two seeds

LABELS = {"ld": "LD", "fd": "FD", "sckd": "SCKD", "mt": "MT", "amtml": "AMTML",
          "autoskd": "AutoSKD", "aekd": "AEKD", "diversedistill": "DiverseDistill"}
TEACHER_LABELS = {"lm": "LM", "mlp-l": "MLP-L", "mlp-m": "MLP-M", "mlp-s": "MLP-S"}
SINGLE_BASELINES = ("ld", "fd", "sckd")
MULTI_BASELINES = ("mt", "amtml", "autoskd", "aekd")
SINGLE_SETTINGS = ("lm", "mlp-l")
COMMITTEE = "lm+mlp-l"
SIMILAR = "mlp-m+mlp-l"
DD = "diversedistill"

Cell = tuple[str, str]  # (method, committee), as in results.csv: ("ld", "lm+mlp-l")


@dataclass(frozen=True)
class Spread:
    """Test MSE of one method × committee over seeds."""

    mean: float
    std: float
    seeds: int


def committee_label(teachers: str) -> str:
    return " + ".join(TEACHER_LABELS.get(t, t) for t in teachers.split("+"))


def cell_label(cell: Cell) -> str:
    method, teachers = cell
    return f"{LABELS.get(method, method)} from {committee_label(teachers)}"


def compare(a: Spread, b: Spread) -> str:
    """Where a's spread lies against b's: LOWER (wholly below: a is really better, MSE),
    HIGHER (wholly above), OVERLAP (touching counts), or NO_SPREAD (< 2 seeds)."""
    if min(a.seeds, b.seeds) < MIN_SEEDS:
        return NO_SPREAD
    if a.mean + a.std < b.mean - b.std:
        return LOWER
    if a.mean - a.std > b.mean + b.std:
        return HIGHER
    return OVERLAP


@dataclass
class Claim:
    number: int
    statement: str  # METHOD.md's words
    reading: str  # the comparison it is decided on here
    verdict: str  # "holds", "does not hold", "not decided (<reason>)"
    evidence: list[str] = field(default_factory=list)  # the numbers, one line each


def _line(a: Cell, b: Cell, spreads: Mapping[Cell, Spread], relation: str) -> str:
    sa, sb = spreads[a], spreads[b]
    words = {LOWER: "spreads do not overlap: lower", HIGHER: "spreads do not overlap: higher",
             OVERLAP: "spreads overlap", NO_SPREAD: "fewer than 2 seeds: no spread"}[relation]
    return (f"{cell_label(a)} {sa.mean:.4f} ± {sa.std:.4f} ({sa.seeds} seeds) against "
            f"{cell_label(b)} {sb.mean:.4f} ± {sb.std:.4f} ({sb.seeds} seeds): {words}")


def _undecided(relations: list[str], missing: list[Cell]) -> str:
    reasons = []
    if OVERLAP in relations:
        reasons.append("spreads overlap")
    if NO_SPREAD in relations:
        reasons.append(f"fewer than {MIN_SEEDS} seeds")
    if missing:
        reasons.append("not run: " + ", ".join(cell_label(c) for c in missing))
    return f"{UNDECIDED} ({'; '.join(reasons)})"


def _missing(cells, spreads) -> list[Cell]:
    return [c for c in cells if c not in spreads]


def _all_lower(pairs: list[tuple[Cell, Cell]], spreads) -> tuple[str, list[str]]:
    """Verdict of "a beats b for every pair": holds if every a is really lower, does not
    hold if any a is really higher, else not decided."""
    missing = _missing(dict.fromkeys(c for pair in pairs for c in pair), spreads)
    relations, evidence = [], []
    for a, b in pairs:
        if a in spreads and b in spreads:
            relation = compare(spreads[a], spreads[b])
            relations.append(relation)
            evidence.append(_line(a, b, spreads, relation))
    if HIGHER in relations:
        return FAILS, evidence
    if relations and all(r == LOWER for r in relations) and not missing:
        return HOLDS, evidence
    return _undecided(relations, missing), evidence


def decide_claims(spreads: Mapping[Cell, Spread],
                  lm_alone: Spread | None = None) -> list[Claim]:
    """Claims 1-4 from the test MSE spread of every (method, committee) run.

    ``lm_alone``, the LM teacher's own test MSE, is quoted beside claim 1 for context; it
    does not decide it.
    """
    claims = []

    verdict, evidence = _all_lower([((DD, COMMITTEE), (DD, "lm"))], spreads)
    if lm_alone is not None:
        evidence.append(f"for context, the LM teacher alone: {lm_alone.mean:.4f}")
    claims.append(Claim(
        1, "Complementary teachers help: the committee beats the foundation-model teacher alone.",
        "DiverseDistill from LM + MLP-L against DiverseDistill from LM alone (the same "
        "method, one complementary teacher more).", verdict, evidence))

    claims.append(_claim_2(spreads))

    pairs = [((DD, s), (m, s)) for s in SINGLE_SETTINGS for m in SINGLE_BASELINES]
    pairs += [((DD, COMMITTEE), (m, COMMITTEE)) for m in MULTI_BASELINES]
    verdict, evidence = _all_lower(pairs, spreads)
    per_setting = []
    for setting in (*SINGLE_SETTINGS, COMMITTEE):
        part, _ = _all_lower([p for p in pairs if p[0][1] == setting], spreads)
        per_setting.append(f"setting {committee_label(setting)}: {part}")
    claims.append(Claim(
        3, "DiverseDistill beats every single- and multi-teacher baseline in every setting.",
        "Per setting (LM alone, MLP-L alone, LM + MLP-L), DiverseDistill against each baseline "
        "of Tables 3 and 4 run in it.", verdict, per_setting + evidence))

    verdict, evidence = _all_lower([((DD, COMMITTEE), (DD, SIMILAR))], spreads)
    claims.append(Claim(
        4, "A diverse committee (LM + MLP-L) beats a similar one (MLP-M + MLP-L).",
        "DiverseDistill from LM + MLP-L against DiverseDistill from MLP-M + MLP-L.",
        verdict, evidence))
    return claims


def _claim_2(spreads: Mapping[Cell, Spread]) -> Claim:
    statement = "Naive multi-teacher mixing can fall below single-teacher distillation."
    reading = ("Some multi-teacher baseline (MT, AMTML, AutoSKD, AEKD) on LM + MLP-L is worse "
               "than the best single-teacher baseline (LD, FD, SCKD on LM or MLP-L; lowest "
               "mean test MSE). DiverseDistill is on neither side.")
    singles = [(m, s) for s in SINGLE_SETTINGS for m in SINGLE_BASELINES]
    multis = [(m, COMMITTEE) for m in MULTI_BASELINES]
    ran = [c for c in singles if c in spreads]
    if not ran:
        return Claim(2, statement, reading, _undecided([], singles), [])
    best = min(ran, key=lambda c: spreads[c].mean)
    relations, evidence = [], [f"best single-teacher baseline: {cell_label(best)}"]
    for cell in multis:
        if cell in spreads:
            relation = compare(spreads[cell], spreads[best])
            relations.append(relation)
            evidence.append(_line(cell, best, spreads, relation))
    missing = _missing(multis, spreads)
    if HIGHER in relations:
        verdict = HOLDS
    elif relations and all(r == LOWER for r in relations) and not missing:
        verdict = FAILS
    else:
        verdict = _undecided(relations, missing)
    return Claim(2, statement, reading, verdict, evidence)


def format_claims(claims: list[Claim], seeds: int) -> str:
    """claims.md: each claim, how it is read, its verdict and the numbers behind it."""
    lines = ["# METHOD.md's claims, decided on test MSE", "",
             f"Mean ± std over {seeds} seed(s). A difference is called real only when the "
             "spreads (mean ± std) do not overlap (METHOD.md); lower MSE is better.", ""]
    if seeds < 5:
        lines += [f"Caution: {seeds} seed(s); METHOD.md asks for 5 for headline claims.", ""]
    for c in claims:
        lines += [f"## Claim {c.number}: {c.verdict}", "", f"> {c.statement}", "",
                  f"Read as: {c.reading}", ""]
        lines += [f"- {e}" for e in c.evidence] + [""]
    lines.append("Claim 5 (importance gating saves ~30% of teacher passes) is not decided by "
                 "these tables.")
    return "\n".join(lines) + "\n"
