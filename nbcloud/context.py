"""What every service is given: the provider, this cloud's view of the inventory, where
its files live, the events between services, and its settings.

Services receive a `Context` and the sibling services they use as constructor arguments
(`Volumes(ctx)`, `Instances(ctx, volumes, folders)`), never the whole `Cloud`: what one
service needs of another is a public method or an event.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nbcloud.core.events import Events
from nbcloud.inventory import Records

if TYPE_CHECKING:
    from nbcloud.providers.base import Provider


@dataclass
class Context:
    uri: str
    provider: Provider
    inventory: Records
    paths: dict[str, Path]
    events: Events = field(default_factory=Events)
    ssh_timeout: float = 120.0          # seconds an instance may take to answer SSH
