"""`nixlookup health`: ask a server's standard `grpc.health.v1.Health` service; exit 0 SERVING, else 1.

    nixlookup health [--target HOST:PORT] [--service nixlookup.v1.Lookup] [--timeout 2] [--quiet]

For container health checks (the Dockerfile's HEALTHCHECK), systemd and scripts: it prints the status
(``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN``) or why the server could not be asked, and its exit
status says whether to send traffic there. A follower answers NOT_SERVING until it holds the writer's
first snapshot and while its lag exceeds its bound.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from nixlookup.client.defaults import DEFAULT_TARGET, resolve_target

__all__ = ["DEFAULT_HEALTH_TIMEOUT", "register_commands"]

DEFAULT_HEALTH_TIMEOUT = 2.0
"""Seconds to wait for the answer: a health probe must fail fast, not hang the prober."""


def _run_health(args: argparse.Namespace) -> int:
    try:  # the standard health messages come with the server extra (grpcio-health-checking)
        from grpc_health.v1 import health_pb2, health_pb2_grpc
    except ImportError:
        print(
            "nixlookup health: needs grpcio-health-checking: pip install 'nixlookup[server]'", file=sys.stderr
        )
        return 2
    target = resolve_target(args.health_server or getattr(args, "target", None))
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
    except grpc.RpcError as error:
        if not args.quiet:
            print(f"nixlookup health: {target}: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if not args.quiet:
        print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def register_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `health` to the `nixlookup` parser."""
    health: argparse.ArgumentParser = subparsers.add_parser(
        "health", help="ask the server's health service; exit 0 when SERVING, 1 otherwise"
    )
    health.add_argument(
        "--target",
        dest="health_server",
        default=None,
        metavar="HOST:PORT",
        help=f"server address (default: nixlookup's --target, $NIXLOOKUP_TARGET, or {DEFAULT_TARGET})",
    )
    # --target is the server's address in every nixlookup command; --server was health's first spelling.
    health.add_argument("--server", dest="health_server", default=None, help=argparse.SUPPRESS)
    health.add_argument("--service", default="", help='service to ask about (default "": the whole server)')
    health.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_HEALTH_TIMEOUT,
        metavar="SECONDS",
        help="deadline in seconds (default 2)",
    )
    health.add_argument("--quiet", "-q", action="store_true", help="print nothing; only the exit status")
    health.set_defaults(func=_run_health)
    return health
