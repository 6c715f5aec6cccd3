from pathlib import Path

import numpy as np
import pytest
from conftest import write_ml1m, write_ml_csv

from diversedistill.errors import ConfigError, DataError
from diversedistill_recipes.locate import locate_movielens
from diversedistill_recipes.movielens.batches import RatingBatches
from diversedistill_recipes.movielens.releases import load_movielens
from diversedistill_recipes.movielens.splits import make_split, random_split


def test_ml100k_layout_reads_ratings_and_side_features(ml100k_dir):
    ml = load_movielens(ml100k_dir)
    assert len(ml.ratings) == 600 and ml.n_users == 30 and ml.n_items == 40
    assert ml.field_names() == ["user", "item", "age", "gender", "occupation", "zip", "year",
                                "genres"]
    assert ml.ratings.user.min() == 0 and ml.ratings.user.max() < 30
    assert ml.genres.shape == (40, 4)
    assert ml.titles[0] == "Movie 1 (1951)"


def test_ml1m_layout_maps_age_groups_and_occupations(tmp_path):
    ml = load_movielens(write_ml1m(tmp_path / "ml-1m"))
    assert (ml.name, len(ml.ratings), ml.n_items) == ("ml-1m", 4, 3)
    assert ml.user_features["age"].tolist() == [1, 7, 3]  # groups 1, 56, 25
    assert ml.user_info["occupation"].tolist() == ["K-12 student", "self-employed", "scientist"]
    assert "genres" in ml.field_names()


def test_release_without_demographics_leaves_them_out(tmp_path):
    root = write_ml1m(tmp_path / "ml-10m", with_users=False)
    ml = load_movielens(root)
    assert ml.field_names() == ["user", "item", "year", "genres"]
    assert ml.rating_scale == (1.0, 5.0)
    (root / "ratings.dat").write_text("1::10::4.5::978300760\n2::20::0.5::978302109\n")
    assert load_movielens(root).rating_scale == (0.5, 5.0)  # ML-10M's half stars


def test_csv_release_reads_half_stars_and_quoted_titles(tmp_path):
    ml = load_movielens(write_ml_csv(tmp_path / "ml-latest-small"))
    assert ml.rating_scale == (0.5, 5.0)
    assert ml.ratings.rating.tolist() == [4.0, 4.5, 0.5, 3.5]
    assert ml.titles[1] == "American President, The (1995)"
    assert ml.field_names() == ["user", "item", "year", "genres"]
    assert ml.genres.sum(1).tolist() == [2, 2, 0]  # "(no genres listed)" is no genre


# (replacement for line 3 of u.data, what the error says); test_bad_input.py runs the
# same cases through the command line
MALFORMED_RATING_LINES = {
    "bad-separator": ("1,2,3,880000000",
                      "line 3: expected 4 tab-separated fields, found 1; is the separator tab?"),
    "missing-column": ("1\t2\t3", "line 3: expected 4 tab-separated fields"),
    "extra-column": ("1\t2\t3\t4\t5", "line 3: expected 4 tab-separated fields, found 5"),
    "non-integer-id": ("1\tabc\t3\t880000000", "line 3: item must be an integer, found 'abc'"),
    "rating-out-of-range": ("1\t2\t7\t880000000", "line 3: rating 7 is outside 1..5"),
    "half-star-in-ml100k": ("1\t2\t3.5\t880000000",
                            "line 3: rating 3.5 is outside 1..5 in steps of 1"),
    "nan-rating": ("1\t2\tnan\t880000000", "line 3: rating must be a number"),
    "unknown-item-id": ("1\t999\t3\t880000000", "line 3: unknown item id 999"),
}


@pytest.mark.parametrize("line, message", MALFORMED_RATING_LINES.values(),
                         ids=MALFORMED_RATING_LINES)
def test_malformed_rating_line_names_file_and_line(ml100k_dir, line, message):
    path = ml100k_dir / "u.data"
    lines = path.read_text().splitlines()
    lines[2] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        load_movielens(ml100k_dir)
    assert str(path) in str(err.value) and message in str(err.value)


def test_empty_and_missing_files_are_named(ml100k_dir):
    (ml100k_dir / "u.data").write_text("")
    with pytest.raises(DataError, match="u.data: file is empty"):
        load_movielens(ml100k_dir)
    (ml100k_dir / "u.data").write_text("1\t1\t3\t1\n")
    (ml100k_dir / "u.user").unlink()
    with pytest.raises(DataError, match="u.user: file not found"):
        load_movielens(ml100k_dir)


def test_wrong_encoding_names_the_line(tmp_path):
    root = write_ml_csv(tmp_path / "ml-latest-small")
    (root / "movies.csv").write_bytes(b"movieId,title,genres\n1,Toy Story (1995),Comedy\n"
                                      b"2,Caf\xe9 (1995),Drama\n3,Heat (1995),Action\n")
    with pytest.raises(DataError, match=r"movies.csv, line 3: not valid utf-8"):
        load_movielens(root)


