"""Fixtures for tests that talk to real local emulators (Google's pstest and bttest).

Stable names other test modules rely on:

- ``emulators``         session: both emulators on free ports, the default resources created,
                        PUBSUB_EMULATOR_HOST / BIGTABLE_EMULATOR_HOST set in os.environ (restored afterwards)
- ``resources``         session: the :class:`Resources` those default resources were created from
- ``unique_resources``  per test: a freshly created set of topics, subscriptions and tables with
                        names no other test uses, so tests never see each other's messages or rows
- ``unique_resources_factory``  per test: call it for more such sets (``factory("alerts")``)
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fraudscore.config import EmulatorConfig, Resources
from fraudscore.dev.emulators import Emulators, with_suffix
from fraudscore.resources import create_resources

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration starts real components: a safety net for a module that forgets its
    # own `pytestmark = pytest.mark.integration`, so `-m "not integration"` still leaves it out.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def resources() -> Resources:
    # Explicit defaults rather than Resources.from_env(): tests must not depend on the caller's shell.
    return Resources()


@pytest.fixture(scope="session")
def emulators(resources: Resources) -> Iterator[Emulators]:
    config = EmulatorConfig(pubsub_port=0, bigtable_port=0)
    with Emulators(config, project=resources.project) as running, running.exported_env():
        create_resources(resources)
        yield running


@pytest.fixture
def unique_resources_factory(emulators: Emulators, resources: Resources) -> Callable[[str], Resources]:
    """Returns ``make(tag)``: creates and returns a fresh, uniquely named set of resources."""

    def make(tag: str = "") -> Resources:
        suffix = f"{tag}-{uuid.uuid4().hex[:8]}" if tag else uuid.uuid4().hex[:8]
        fresh = with_suffix(resources, suffix)
        create_resources(fresh)
        return fresh

    return make


@pytest.fixture
def unique_resources(unique_resources_factory: Callable[[str], Resources]) -> Resources:
    return unique_resources_factory("")
