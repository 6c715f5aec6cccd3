"""What a user rated before, for a text-reading teacher: from the training split only.

For the rating of item ``i`` by user ``u`` the history is built from ``u``'s *training*
ratings of items other than ``i``:

- ``user_count``, ``user_mean``: how many such ratings there are and their mean;
- ``item_count``, ``item_mean``: the same for ``i``'s training ratings by users other
  than ``u``;
- ``history``: the ``k`` of them whose items are most similar to ``i`` (cosine of the two
  items' sets of training raters — who rated, never how, so no rating value enters the
  choice), most similar first, each as a short title with its stars.

Leaving ``i`` out is what keeps the target out of the text: a training row's own rating
is never in its history, and validation and test rows (never in the training split) see
training ratings only. One rule for every split, so a training text looks like the
texts the model is later asked about (tested in ``tests/recipes/test_history.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from diversedistill.errors import ConfigError
from diversedistill_recipes.movielens.releases import Ratings

HISTORY_FIELDS = ("history", "user_mean", "user_count", "item_mean", "item_count")
# a dense item × item similarity costs n_items² floats: 3,706² for ML-1M, 10,677² for
# ML-10M (0.5 GB); beyond this, refuse with the reason rather than exhaust memory
MAX_ITEMS_FOR_SIMILARITY = 20_000


@dataclass(frozen=True)
class HistoryConfig:
    """How much of each user's training history a text carries."""

    k: int = 3  # rated titles shown, most similar to the rated item first
    title_words: int = 4  # words kept of each shown title (its year and aliases dropped)

    def __post_init__(self):
        if self.k < 0:
            raise ConfigError(f"history k must be at least 0, got {self.k}")
        if self.title_words < 1:
            raise ConfigError(f"history title_words must be at least 1, got {self.title_words}")


@dataclass
class Histories:
    """Per-row history of the rows it was built for: arrays [n] and, for ``picks``,
    the item codes [n, k] (−1 where the user has fewer than ``k`` other ratings)."""

    count: np.ndarray  # [n] int64: the user's other training ratings
    mean: np.ndarray  # [n] float64, NaN where count is 0
    item_count: np.ndarray  # [n] int64: the item's training ratings by other users
    item_mean: np.ndarray  # [n] float64, NaN where item_count is 0
    picks: np.ndarray  # [n, k] int64 item codes, most similar first
    stars: np.ndarray  # [n, k] float32 ratings of the picks


def item_similarity(train: Ratings, n_items: int, block: int = 512) -> np.ndarray:
    """[n_items, n_items] float32 cosine similarity of the items' training rater sets;
    the diagonal is 0 (an item is never its own neighbour)."""
    if n_items > MAX_ITEMS_FOR_SIMILARITY:
        raise ConfigError(f"a history of similar items needs an {n_items:,} × {n_items:,} "
                          f"similarity; above {MAX_ITEMS_FOR_SIMILARITY:,} items set history_k "
                          f"to 0 (the means without titles) or history to false")
    n_users = int(train.user.max()) + 1 if len(train) else 0
    index = torch.from_numpy(np.stack([train.item, train.user]))
    raters = torch.sparse_coo_tensor(index, torch.ones(len(train)), (n_items, n_users),
                                     check_invariants=True).coalesce()
    # a pair rated twice still counts once
    raters = torch.sparse_coo_tensor(raters.indices(), torch.ones_like(raters.values()),
                                     raters.shape, check_invariants=True).coalesce()
    counts = torch.zeros(n_items).index_add_(0, raters.indices()[0], raters.values())
    sims = np.empty((n_items, n_items), np.float32)
    for start in range(0, n_items, block):
        stop = min(start + block, n_items)
        # only a block of items is ever dense: [n_users, b], not the whole rater matrix
        dense = raters.index_select(0, torch.arange(start, stop)).to_dense().T
        co = torch.sparse.mm(raters, dense)  # [n_items, b] co-rater counts
        norm = (counts[:, None] * counts[None, start:stop]).clamp_min(1).sqrt()
        sims[:, start:stop] = (co / norm).numpy()
    np.fill_diagonal(sims, 0.0)
    return sims


