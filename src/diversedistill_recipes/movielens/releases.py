"""MovieLens in every official release layout, read into one in-memory form.

Layouts (detected from the files present in the directory):

- ``ml-100k``: ``u.data`` (tab), ``u.item`` and ``u.user`` (``|``, latin-1), ``u.genre``;
  official folds ``u1..u5.base/.test`` and ``ua/ub.base/.test``.
- ``ml-1m`` (and ``ml-10m``): ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``).
  ML-10M has no ``users.dat``: its demographics are absent, not an error.
- CSV releases (``ml-latest-small``, ``ml-25m``, ``ml-32m``): ``ratings.csv``, ``movies.csv``
  with headers; half-star ratings and no demographics.

Side features a release lacks are simply left out of :attr:`MovieLens.fields`, so models
built from the schema never see them. Every categorical code 0 means "unknown".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from diversedistill.errors import DataError
from diversedistill_recipes.movielens.delimited import numeric_column, read_table

# ML-1M's age groups; ML-100K's exact ages are put into the same groups so that both
# releases give a model the same feature.
AGE_GROUP_EDGES = (18, 25, 35, 45, 50, 56)
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
ML1M_AGE_CODES = (1, 18, 25, 35, 45, 50, 56)
ZIP_PREFIX_LENGTH = 2  # first two characters: ~100 regions, enough to be a signal at this size
_YEAR = re.compile(r"\((\d{4})\)\s*$")


@dataclass(frozen=True)
class Field:
    """One categorical input of a recommender: ``owner`` says which table indexes it."""

    name: str
    owner: str  # "user" or "item"
    cardinality: int  # number of codes, code 0 = unknown
    multi_hot: bool = False  # genres: a set of codes per item


@dataclass
class Ratings:
    """Rating triples with 0-based contiguous user and item codes."""

    user: np.ndarray  # [n] int64
    item: np.ndarray  # [n] int64
    rating: np.ndarray  # [n] float32

    def __len__(self) -> int:
        return len(self.rating)

    def subset(self, index: np.ndarray) -> Ratings:
        return Ratings(self.user[index], self.item[index], self.rating[index])


@dataclass
class MovieLens:
    """A MovieLens release: ratings plus the user and item side tables it ships."""

    name: str
    path: Path
    ratings: Ratings
    user_ids: np.ndarray  # raw id of each user code
    item_ids: np.ndarray  # raw id of each item code
    rating_scale: tuple[float, float]
    fields: list[Field]
    user_features: dict[str, np.ndarray]  # field name -> [n_users] int64 codes
    item_features: dict[str, np.ndarray]  # field name -> [n_items] int64 codes
    genres: np.ndarray | None  # [n_items, n_genres] float32 multi-hot, None if absent
    genre_names: list[str] = field(default_factory=list)
    # Readable side information kept for text-reading teachers (language models).
    titles: list[str] = field(default_factory=list)
    user_info: pd.DataFrame | None = None  # raw age, gender, occupation, zip per user code

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def summary(self) -> str:
        side = ", ".join(f.name for f in self.fields if f.name not in ("user", "item"))
        return (
            f"{self.name}: {len(self.ratings):,} ratings, {self.n_users:,} users, "
            f"{self.n_items:,} items, ratings {self.rating_scale[0]:g}..{self.rating_scale[1]:g}"
            f"; side features: {side or 'none'}"
        )


LAYOUT_MARKERS = {"u.data": "ml-100k", "ratings.dat": "dat", "ratings.csv": "csv"}


# the layout each official release ships in; any other release name is refused
RELEASE_LAYOUTS = {"ml-100k": "ml-100k", "ml-1m": "dat", "ml-10m": "dat",
                   "ml-latest-small": "csv", "ml-latest": "csv", "ml-20m": "csv",
                   "ml-25m": "csv", "ml-32m": "csv"}


def release_layout(release: str) -> str:
    """The file layout of ``release``; a name that is not a MovieLens release is an error."""
    if release not in RELEASE_LAYOUTS:
        raise DataError(f"unknown MovieLens release {release!r}; known: "
                        f"{', '.join(RELEASE_LAYOUTS)}")
    return RELEASE_LAYOUTS[release]


def detect_layout(path: Path, release: str | None = None) -> str | None:
    """The layout of the release in ``path``: the one ``release`` ships in, if its ratings
    file is there (a directory may hold several releases' files), else the first found."""
    for marker, layout in LAYOUT_MARKERS.items():
        if release is not None and layout != release_layout(release):
            continue
        if (path / marker).is_file():
            return layout
    return None


def load_movielens(path: str | Path, release: str | None = None) -> MovieLens:
    """Read the MovieLens release in directory ``path``: ``release``'s files when given
    (``--release`` decides when a directory holds more than one release), else the layout
    detected from its files."""
    path = Path(path)
    layout = detect_layout(path, release)
    if layout is None:
        raise DataError(
            f"{path}: no MovieLens ratings file here (expected u.data for ML-100K, "
            "ratings.dat for ML-1M/10M, or ratings.csv for the CSV releases)"
        )
    return {"ml-100k": _load_100k, "dat": _load_dat, "csv": _load_csv}[layout](path)


# --------------------------------------------------------------------------- ML-100K


def read_100k_ratings(path: Path) -> pd.DataFrame:
    """u.data and the u1..u5/ua/ub fold files: user, item, rating, timestamp (tab)."""
    return _read_ratings(path, "\t", ["user", "item", "rating", "timestamp"])[0]


def _read_ratings(path: Path, sep: str, columns: list[str], header: bool = False,
                  half_stars: bool | None = False) -> tuple[pd.DataFrame, tuple[float, float]]:
    """Rating triples with their line numbers, and the rating scale they were checked
    against; ``half_stars=None`` reads the scale off the ratings."""
    frame = read_table(path, sep, columns, header=header)
    user, item, rating, timestamp = columns
    out = pd.DataFrame({
        "user": numeric_column(frame, user, path),
        "item": numeric_column(frame, item, path),
        "rating": numeric_column(frame, rating, path, kind=float),
        "_line": frame["_line"].to_numpy(),
    })
    _check_timestamps(frame, timestamp, numeric_column(frame, timestamp, path), path)
    if half_stars is None:
        half_stars = bool((out["rating"] % 1 != 0).any())
    low = 0.5 if half_stars else 1.0
    _check_scale(out, path, low, 5, step=low)
    _check_unique_pairs(out, path)
    return out, (low, 5.0)


def _check_timestamps(frame: pd.DataFrame, column: str, stamps: np.ndarray, path: Path) -> None:
    """Seconds since 1970: no release has one before it, so a negative one is damage."""
    bad = stamps < 0
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}, line {frame['_line'].iat[row]}: {column} {stamps[row]} is "
                        "negative; a timestamp counts seconds since 1970")


