"""Makes ``orders_service`` importable when pytest runs from the repository root too
(there the repository's configuration is used, not this directory's pytest.ini)."""

import sys
from pathlib import Path

SERVICE_ROOT = str(Path(__file__).resolve().parent)
if SERVICE_ROOT not in sys.path:
    sys.path.insert(0, SERVICE_ROOT)
