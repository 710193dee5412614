"""Contracts of the events as data: JSON Schemas, released snapshots, the compatibility
check between versions, the AsyncAPI document and TypeScript declarations.

Imports only ``common_events.events``: the models are the source of truth, everything
here is made from them.
"""

from common_events.contracts.compatibility import (
    Change,
    ChangeKind,
    CompatibilityReport,
    Finding,
    Mode,
    check_compatibility,
    compare,
)
from common_events.contracts.schema import (
    Schema,
    event_schema,
    export_schemas,
    read_schemas,
    schema_file_name,
    write_schemas,
)
from common_events.contracts.snapshots import (
    load_release,
    load_releases,
    released_versions,
)

__all__ = [
    "Change",
    "ChangeKind",
    "CompatibilityReport",
    "Finding",
    "Mode",
    "Schema",
    "check_compatibility",
    "compare",
    "event_schema",
    "export_schemas",
    "load_release",
    "load_releases",
    "read_schemas",
    "released_versions",
    "schema_file_name",
    "write_schemas",
]