def _check_unique_pairs(ratings: pd.DataFrame, path: Path) -> None:
    """One rating per (user, item): a repeated pair would be counted twice in training, or
    land in both the training and the test part of a split."""
    repeated = ratings.duplicated(["user", "item"]).to_numpy()
    if not repeated.any():
        return
    row = int(np.argmax(repeated))
    user, item = ratings["user"].iat[row], ratings["item"].iat[row]
    first = int(np.argmax((ratings["user"].to_numpy() == user)
                          & (ratings["item"].to_numpy() == item)))
    raise DataError(
        f"{path}, line {ratings['_line'].iat[row]}: user {user} rated item {item} again "
        f"(first at line {ratings['_line'].iat[first]}); {int(repeated.sum())} ratings repeat "
        "a (user, item) pair rated before them; keep one rating per pair"
    )


def _load_100k(path: Path) -> MovieLens:
    ratings = read_100k_ratings(path / "u.data")
    genre_names = _read_100k_genres(path)
    item_cols = ["item", "title", "release", "video_release", "url"] + [
        f"g{i}" for i in range(len(genre_names))
    ]
    items = read_table(path / "u.item", "|", item_cols, encoding="latin-1")
    item_ids = numeric_column(items, "item", path / "u.item")
    genres = np.stack(
        [numeric_column(items, f"g{i}", path / "u.item") for i in range(len(genre_names))], 1
    ).astype(np.float32)
    titles = items["title"].tolist()
    users = read_table(path / "u.user", "|", ["user", "age", "gender", "occupation", "zip"])
    user_ids = numeric_column(users, "user", path / "u.user")
    ages = numeric_column(users, "age", path / "u.user")
    user_info = pd.DataFrame({
        "age": ages, "gender": users["gender"].to_numpy(),
        "occupation": users["occupation"].to_numpy(), "zip": users["zip"].to_numpy(),
    })
    return _assemble(
        "ml-100k", path, ratings, path / "u.data", user_ids, item_ids, (1.0, 5.0),
        user_side={
            "age": np.searchsorted(AGE_GROUP_EDGES, ages, side="right") + 1,
            "gender": _codes(users["gender"]),
            "occupation": _codes(users["occupation"]),
            "zip": _codes(users["zip"].str[:ZIP_PREFIX_LENGTH]),
        },
        titles=titles, genres=genres, genre_names=genre_names, user_info=user_info,
    )