def test_random_split_is_seeded_and_disjoint(ml100k_dir):
    ml = load_movielens(ml100k_dir)
    a, b, c = random_split(ml, 0), random_split(ml, 0), random_split(ml, 1)
    assert (len(a.train), len(a.val), len(a.test)) == (480, 60, 60)
    assert np.array_equal(a.test.user, b.test.user)
    assert not np.array_equal(a.test.user, c.test.user)
    keys = lambda r: set(zip(r.user.tolist(), r.item.tolist()))  # noqa: E731
    assert not keys(a.train) & keys(a.test) and not keys(a.val) & keys(a.test)


def test_official_fold_uses_its_test_file(ml100k_dir):
    ml = load_movielens(ml100k_dir)
    fold = make_split(ml, "u1", seed=0)
    assert len(fold.test) == 300 and len(fold.train) + len(fold.val) == 300
    with pytest.raises(ConfigError, match="unknown fold 'u9'"):
        make_split(ml, "u9", 0)


def test_batches_gather_side_features(ml100k_dir):
    ml = load_movielens(ml100k_dir)
    batch = RatingBatches(ml.ratings, ml)[[0, 5]]
    assert batch["genres"].shape == (2, 4) and batch["target"].dtype.is_floating_point
    assert batch["user"].min() >= 1  # 0 is reserved for "unknown"
    assert batch["age"].tolist() == ml.user_features["age"][ml.ratings.user[[0, 5]]].tolist()


def test_locate_prefers_data_dir_and_fails_with_one_message(tmp_path, ml100k_dir, monkeypatch):
    assert locate_movielens("ml-100k", ml100k_dir.parent) == ml100k_dir
    assert locate_movielens("ml-100k", ml100k_dir) == ml100k_dir
    monkeypatch.setenv("DIVERSEDISTILL_DATA", str(ml100k_dir.parent))
    assert locate_movielens("ml-100k") == ml100k_dir
    with pytest.raises(DataError) as err:
        locate_movielens("ml-100k", tmp_path / "nowhere")
    assert "u.data, u.item and u.user" in str(err.value) and "--data-dir" in str(err.value)


def test_offline_download_failure_says_where_to_put_files(tmp_path, monkeypatch):
    import urllib.request

    from diversedistill_recipes import locate

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.delenv("DIVERSEDISTILL_DATA", raising=False)
    monkeypatch.setattr(locate, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError,
                       match="could not be downloaded .*network is unreachable.*unzip it"):
        locate_movielens("ml-100k")
    assert not any((tmp_path / "cache").rglob("*.zip"))  # nothing half-written left behind


@pytest.mark.integration
def test_real_ml100k_matches_the_documented_counts(shared_ml100k):
    ml = load_movielens(shared_ml100k)
    assert (len(ml.ratings), ml.n_users, ml.n_items) == (100000, 943, 1682)
    counts = np.bincount(ml.ratings.rating.astype(int), minlength=6)[1:]
    assert counts.tolist() == [6110, 11370, 27145, 34174, 21201]
    split = random_split(ml, 0)
    assert (len(split.train), len(split.val), len(split.test)) == (80000, 10000, 10000)
    for fold in ("u1", "ua"):
        part = make_split(ml, fold, 0)
        assert len(part.test) == {"u1": 20000, "ua": 9430}[fold]


class _FakeResponse:
    def __init__(self, payload: bytes):
        self.payload = payload

    def read(self, *args):
        data, self.payload = self.payload, b""
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _serve_archive(monkeypatch, tmp_path, source_dir, md5=None):
    import hashlib
    import shutil
    import urllib.request

    from diversedistill_recipes import locate

    archive = shutil.make_archive(str(tmp_path / "ml-100k"), "zip", source_dir.parent, "ml-100k")
    payload = Path(archive).read_bytes()
    monkeypatch.delenv("DIVERSEDISTILL_DATA", raising=False)
    monkeypatch.setattr(locate, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setitem(locate.KNOWN_MD5, "ml-100k", md5 or hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _FakeResponse(payload))


def test_download_verifies_checksum_and_unpacks_into_the_cache(tmp_path, ml100k_dir, monkeypatch):
    _serve_archive(monkeypatch, tmp_path, ml100k_dir)
    found = locate_movielens("ml-100k")
    assert found == tmp_path / "cache" / "ml-100k"
    assert load_movielens(found).n_users == 30


def test_download_with_wrong_checksum_is_refused(tmp_path, ml100k_dir, monkeypatch):
    _serve_archive(monkeypatch, tmp_path, ml100k_dir, md5="0" * 32)
    with pytest.raises(DataError, match="checksum mismatch"):
        locate_movielens("ml-100k")
    assert not (tmp_path / "cache" / "ml-100k").exists()
