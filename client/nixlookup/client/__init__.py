"""nixlookup.client: the Python client, CSV washing and the `nixlookup` CLI. Never imports the server.

    from nixlookup.client import Client
    with Client("127.0.0.1:50051") as client:
        client.check("070-123 45 67").verdict            # Verdict.ALLOWED / BLOCKED / INVALID
        for result in client.check_many(numbers):        # any iterable of str/int, or a uint64 array
            ...

See docs/client.md.
"""

from nixlookup.client.aio import AsyncClient
from nixlookup.client.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    LimitExceededError,
    NixlookupClientError,
    ServerUnavailableError,
)
from nixlookup.client.results import BatchResult, BulkResult, CheckResult, ListInfo, RegisterInfo
from nixlookup.client.sync import Client
from nixlookup.v1.vocabulary import LineType, Purpose, Reason, Verdict

__all__ = [
    "AsyncClient",
    "BatchResult",
    "BulkResult",
    "CheckResult",
    "Client",
    "DeadlineExceededError",
    "InvalidRequestError",
    "LimitExceededError",
    "LineType",
    "ListInfo",
    "NixlookupClientError",
    "Purpose",
    "Reason",
    "RegisterInfo",
    "ServerUnavailableError",
    "Verdict",
]