def _read_100k_genres(path: Path) -> list[str]:
    genre_file = path / "u.genre"
    if not genre_file.is_file():  # 19 genres in the official release
        return [f"genre{i}" for i in range(19)]
    frame = read_table(genre_file, "|", ["name", "code"])
    return frame["name"].tolist()


# --------------------------------------------------------------------------- ML-1M / 10M


def _load_dat(path: Path) -> MovieLens:
    ratings_file = path / "ratings.dat"
    # ML-1M has whole stars, ML-10M half stars: the scale is read off the ratings
    ratings, scale = _read_ratings(ratings_file, "::", ["user", "item", "rating", "timestamp"],
                                   half_stars=None)
    movies_file = path / "movies.dat"
    movies = read_table(movies_file, "::", ["item", "title", "genres"], encoding="latin-1")
    item_ids = numeric_column(movies, "item", movies_file)
    user_side, user_info = {}, None
    users_file = path / "users.dat"
    if users_file.is_file():
        users = read_table(users_file, "::", ["user", "gender", "age", "occupation", "zip"])
        user_ids = numeric_column(users, "user", users_file)
        age_code = numeric_column(users, "age", users_file)
        occupation = numeric_column(users, "occupation", users_file)
        _check_codes(users, "age", age_code, ML1M_AGE_CODES, users_file)
        _check_codes(users, "occupation", occupation, range(len(ML1M_OCCUPATIONS)), users_file)
        user_side = {
            "age": np.searchsorted(ML1M_AGE_CODES, age_code) + 1,
            "gender": _codes(users["gender"]),
            "occupation": occupation + 1,
            "zip": _codes(users["zip"].str[:ZIP_PREFIX_LENGTH]),
        }
        user_info = pd.DataFrame({
            "age": age_code, "gender": users["gender"].to_numpy(),
            "occupation": [ML1M_OCCUPATIONS[o] for o in occupation],
            "zip": users["zip"].to_numpy(),
        })
    else:  # ML-10M: no demographics
        user_ids = np.unique(ratings["user"].to_numpy())
    genres, genre_names = _split_genres(movies["genres"])
    return _assemble(
        path.name, path, ratings, ratings_file, user_ids, item_ids,
        scale, user_side=user_side,
        titles=movies["title"].tolist(), genres=genres, genre_names=genre_names,
        user_info=user_info,
    )


# --------------------------------------------------------------------------- CSV releases


def _load_csv(path: Path) -> MovieLens:
    ratings_file = path / "ratings.csv"
    ratings, scale = _read_ratings(ratings_file, ",", ["userId", "movieId", "rating", "timestamp"],
                                   header=True, half_stars=True)
    movies_file = path / "movies.csv"
    movies = read_table(movies_file, ",", ["movieId", "title", "genres"], header=True, quoted=True)
    item_ids = numeric_column(movies, "movieId", movies_file)
    genres, genre_names = _split_genres(movies["genres"])
    return _assemble(
        path.name, path, ratings, ratings_file, np.unique(ratings["user"].to_numpy()), item_ids,
        scale, user_side={}, titles=movies["title"].tolist(), genres=genres,
        genre_names=genre_names,
    )


