"""METHOD.md's claims 1-4, decided on the test metric by the project's rule.

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

The cells are named by :class:`ClaimSettings`: MovieLens (:data:`MOVIELENS_CLAIMS`) as above,
test MSE, lower better; the vision tables their own teachers (CLIP as the foundation model,
ViT-L as the complementary teacher), test accuracy, higher better, and no similar committee
(claim 4 is then left out).

Claim 5 (importance gating) is not decided by the tables but by the τ sweep
(:func:`diversedistill_recipes.comparison.gating_claim.decide_gating_claim`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from diversedistill_recipes.comparison.results import MSE, Metric

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "not decided"
LOWER, HIGHER, OVERLAP, NO_SPREAD = "lower", "higher", "overlap", "no spread"
MIN_SEEDS = 2  # a spread needs at least two seeds

LABELS = {"ld": "LD", "fd": "FD", "sckd": "SCKD", "mt": "MT", "amtml": "AMTML",
          "autoskd": "AutoSKD", "aekd": "AEKD", "diversedistill": "DiverseDistill"}
TEACHER_LABELS = {"lm": "LM", "mlp-l": "MLP-L", "mlp-m": "MLP-M", "mlp-s": "MLP-S",
                  "clip": "CLIP", "vit-l": "ViT-L", "vit-s": "ViT-S"}
SINGLE_BASELINES = ("ld", "fd", "sckd")
MULTI_BASELINES = ("mt", "amtml", "autoskd", "aekd")
SINGLE_SETTINGS = ("lm", "mlp-l")
COMMITTEE = "lm+mlp-l"
SIMILAR = "mlp-m+mlp-l"
DD = "diversedistill"

Cell = tuple[str, str]  # (method, committee), as in results.csv: ("ld", "lm+mlp-l")


@dataclass(frozen=True)
class ClaimSettings:
    """Which cells the claims compare in one domain, and which way the metric is better."""

    singles: tuple[str, ...]  # single-teacher settings; the first is the foundation model
    committee: str  # the diverse committee, as results.csv names it ("lm+mlp-l")
    similar: str | None = None  # a committee of similar teachers (claim 4), if any
    metric: Metric = MSE

    @property
    def foundation(self) -> str:
        return self.singles[0]

    @property
    def better(self) -> str:
        """The relation of a really better spread: LOWER for MSE, HIGHER for accuracy."""
        return HIGHER if self.metric.higher_is_better else LOWER

    @property
    def worse(self) -> str:
        return LOWER if self.metric.higher_is_better else HIGHER

    @property
    def short(self) -> str:  # "MSE", "accuracy"
        return self.metric.label.removeprefix("test ")


MOVIELENS_CLAIMS = ClaimSettings(SINGLE_SETTINGS, COMMITTEE, SIMILAR)


@dataclass(frozen=True)
class Spread:
    """The test metric of one method × committee over seeds."""

    mean: float
    std: float
    seeds: int


def committee_label(teachers: str) -> str:
    return " + ".join(TEACHER_LABELS.get(t, t) for t in teachers.split("+"))


def cell_label(cell: Cell) -> str:
    method, teachers = cell
    return f"{LABELS.get(method, method)} from {committee_label(teachers)}"


def compare(a: Spread, b: Spread) -> str:
    """Where a's spread lies against b's: LOWER (wholly below: a is really better for MSE),
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


def _all_better(pairs: list[tuple[Cell, Cell]], spreads,
                settings: ClaimSettings) -> tuple[str, list[str]]:
    """Verdict of "a beats b for every pair": holds if every a is really better (lower MSE,
    higher accuracy), does not hold if any a is really worse, else not decided."""
    missing = _missing(dict.fromkeys(c for pair in pairs for c in pair), spreads)
    relations, evidence = [], []
    for a, b in pairs:
        if a in spreads and b in spreads:
            relation = compare(spreads[a], spreads[b])
            relations.append(relation)
            evidence.append(_line(a, b, spreads, relation))
    if settings.worse in relations:
        return FAILS, evidence
    if relations and all(r == settings.better for r in relations) and not missing:
        return HOLDS, evidence
    return _undecided(relations, missing), evidence


