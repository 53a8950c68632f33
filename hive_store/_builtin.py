"""The core's own hook implementations: it registers the Hive entities.

This is part of the core, not a plugin package; backends, migrations and everything else
come from plugins.
"""

from __future__ import annotations

from collections.abc import Sequence

from hive_store.entities import CORE_ENTITIES
from hive_store.hookspecs import hookimpl


@hookimpl
def hive_store_register_entities() -> Sequence[type]:
    return CORE_ENTITIES
