"""nixlookup.client: the Python client, CSV washing and the `nixlookup` CLI. Never imports the server.

    from nixlookup.client import Client
    with Client("127.0.0.1:50051") as client:
        client.check("070-123 45 67").verdict            # Verdict.ALLOWED / BLOCKED / INVALID
        for result in client.check_many(numbers):        # any iterable of str/int, or a uint64 array
            ...
    with AdminClient("127.0.0.1:50051") as admin:      # the Admin service: reload, deltas, lists
        admin.apply_delta(kind="opt-out", caller="acme", add_texts=["070-123 45 67"])

See docs/client.md.
"""

from nixlookup.client._base import channel_options
from nixlookup.client._retry import RetryPolicy
from nixlookup.client.admin import AdminClient
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
    "AdminClient",
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
    "RetryPolicy",
    "ServerUnavailableError",
    "Verdict",
    "channel_options",
]