# --------------------------------------------------------------------------- shared


def _assemble(
    name, path, ratings, ratings_file, user_ids, item_ids, scale, *, user_side, titles, genres,
    genre_names, user_info=None,
) -> MovieLens:
    user_ids = np.asarray(user_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    for kind, ids in (("user", user_ids), ("item", item_ids)):
        values, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise DataError(f"{path}: the {kind} table lists {kind} id "
                            f"{values[counts > 1][0]} more than once")
    triples = encode_ratings(ratings, ratings_file, user_ids, item_ids)
    years = pd.Series(titles).str.extract(_YEAR, expand=False)
    item_side = {"year": _codes(years.fillna(""), unknown="")}
    fields = [Field("user", "user", len(user_ids) + 1), Field("item", "item", len(item_ids) + 1)]
    fields += [Field(k, "user", int(v.max()) + 1) for k, v in user_side.items()]
    fields += [Field(k, "item", int(v.max()) + 1) for k, v in item_side.items()]
    if genres is not None and genres.shape[1]:
        fields.append(Field("genres", "item", genres.shape[1], multi_hot=True))
    return MovieLens(
        name=name, path=path, ratings=triples, user_ids=user_ids, item_ids=item_ids,
        rating_scale=scale, fields=fields,
        user_features={k: np.asarray(v, np.int64) for k, v in user_side.items()},
        item_features=item_side, genres=genres, genre_names=genre_names, titles=titles,
        user_info=user_info,
    )


def encode_ratings(
    ratings: pd.DataFrame, path: Path, user_ids: np.ndarray, item_ids: np.ndarray
) -> Ratings:
    """Map raw ids to codes 0..n-1; an id missing from the side tables is an error."""
    user = _lookup(ratings, "user", user_ids, path)
    item = _lookup(ratings, "item", item_ids, path)
    return Ratings(user, item, ratings["rating"].to_numpy(np.float32))


def _lookup(ratings: pd.DataFrame, column: str, ids: np.ndarray, path: Path) -> np.ndarray:
    order = np.argsort(ids)
    raw = ratings[column].to_numpy()
    pos = np.searchsorted(ids, raw, sorter=order).clip(0, len(ids) - 1)
    codes = order[pos]
    unknown = ids[codes] != raw
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataError(
            f"{path}, line {ratings['_line'].iat[row]}: unknown {column} id {raw[row]} "
            f"(not in the {column} table)"
        )
    return codes.astype(np.int64)


def _check_scale(frame: pd.DataFrame, path: Path, low: float, high: float, step: float) -> None:
    r = frame["rating"].to_numpy()
    bad = (r < low) | (r > high) | (np.abs(r / step - np.round(r / step)) > 1e-6)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{path}, line {frame['_line'].iat[row]}: rating {r[row]:g} is outside "
            f"{low:g}..{high:g} in steps of {step:g}"
        )


def _check_codes(frame, column, values, allowed, path) -> None:
    bad = ~np.isin(values, list(allowed))
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}, line {frame['_line'].iat[row]}: "
                        f"unknown {column} code {values[row]}")


def _codes(values: pd.Series, unknown: str | None = None) -> np.ndarray:
    """Categorical codes 1..k in sorted order of the distinct values; 0 = unknown."""
    values = values.astype(str).str.strip()
    cats = sorted(v for v in values.unique() if v != unknown)
    lookup = {v: i + 1 for i, v in enumerate(cats)}
    return values.map(lambda v: lookup.get(v, 0)).to_numpy(np.int64)


def _split_genres(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    lists = [g.split("|") for g in column]
    names = sorted({g for gs in lists for g in gs if g and g != "(no genres listed)"})
    index = {g: i for i, g in enumerate(names)}
    multi_hot = np.zeros((len(lists), len(names)), np.float32)
    for row, gs in enumerate(lists):
        for g in gs:
            if g in index:
                multi_hot[row, index[g]] = 1.0
    return multi_hot, names
