"""The ``common-events`` command line: demo, schema, asyncapi, monitor."""
