"""Real PostgreSQL for the store's portability tests: a throwaway cluster the fixture starts and removes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from isthmus.lab import postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    try:
        cluster = postgres.start()
    except postgres.PostgresMissing as error:
        pytest.fail(str(error))
    try:
        yield cluster.url
    finally:
        postgres.stop(cluster)
