"""Fixtures of the chart and manifest tests."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

import helpers


@functools.lru_cache(maxsize=None)
def _render_set(name: str) -> helpers.Rendered:
    return helpers.render(helpers.load_values(name))


@pytest.fixture(params=helpers.VALUE_SETS)
def value_set(request: pytest.FixtureRequest) -> str:
    """Each value set of the suite: the defaults, TLS on, every optional object
    on, an existing Secret for the clients."""
    return request.param


@pytest.fixture
def rendered(value_set: str) -> helpers.Rendered:
    return _render_set(value_set)


@pytest.fixture
def render_set():
    return _render_set


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    helpers.make_tls(d)
    return d


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Exit non-zero unless some test really ran and passed."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if exitstatus == 0 and passed == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
