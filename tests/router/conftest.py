"""The real-Crossbar stack shared by the end-to-end modules here, one per module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.router.e2e import Stack, backend_stack


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    async with backend_stack(root, redis_server) as running:
        yield running
