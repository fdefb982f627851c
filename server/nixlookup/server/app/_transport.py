"""The grpc core options of the server's transport: message sizes, keepalive, connection idle and age,
the handshake timeout. Each is explained beside its value (the defaults and their reasons live with the
flags in `_config`; docs/service.md has the limits table).

How a vanished client is found: the server pings every connection after ``--keepalive-time`` without
traffic; a ping unanswered for ``--keepalive-timeout`` closes the connection and cancels its calls, whose
handlers then end and free what they held. grpc core arms that timeout from ``grpc.http2.ping_timeout_ms``
(default 60 s) rather than ``grpc.keepalive_timeout_ms`` alone (measured on grpcio 1.85: with only the
latter set, a SIGSTOPped client's connection stayed open past 8 s with a 1 s timeout), so both are set.
"""

from __future__ import annotations

from nixlookup.server.app._config import ServerConfig

__all__ = ["server_options"]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def server_options(config: ServerConfig, *, reuse_port: bool = False) -> list[tuple[str, int]]:
    """The channel arguments `grpc.aio.server` is built with; `reuse_port` for the listeners the serving
    processes of ``--processes N`` share (SO_REUSEPORT: the kernel spreads connections over them)."""
    keepalive_timeout = _ms(config.keepalive_timeout_seconds)
    return [
        # Requests up to this size are accepted; a larger one fails with RESOURCE_EXHAUSTED naming the limit.
        ("grpc.max_receive_message_length", config.max_message_bytes),
        # Replies are smaller than requests (bits and bytes per number), the same ceiling is ample.
        ("grpc.max_send_message_length", config.max_message_bytes),
        # A second server on a busy port must fail, not silently share it (grpc enables SO_REUSEPORT),
        # except for the serving processes of --processes N, which share --listen on purpose.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # Ping a connection after this long without traffic, to find clients whose host vanished...
        ("grpc.keepalive_time_ms", _ms(config.keepalive_seconds)),
        # ...and close it when the ping is not answered within this long (both arguments: see module doc).
        ("grpc.keepalive_timeout_ms", keepalive_timeout),
        ("grpc.http2.ping_timeout_ms", keepalive_timeout),
        # Ping idle connections too (and let clients ping them): a vanished client that had no call in
        # flight is found as quickly; without it the server would also police client pings on idle
        # connections at a 2-hour minimum interval and GOAWAY clients with ordinary keepalive settings.
        ("grpc.keepalive_permit_without_calls", 1),
        # The shortest interval between client pings the server accepts; a sooner ping is a strike...
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(config.min_client_ping_seconds)),
        # ...and this many strikes close the connection with GOAWAY too_many_pings (0: no limit).
        ("grpc.http2.max_ping_strikes", config.max_ping_strikes),
        # A connection with no call for this long is closed with GOAWAY; the client reconnects when needed.
        ("grpc.max_connection_idle_ms", _ms(config.max_connection_idle_seconds)),
        # A connection older than this gets GOAWAY (grpc adds +-10% jitter), so clients spread over
        # replicas as they come and go...
        ("grpc.max_connection_age_ms", _ms(config.max_connection_age_seconds)),
        # ...and the calls still running on it get this long to finish before they are cancelled.
        ("grpc.max_connection_age_grace_ms", _ms(config.max_connection_age_grace_seconds)),
        # A new connection must complete the HTTP/2 handshake (client preface and SETTINGS; TLS when
        # configured) within this long, or it is closed: sockets that connect and say nothing don't pile up.
        ("grpc.server_handshake_timeout_ms", _ms(config.handshake_timeout_seconds)),
        # A fixed flow-control window per stream instead of grpc's BDP auto-tuning, which grew the windows
        # of streams whose client never reads to tens of MB each (16 such streams: +130 to +590 MB RSS,
        # varying run to run; with a fixed 1 MiB window +110 MB): what a client may send ahead of what the
        # server has read is this many bytes per stream, whatever it does.
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", config.stream_window_bytes),
    ]