def build_histories(train: Ratings, user: np.ndarray, item: np.ndarray, n_items: int,
                    k: int) -> Histories:
    """The history of every (user, item) row from ``train``, leaving the row's item out."""
    n = len(user)
    count, mean = np.zeros(n, np.int64), np.full(n, np.nan)
    own_count, own_sum = np.zeros(n, np.int64), np.zeros(n)  # the row's own training rating
    picks, stars = np.full((n, k), -1, np.int64), np.zeros((n, k), np.float32)
    sims = item_similarity(train, n_items) if k else None
    n_users = int(max(user.max(initial=-1), train.user.max(initial=-1))) + 1
    by_user = np.argsort(train.user, kind="stable")
    bounds = np.searchsorted(train.user[by_user], np.arange(n_users + 1))
    rows_by_user = np.argsort(user, kind="stable")
    row_bounds = np.searchsorted(user[rows_by_user], np.arange(n_users + 1))
    for u in range(n_users):
        rows = rows_by_user[row_bounds[u]:row_bounds[u + 1]]
        if not len(rows):
            continue
        mine = by_user[bounds[u]:bounds[u + 1]]
        items, ratings = train.item[mine], train.rating[mine].astype(np.float64)
        own = item[rows][:, None] == items[None, :]  # [rows, n_u]: the row's own item
        kept = ~own
        count[rows] = kept.sum(1)
        own_count[rows], own_sum[rows] = own.sum(1), (ratings[None, :] * own).sum(1)
        total = (ratings[None, :] * kept).sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[rows] = np.where(count[rows] > 0, total / count[rows], np.nan)
        if not k or not len(items):
            continue
        score = sims[item[rows][:, None], items[None, :]]  # [rows, n_u]
        score = np.where(kept, score, -np.inf)
        # most similar first; equal similarity: the lower item code first (deterministic)
        order = np.lexsort((np.broadcast_to(items, score.shape), -score), axis=1)[:, :k]
        chosen = np.take_along_axis(score, order, 1) > -np.inf
        take = min(k, order.shape[1])
        picks[rows, :take] = np.where(chosen, items[order], -1)
        stars[rows, :take] = np.where(chosen, ratings[order], 0)
    item_n = np.bincount(train.item, minlength=n_items)[item] - own_count
    item_sum = np.bincount(train.item, train.rating.astype(np.float64), n_items)[item] - own_sum
    with np.errstate(invalid="ignore", divide="ignore"):
        item_mean = np.where(item_n > 0, item_sum / np.maximum(item_n, 1), np.nan)
    return Histories(count, mean, item_n, item_mean, picks, stars)


_PARENTHESES = re.compile(r"\s*\([^)]*\)")
_ARTICLE = re.compile(r",\s*(The|A|An|L'|La|Le|Les|Il|Das|Der|Die|El)$")


def short_title(title: str, words: int) -> str:
    """'Godfather: Part II, The (1974)' -> 'Godfather: Part II' (years, aliases and moved
    articles dropped; at most ``words`` words): history entries cost tokens for every row."""
    title = _ARTICLE.sub("", _PARENTHESES.sub("", title).strip()).strip()
    return " ".join(title.split()[:words]) or "untitled"


def format_stars(value: float) -> str:
    return f"{value:g}"


def history_parts(histories: Histories, titles: list[str], cfg: HistoryConfig
                  ) -> list[dict[str, str]]:
    """The template fields ``history``, ``user_mean``, ``user_count`` of every row."""
    shorts = [short_title(t, cfg.title_words) for t in titles]
    parts = []
    h = histories
    for count, mean, i_count, i_mean, picks, stars in zip(
            h.count.tolist(), h.mean.tolist(), h.item_count.tolist(), h.item_mean.tolist(),
            h.picks.tolist(), h.stars.tolist()):
        # stars first: a title cut to a few words never runs into the number
        shown = [f"{format_stars(s)} {shorts[i]}" for i, s in zip(picks, stars) if i >= 0]
        parts.append({"history": ", ".join(shown) or "nothing yet",
                      "user_mean": f"{mean:.1f}" if count else "unknown",
                      "user_count": str(count),
                      "item_mean": f"{i_mean:.1f}" if i_count else "unknown",
                      "item_count": str(i_count)})
    return parts


def shown_star_mean(histories: Histories) -> np.ndarray:
    """[n] mean of the stars a text shows (NaN where it shows none): the history
    statistic a non-LM reference is given (rating_recipes.history_reference)."""
    shown = histories.picks >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(shown.any(1), (histories.stars * shown).sum(1) / shown.sum(1), np.nan)
