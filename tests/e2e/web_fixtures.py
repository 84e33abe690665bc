"""Fixtures the web tests share: a signer process, the app on it, and browser profiles.

A module that needs the app built differently (operators, a chain) defines its own ``app``;
pytest takes the module's over these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine
from tests.e2e.web_helpers import Browser, settings_for, start_signer, web_app
from tests.fixtures.signer import SignerProcess

from seiwallet.api.services import Services


@pytest.fixture
def signer_process(tmp_path: Path) -> Iterator[SignerProcess]:
    process = start_signer(tmp_path / "signer-home")
    yield process
    process.stop()


@pytest.fixture
async def app(
    tmp_path: Path, database_url: str, engine: Engine, signer_process: SignerProcess
) -> AsyncIterator[tuple[Services, FastAPI]]:
    async with web_app(settings_for(tmp_path, database_url), signer_process, engine) as built:
        yield built


@pytest.fixture
async def browsers(app: tuple[Services, FastAPI]) -> AsyncIterator[Callable[[], Browser]]:
    """New browser profiles on the app, closed after the test."""
    opened: list[Browser] = []

    def new() -> Browser:
        opened.append(Browser(app[1]))
        return opened[-1]

    yield new
    for browser in opened:
        await browser.aclose()
