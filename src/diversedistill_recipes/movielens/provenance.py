"""Where a model's numbers come from: the data, the split and the teachers of a run.

Every exported teacher or student records, under ``data`` in its ``config.json``:
the release, a fingerprint of the ratings (``data_sha256``), the split (its name, how to
make it again, and a fingerprint of its three parts) and the field schema. A distill run
also records each teacher's weight hash (``teacher_weights``), in its ``run.json``, its
export and its checkpoints, so that ``--resume`` with other ratings, another split or
another teacher of the same name is refused.

Before distilling, each teacher's record is compared with the run's data:

- other fields (another release, other side tables): refused, the teacher cannot run;
- other ratings, or a split that cannot be made again: its overlap with the run's
  validation and test rows cannot be checked, so it is refused;
- the same ratings but another split: the teacher's training rows are made again and
  compared with the run's validation and test rows; any overlap is refused (the student
  would be scored on ratings its teacher learned).

``--allow-teacher-overlap`` turns the last two refusals into a printed warning. A teacher
that records no data at all (exported by the Python API) is used with a warning.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np

from diversedistill.errors import ConfigError, DiverseDistillError, ModelError
from diversedistill_recipes.movielens.releases import MovieLens
from diversedistill_recipes.movielens.splits import RatingSplit, make_split

ALLOW_FLAG = "--allow-teacher-overlap"


def data_fingerprint(ml: MovieLens) -> str:
    """SHA-256 (16 hex digits) of the ratings and the id tables: another file, another
    release or one changed rating gives another fingerprint."""
    digest = hashlib.sha256()
    for array in (ml.user_ids, ml.item_ids, ml.ratings.user, ml.ratings.item, ml.ratings.rating):
        digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def split_fingerprint(split: RatingSplit) -> str:
    digest = hashlib.sha256(split.name.encode())
    for part in (split.train, split.val, split.test):
        for array in (part.user, part.item, part.rating):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


def data_record(ml: MovieLens, split: RatingSplit, release: str, split_kind: str,
                split_seed: int) -> dict:
    """The ``data`` entry of an export: release, fingerprints, split and field schema."""
    return {"release": release, "data_sha256": data_fingerprint(ml),
            "split": {"name": split.name, "kind": split_kind, "seed": split_seed,
                      "sha256": split_fingerprint(split)},
            "fields": [asdict(f) for f in ml.fields]}


def run_settings(record: dict, teacher_weights: dict[str, str] | None = None) -> dict:
    """The provenance a resumed run must share with the run it resumes (flat keys, so the
    refusal names the one that differs)."""
    settings = {"data.release": record["release"], "data.sha256": record["data_sha256"],
                "data.split": record["split"]["name"],
                "data.split_sha256": record["split"]["sha256"]}
    for name, digest in (teacher_weights or {}).items():
        settings[f"teacher {name}.weights_sha256"] = digest
    return settings


def _pairs(part, n_items: int) -> np.ndarray:
    return part.user.astype(np.int64) * (n_items + 1) + part.item.astype(np.int64)


def check_teacher(name: str, config: dict, ml: MovieLens, split: RatingSplit, record: dict,
                  allow_overlap: bool) -> str | None:
    """Refuse a teacher that does not fit this run's data or learned its held-out rows;
    return a warning to print when it is used anyway (or records nothing)."""
    theirs = config.get("data")
    if not isinstance(theirs, dict):
        return (f"warning: teacher {name!r} records no training data; its overlap with this "
                "run's validation and test rows cannot be checked")
    try:
        fields, release = theirs["fields"], theirs["release"]
        same_data = theirs["data_sha256"] == record["data_sha256"]
        their_split = theirs["split"]
    except (KeyError, TypeError):
        raise ModelError(
            f"teacher {name!r}: its config.json has a malformed 'data' record") from None
    if fields != record["fields"]:
        raise ModelError(
            f"teacher {name!r} was trained on {release} with other fields "
            f"({_schema(fields)}) than this run's {record['release']} "
            f"({_schema(record['fields'])}); "
            "it cannot run on this data")

    def refuse_or_warn(reason: str) -> str:
        if not allow_overlap:
            raise ConfigError(f"teacher {name!r} {reason}; distill with data and a split that "
                              f"keep them apart, or pass {ALLOW_FLAG} to use it anyway")
        return f"warning: teacher {name!r} {reason} (allowed by {ALLOW_FLAG})"

    if release != record["release"] or not same_data:
        return refuse_or_warn(
            f"was trained on other ratings ({release}, data {theirs['data_sha256']}) than this "
            f"run's ({record['release']}, data {record['data_sha256']}); its overlap with the "
            "validation and test rows cannot be checked")
    if their_split.get("sha256") == record["split"]["sha256"]:
        return None  # the same split: the teacher never saw the validation or test rows
    try:
        again = make_split(ml, their_split["kind"], int(their_split["seed"]))
    except (KeyError, TypeError, ValueError, DiverseDistillError):
        again = None
    if again is None or split_fingerprint(again) != their_split.get("sha256"):
        return refuse_or_warn(f"was trained on split {their_split.get('name')!r}, which cannot "
                              "be made again here; its overlap with the validation and test "
                              "rows cannot be checked")
    held_out = np.concatenate([_pairs(split.val, ml.n_items), _pairs(split.test, ml.n_items)])
    seen = int(np.isin(held_out, _pairs(again.train, ml.n_items)).sum())
    if seen == 0:
        return None
    return refuse_or_warn(
        f"was trained on {seen} of this run's {len(held_out)} validation and test ratings "
        f"(its split {their_split.get('name')}, this run's {split.name})")


def _schema(fields: list) -> str:
    try:
        return ", ".join(f"{f['name']} {f['cardinality']}" for f in fields)
    except (KeyError, TypeError):
        return "unreadable"