def decide_claims(spreads: Mapping[Cell, Spread], foundation_alone: Spread | None = None,
                  settings: ClaimSettings = MOVIELENS_CLAIMS) -> list[Claim]:
    """Claims 1-4 (1-3 without a similar committee) from the test spread of every
    (method, committee) run.

    ``foundation_alone``, the foundation-model teacher's own test score (the LM's), is
    quoted beside claim 1 for context; it does not decide it.
    """
    s = settings
    f, c = committee_label(s.foundation), committee_label(s.committee)
    claims = []

    verdict, evidence = _all_better([((DD, s.committee), (DD, s.foundation))], spreads, s)
    if foundation_alone is not None:
        evidence.append(f"for context, the {f} teacher alone: {foundation_alone.mean:.4f}")
    claims.append(Claim(
        1, "Complementary teachers help: the committee beats the foundation-model teacher alone.",
        f"DiverseDistill from {c} against DiverseDistill from {f} alone (the same "
        "method, one complementary teacher more).", verdict, evidence))

    claims.append(_claim_2(spreads, s))

    pairs = [((DD, t), (m, t)) for t in s.singles for m in SINGLE_BASELINES]
    pairs += [((DD, s.committee), (m, s.committee)) for m in MULTI_BASELINES]
    verdict, evidence = _all_better(pairs, spreads, s)
    per_setting = []
    for setting in (*s.singles, s.committee):
        part, _ = _all_better([p for p in pairs if p[0][1] == setting], spreads, s)
        per_setting.append(f"setting {committee_label(setting)}: {part}")
    settings_words = ", ".join([f"{committee_label(t)} alone" for t in s.singles] + [c])
    claims.append(Claim(
        3, "DiverseDistill beats every single- and multi-teacher baseline in every setting.",
        f"Per setting ({settings_words}), DiverseDistill against each baseline "
        "of Tables 3 and 4 run in it.", verdict, per_setting + evidence))

    if s.similar is not None:
        similar = committee_label(s.similar)
        verdict, evidence = _all_better([((DD, s.committee), (DD, s.similar))], spreads, s)
        claims.append(Claim(
            4, f"A diverse committee ({c}) beats a similar one ({similar}).",
            f"DiverseDistill from {c} against DiverseDistill from {similar}.",
            verdict, evidence))
    return claims


def _claim_2(spreads: Mapping[Cell, Spread], s: ClaimSettings) -> Claim:
    statement = "Naive multi-teacher mixing can fall below single-teacher distillation."
    c = committee_label(s.committee)
    singles_words = " or ".join(committee_label(t) for t in s.singles)
    best_words = f"{'highest' if s.metric.higher_is_better else 'lowest'} mean {s.metric.label}"
    reading = (f"Some multi-teacher baseline (MT, AMTML, AutoSKD, AEKD) on {c} is worse "
               f"than the best single-teacher baseline (LD, FD, SCKD on {singles_words}; "
               f"{best_words}). DiverseDistill is on neither side.")
    singles = [(m, t) for t in s.singles for m in SINGLE_BASELINES]
    multis = [(m, s.committee) for m in MULTI_BASELINES]
    ran = [cell for cell in singles if cell in spreads]
    if not ran:
        return Claim(2, statement, reading, _undecided([], singles), [])
    pick = max if s.metric.higher_is_better else min
    best = pick(ran, key=lambda cell: spreads[cell].mean)
    relations, evidence = [], [f"best single-teacher baseline: {cell_label(best)}"]
    for cell in multis:
        if cell in spreads:
            relation = compare(spreads[cell], spreads[best])
            relations.append(relation)
            evidence.append(_line(cell, best, spreads, relation))
    missing = _missing(multis, spreads)
    if s.worse in relations:
        verdict = HOLDS
    elif relations and all(r == s.better for r in relations) and not missing:
        verdict = FAILS
    else:
        verdict = _undecided(relations, missing)
    return Claim(2, statement, reading, verdict, evidence)


def format_claims(claims: list[Claim], seeds: int,
                  settings: ClaimSettings = MOVIELENS_CLAIMS) -> str:
    """claims.md: each claim, how it is read, its verdict and the numbers behind it."""
    direction = "higher" if settings.metric.higher_is_better else "lower"
    lines = [f"# METHOD.md's claims, decided on {settings.metric.label}", "",
             (f"Mean ± std over {seeds} seed(s). A difference is called real only when the "
              f"spreads (mean ± std) do not overlap (METHOD.md); {direction} {settings.short} "
              "is better."), ""]
    if seeds < 5:
        lines += [f"Caution: {seeds} seed(s); METHOD.md asks for 5 for headline claims.", ""]
    for c in claims:
        lines += [f"## Claim {c.number}: {c.verdict}", "", f"> {c.statement}", "",
                  f"Read as: {c.reading}", ""]
        lines += [f"- {e}" for e in c.evidence] + [""]
    if settings.similar is None:
        lines += [("Claim 4 (a diverse committee beats a similar one) needs a committee of "
                   "similar teachers, which this experiment does not have."), ""]
    lines.append("Claim 5 (importance gating saves ~30% of teacher passes) is decided by the τ "
                 "sweep (`reproduce movielens --tau-sweep`), not by these tables.")
    return "\n".join(lines) + "\n"
