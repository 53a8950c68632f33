"""A plugin with a misspelled hook implementation: ``hive_store_register_entitys`` (sic).

hive-store must reject it when registering (an unknown hook), not silently ignore it.
"""

from collections.abc import Sequence

import hive_store


@hive_store.hookimpl
def hive_store_register_entitys() -> Sequence[type]:  # sic: the hook is ..._register_entities
    return []
