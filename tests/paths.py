"""Where the suite finds the team's shared fixtures (specs and recorded payloads)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = Path(
    os.environ.get("SHIPMATE_SHARED_FIXTURES", ROOT.parent / "shared" / "fixtures")
)


def shared(*parts: str) -> Path:
    """Path of a file in ../shared/fixtures; fails loudly when the folder is missing."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the suite reads ../shared/fixtures beside the checkout "
            "(or set SHIPMATE_SHARED_FIXTURES)"
        )
    return path
