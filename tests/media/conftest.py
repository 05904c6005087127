"""Media service tests: the service process on the test's data dir, clients on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aioice.ice
import pytest

from appliance.settings import Settings
from appliance.store import Store
from tests.media.media_client import Service, running_service


@pytest.fixture
def service(store: Store, settings: Settings, short_tmp: Path) -> Iterator[Service]:
    with running_service(settings, short_tmp / "media.sock") as running:
        yield running


@pytest.fixture
def media_service(service: Service) -> Path:
    return service.socket


@pytest.fixture(autouse=True)
def loopback_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client offers 127.0.0.1 only: the test never touches another interface."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda **_kw: ["127.0.0.1"])
