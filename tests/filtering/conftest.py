from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.filtering.sample_filters import registered


@pytest.fixture(autouse=True)
def sample_filters() -> Iterator[None]:
    with registered():
        yield
