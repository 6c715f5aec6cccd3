"""Strict reading of delimited text tables, with errors that name the file and line.

pandas does the parsing (fast on the 25M-line releases); this module turns everything
pandas would report as a stack trace (a wrong separator, a short line, a word where a
number belongs, a bad encoding, an empty file) into one :class:`DataError` sentence.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from diversedistill.errors import DataError

_SEP_NAMES = {"\t": "tab", "|": "'|'", "::": "'::'", ",": "comma"}


def read_table(
    path: Path,
    sep: str,
    columns: list[str],
    *,
    header: bool = False,
    encoding: str = "utf-8",
    quoted: bool = False,
) -> pd.DataFrame:
    """Read ``path`` as text columns; every line must have exactly ``len(columns)`` fields.

    Returns a frame of strings plus a ``_line`` column holding each row's 1-based line
    number in the file, so later checks can point at the offending line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not valid {encoding} text (byte {err.start}); "
            f"the official release of this file is {encoding}-encoded"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    # A multi-character separator would force pandas' slow python engine; '::' never occurs
    # inside MovieLens titles, so map it to a control character the C engine can split on.
    if len(sep) > 1:
        text = text.replace(sep, "\x1f")
    sep_char = "\x1f" if len(sep) > 1 else sep
    # Blank lines are skipped, here and only here (pandas' own notion of blank differs: a
    # line of separators only is a row to it). A line holding a separator is never blank.
    all_lines = text.splitlines()
    kept = [i for i, ln in enumerate(all_lines, start=1) if ln.strip() or sep_char in ln]
    if len(kept) != len(all_lines):
        text = "\n".join(all_lines[i - 1] for i in kept) + "\n"
    data_lines = kept[1:] if header else kept
    if not quoted:  # pandas pads short lines silently, so count the fields first
        _check_field_counts(path, [all_lines[i - 1] for i in data_lines], data_lines, sep, columns)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep_char,
            header=0 if header else None,
            names=columns if not header else None,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as err:
        raise DataError(f"{path}: {_parser_message(err, sep, len(columns))}") from None
    if header:
        got = [c.strip() for c in frame.columns]
        if got[: len(columns)] != columns or len(got) != len(columns):
            raise DataError(
                f"{path}, line 1: expected the header {','.join(columns)}, found {','.join(got)}"
            )
        frame.columns = columns
    # line numbers in the file, blank lines counted
    frame["_line"] = np.asarray(data_lines[: len(frame)], dtype=np.int64)
    return frame


def _check_field_counts(path: Path, lines: list[str], numbers: list[int], sep: str,
                        columns: list[str]) -> None:
    """Every line must have exactly len(columns) fields (pandas pads short lines silently)."""
    sep_char = "\x1f" if len(sep) > 1 else sep
    counts = pd.Series(lines, dtype=object).str.count(re.escape(sep_char)).to_numpy() + 1
    bad = counts != len(columns)
    if bad.any():
        row = int(np.argmax(bad))
        name = _SEP_NAMES.get(sep, repr(sep))
        hint = f"; is the separator {name}?" if counts[row] == 1 else ""
        raise DataError(
            f"{path}, line {numbers[row]}: expected {len(columns)} {name}-separated fields, "
            f"found {counts[row]}{hint} (columns: {', '.join(columns)})"
        )


def _parser_message(err: Exception, sep: str, n_columns: int) -> str:
    msg = str(err).strip().splitlines()[-1]
    # pandas: "Error tokenizing data. C error: Expected 4 fields in line 3, saw 5"
    if "Expected" in msg and "fields in line" in msg:
        tail = msg[msg.index("Expected") :]
        words = tail.split()
        line, saw = words[4].rstrip(","), words[-1]
        return (
            f"line {line}: expected {n_columns} {_SEP_NAMES.get(sep, repr(sep))}-separated "
            f"fields, found {saw}"
        )
    return msg


def numeric_column(frame: pd.DataFrame, column: str, path: Path, kind: type = int) -> np.ndarray:
    """Convert one text column to numbers, naming the first line that is not a number."""
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    bad = values.isna().to_numpy()
    if kind is int and not bad.any():
        bad = (values % 1 != 0).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{path}, line {frame['_line'].iat[row]}: {column} must be "
            f"{'an integer' if kind is int else 'a number'}, found {_short(frame[column].iat[row])}"
        )
    if kind is int and values.dtype != np.int64:  # too large for int64: it would wrap around
        _check_int64(frame, column, values, path)
    return values.to_numpy(dtype=np.int64 if kind is int else np.float64)


INT64 = (-(1 << 63), (1 << 63) - 1)


def _check_int64(frame: pd.DataFrame, column: str, values: pd.Series, path: Path) -> None:
    """Ids must fit a signed 64-bit integer: two ids that wrap to one would merge two users."""
    near = np.abs(values.to_numpy(dtype=np.float64)) >= 2.0 ** 62  # exact test below
    for row in np.flatnonzero(near):
        text = frame[column].iat[row].strip()
        try:
            number = int(text)
        except ValueError:
            number = int(float(text))
        if not INT64[0] <= number <= INT64[1]:
            raise DataError(f"{path}, line {frame['_line'].iat[row]}: {column} {_short(text)} "
                            f"does not fit a 64-bit integer (largest {INT64[1]})")


def _short(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 15]}... ({len(text)} characters)"
