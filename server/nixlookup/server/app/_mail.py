"""Assembling the NIX-Adresserat part of the Lookup service from the server's configuration.

`mail_lookup` turns ``--relationship-grace-days`` and ``--address-validity-months`` into the mail rules'
settings and builds the `MailLookup` the servicer delegates CheckAddressee and CheckAddresseeStream to,
sharing the servicer's limits, meter and freshness gate. (The address register itself is opened with the
store: `store.open_address_register`.)
"""

from __future__ import annotations

from nixlookup.server.app._config import ServerConfig
from nixlookup.server.policy._mail import MailSettings
from nixlookup.server.rpc._freshness import FreshnessGate
from nixlookup.server.rpc._limits import ServiceLimits
from nixlookup.server.rpc._mail import MailLookup
from nixlookup.server.rpc._metering import Meter
from nixlookup.server.store import StateHolder

__all__ = ["mail_lookup"]


def mail_lookup(
    config: ServerConfig,
    holder: StateHolder,
    *,
    limits: ServiceLimits,
    meter: Meter,
    freshness: FreshnessGate,
) -> MailLookup:
    """The mail part of the Lookup service for this configuration."""
    settings = MailSettings(
        relationship_grace_days=config.relationship_grace_days,
        validity_months=config.address_validity_months,
    )
    return MailLookup(holder, settings, limits=limits, meter=meter, freshness=freshness)
