"""``import common_events`` never imports observability or its optional libraries, and a
missing extra says which one to install. Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

OPTIONAL = ("opentelemetry", "prometheus_client")


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_the_package_imports_no_observability() -> None:
    result = run(
        f"""
        import sys
        import common_events
        import common_events.core
        loaded = sorted(
            name for name in sys.modules
            if name.startswith(("common_events.observability",) + {OPTIONAL!r})
        )
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_health_endpoint_needs_no_optional_library() -> None:
    result = run(
        f"""
        import sys
        for name in {OPTIONAL!r}:
            sys.modules[name] = None  # as if not installed
        from common_events.observability import HealthEndpoint
        from common_events.observability.health import HealthEndpoint as Same
        assert HealthEndpoint is Same
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_missing_extra_names_itself() -> None:
    result = run(
        f"""
        import sys
        for name in {OPTIONAL!r}:
            sys.modules[name] = None  # as if not installed
        for module in ("otel", "prometheus"):
            try:
                __import__("common_events.observability." + module)
            except ImportError as error:
                print(error)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "common_events.observability.otel needs opentelemetry-api: "
        "pip install 'common-events[otel]'",
        "common_events.observability.prometheus needs prometheus-client: "
        "pip install 'common-events[prometheus]'",
    ]
