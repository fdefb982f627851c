"""The HTTP front's JSON: requests parsed into protos, answers and errors written as JSON documents.

Theory of operation:
- The JSON is protobuf's ``json_format`` with proto field names and every field printed (`to_json`):
  what ``grpcurl -emit-defaults`` prints for the same call. Requests are parsed by ``json_format`` too
  (`parse`), so whatever grpcurl accepts (proto or lowerCamel names, enum names or numbers, uint64 as
  string or number) is accepted, and an unknown field is a 400 naming it. A parse error that echoes the
  body never echoes a number in full (runs of digits are masked).
- A detailed batch result is packed (bit masks, byte and little-endian arrays per number); `batch_rows`
  unpacks it into one `CheckResponse`-shaped object per number, in order, with table lookups for the enum
  names and one text per distinct end day: no proto per number.
- Errors are Google's JSON error form ``{"error": {"code": HTTP, "status": "INVALID_ARGUMENT", "message":
  ...}}`` (`error_document`); `HTTP_STATUS` maps each gRPC status. FAILED_PRECONDITION (an expired
  register, a follower behind) is 503: the request was fine, this server cannot answer it now, another
  may. `RefusedError` is a refusal made before the service is asked (a body that is not JSON, say).
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any, Final

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import LineType, Problem, Reason, Verdict, mask_number

__all__ = [
    "HTTP_STATUS",
    "PER_NUMBER_FIELDS",
    "RefusedError",
    "batch_rows",
    "error_document",
    "parse",
    "to_json",
]

HTTP_STATUS: Final[dict[grpc.StatusCode, HTTPStatus]] = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.OUT_OF_RANGE: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.UNIMPLEMENTED: HTTPStatus.NOT_IMPLEMENTED,
}
"""gRPC status -> HTTP status; anything else is 500."""

PER_NUMBER_FIELDS: Final = (
    "blocked",
    "invalid",
    "reasons",
    "e164_le",
    "line_types",
    "mobile_flag",
    "valid_until_days_le",
    "problems",
)
"""The packed per-number fields of a `CheckBatchResult`: in JSON they are `batch_rows`, not bytes."""

_DIGIT_RUNS: Final = re.compile(r"\d{5,}")


class RefusedError(Exception):
    """An HTTP-level refusal (before the service is asked): status, gRPC status name, message."""

    def __init__(self, status: HTTPStatus, grpc_status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.grpc_status, self.message = status, grpc_status, message


def error_document(status: HTTPStatus, grpc_status: str, message: str) -> tuple[HTTPStatus, Any]:
    """The status and Google-style JSON error document of a refusal."""
    return status, {"error": {"code": int(status), "status": grpc_status, "message": message}}


def to_json(message: Message) -> dict[str, Any]:
    """What ``grpcurl -emit-defaults`` prints: proto field names, every field without presence."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def parse(body: bytes, message: Message) -> None:
    """Fill `message` from a JSON body, or raise a 400 naming what is wrong."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RefusedError(
            HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", f"the body is not JSON: {error}"
        ) from None
    if not isinstance(document, dict):
        raise RefusedError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "the body must be a JSON object")
    try:
        json_format.ParseDict(document, message)
    except (json_format.ParseError, TypeError, ValueError) as error:
        text = _DIGIT_RUNS.sub(lambda run: mask_number(run.group()), str(error))  # it may echo a number
        raise RefusedError(
            HTTPStatus.BAD_REQUEST,
            "INVALID_ARGUMENT",
            f"the body is not a {message.DESCRIPTOR.name}: {text[:300]}",
        ) from None


def _names(enum: type[Verdict] | type[Reason] | type[LineType] | type[Problem]) -> list[str]:
    """Member value -> the name json_format prints (the proto's, prefix included), as a lookup table."""
    descriptor = lookup_pb2.DESCRIPTOR.enum_types_by_name[enum.__name__]
    table = [str(value) for value in range(256)]
    for value in descriptor.values:
        table[value.number] = value.name
    return table


_VERDICT_NAMES: Final = _names(Verdict)
_REASON_NAMES: Final = _names(Reason)
_LINE_TYPE_NAMES: Final = _names(LineType)
_PROBLEM_NAMES: Final = _names(Problem)
_EPOCH_DAY: Final = np.datetime64("1970-01-01", "D")


def _bits(packed: bytes, count: int) -> np.ndarray[Any, np.dtype[np.bool_]]:
    unpacked = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=count, bitorder="little")
    return unpacked.view(np.bool_)


def batch_rows(result: lookup_pb2.CheckBatchResult, sent_keys: bytes) -> list[dict[str, Any]]:
    """One `CheckResponse`-shaped object per number of a detailed batch result, in order."""
    count = result.count
    blocked, invalid = _bits(result.blocked, count), _bits(result.invalid, count)
    flags = _bits(result.mobile_flag, count) if result.mobile_flag else np.zeros(count, np.bool_)
    verdicts = np.where(invalid, Verdict.INVALID, np.where(blocked, Verdict.BLOCKED, Verdict.ALLOWED))
    zeros = np.zeros(count, np.uint8)
    problems = np.frombuffer(result.problems, np.uint8) if result.problems else zeros
    keys = np.frombuffer(result.e164_le or sent_keys, "<u8") if (result.e164_le or sent_keys) else None
    e164 = np.where(invalid, 0, keys) if keys is not None else np.zeros(count, np.uint64)
    days = np.frombuffer(result.valid_until_days_le, "<u4") if result.valid_until_days_le else zeros
    distinct, day_index = np.unique(days, return_inverse=True)
    # The batch's own valid_until (register date + 2 months) to the second, as Check gives it; other
    # days (a relationship's or consent's end) as that day's midnight UTC.
    batch_until = result.valid_until.ToJsonString() if result.HasField("valid_until") else None
    batch_day = result.valid_until.seconds // 86_400 if batch_until is not None else -1
    day_texts = [
        None
        if day == 0
        else (batch_until if day == batch_day else f"{_EPOCH_DAY + np.timedelta64(int(day), 'D')}T00:00:00Z")
        for day in distinct.tolist()
    ]
    rows = []
    for verdict, reason, problem, key, line_type, day, flag in zip(
        verdicts.tolist(),
        np.frombuffer(result.reasons, np.uint8).tolist() if result.reasons else zeros.tolist(),
        problems.tolist(),
        e164.tolist(),
        np.frombuffer(result.line_types, np.uint8).tolist() if result.line_types else zeros.tolist(),
        day_index.tolist(),
        flags.tolist(),
        strict=True,
    ):
        row: dict[str, Any] = {
            "verdict": _VERDICT_NAMES[verdict],
            "reason": _REASON_NAMES[reason],
            "problem": _PROBLEM_NAMES[problem],
            "e164": str(key),  # proto3 JSON: a uint64 is a decimal string
            "line_type": _LINE_TYPE_NAMES[line_type],
            "mobile_flag": flag,
        }
        until = day_texts[day]
        if until is not None:  # unset for INVALID, like CheckResponse.valid_until
            row["valid_until"] = until
        rows.append(row)
    return rows
