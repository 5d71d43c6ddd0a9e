"""Every request of the test client comes from one address: the public routes' limit is
set high for each test (the rate-limit test sets its own)."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True)
def _generous_public_limit(nestpoint_public_rate_limit: Callable[[str], None]) -> None:
    nestpoint_public_rate_limit("100000/minute")
