from __future__ import annotations

import pytest

# The plugin's own names: "common_events" through the pytest11 entry point of an
# installed package, the module path when loaded with -p.
PLUGIN_MODULE = "common_events.testing.plugin"


def pytest_configure(config: pytest.Config) -> None:
    # These tests use the plugin as a service does; load it if the package is not
    # installed (no entry point), and pytester for the test of a service's own suite.
    manager = config.pluginmanager
    if not (manager.has_plugin("common_events") or manager.has_plugin(PLUGIN_MODULE)):
        manager.import_plugin(PLUGIN_MODULE)
    manager.import_plugin("pytester")
