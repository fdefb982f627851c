"""pandas helpers: a Series of phone numbers in, a DataFrame of answers out, in order (``nixlookup[pandas]``).

    from nixlookup.client import Client
    from nixlookup.client.pandas import check_series

    with Client() as client:
        answers = check_series(client, calls["phone"], caller="acme")
        calls.join(answers)          # same index as the Series, one row per number

Theory of operation:
- The Series is streamed through `Client.check_batches` (CheckStream, bounded batches in flight): an
  integer Series goes as packed E.164 keys, anything else as texts (missing values as empty texts, which
  come back INVALID). Answers arrive per batch as arrays and are concatenated; the DataFrame is built
  once, column by column, with no per-number Python work.
- Columns: `verdict`, `reason`, `problem` (why an INVALID number is invalid, `OK` otherwise), `line_type`
  (categoricals of the wire vocabulary's names), `e164`
  (nullable UInt64, <NA> when invalid), `valid_until` (dates, NaT when invalid), `mobile_flag` (nullable
  boolean, <NA> when invalid: the Swedma/Kontakta flag). The index is the input Series' index.
- pandas is imported by this module only: the rest of the client never needs it.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from nixlookup.client.results import BatchResult
from nixlookup.client.sync import Client
from nixlookup.v1.vocabulary import LineType, Problem, Purpose, Reason, Verdict

__all__ = ["ANSWER_COLUMNS", "check_series"]

ANSWER_COLUMNS = ("verdict", "reason", "problem", "e164", "line_type", "valid_until", "mobile_flag")
_EPOCH_DAY = np.datetime64("1970-01-01", "D")


def _categorical(values: NDArray[np.generic], enum: type[IntEnum]) -> pd.Categorical[str]:
    """Enum values as a categorical of the members' names (a value this client does not know: NaN)."""
    members = sorted(enum, key=int)
    codes = np.full(256, -1, dtype=np.int16)
    codes[[int(member) for member in members]] = np.arange(len(members), dtype=np.int16)
    names = pd.Index([member.name for member in members])
    return pd.Categorical.from_codes(codes[values.astype(np.uint8)], categories=names)


def _numbers(series: pd.Series) -> NDArray[np.uint64] | list[str | int]:
    if pd.api.types.is_integer_dtype(series.dtype) and not series.isna().any():
        keys: NDArray[np.uint64] = series.to_numpy(dtype=np.uint64)
        return keys
    return ["" if pd.isna(value) else value if isinstance(value, int) else str(value) for value in series]


def _frame(batches: list[BatchResult], index: pd.Index) -> pd.DataFrame:
    def joined(arrays: list[NDArray[np.generic]], dtype: type[np.generic]) -> NDArray[np.generic]:
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype=dtype)

    def details(name: str, dtype: type[np.generic]) -> NDArray[np.generic]:
        parts = [getattr(batch, name) for batch in batches]
        if any(part is None for part in parts):
            raise ValueError("the server sent no per-number details; it is older than this client")
        return joined(parts, dtype)

    invalid = joined([batch.invalid for batch in batches], np.bool_).astype(bool)
    e164 = joined([batch.e164 for batch in batches], np.uint64)
    days = details("valid_until_days", np.uint32).astype(np.int64)
    flags = joined([batch.mobile_flag for batch in batches], np.bool_).astype(bool)
    until = np.where(days > 0, _EPOCH_DAY + days.astype("timedelta64[D]"), np.datetime64("NaT", "D"))
    return pd.DataFrame(
        {
            "verdict": _categorical(
                joined([b.verdicts() for b in batches], np.uint8).astype(np.uint8), Verdict
            ),
            "reason": _categorical(details("reasons", np.uint8).astype(np.uint8), Reason),
            "problem": _categorical(details("problems", np.uint8).astype(np.uint8), Problem),  # OK if valid
            "e164": pd.arrays.IntegerArray(e164.astype(np.uint64), invalid.copy()),
            "line_type": _categorical(details("line_types", np.uint8), LineType),
            "valid_until": pd.to_datetime(until),
            "mobile_flag": pd.arrays.BooleanArray(flags, invalid.copy()),
        },
        index=index,
    )


def check_series(
    client: Client,
    numbers: pd.Series,
    *,
    caller: str = "",
    purpose: Purpose | int | str = Purpose.SALES,
    batch_size: int | None = None,
    timeout: float | None = None,
) -> pd.DataFrame:
    """One row of answers (`ANSWER_COLUMNS`) per number of `numbers`, in order, on the same index."""
    batches = list(
        client.check_batches(
            _numbers(numbers),
            caller=caller,
            purpose=purpose,
            want_details=True,
            batch_size=batch_size,
            timeout=timeout,
        )
    )
    if sum(batch.count for batch in batches) != len(numbers):
        raise ValueError("the answers do not cover the Series: the server broke one answer per number")
    return _frame(batches, numbers.index)
