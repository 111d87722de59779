"""The suite's own configuration: deterministic hypothesis, skips that fail in CI."""

import os

import pytest
from hypothesis import settings
from requires import require_module, skip_or_fail


def test_hypothesis_is_derandomized_unless_a_profile_is_asked_for(request):
    asked = request.config.getoption("--hypothesis-profile", None) or os.environ.get(
        "HYPOTHESIS_PROFILE"
    )
    if asked:
        pytest.skip(f"the {asked!r} profile was asked for")
    assert settings.get_current_profile_name() == "deterministic"
    assert settings.default.derandomize is True
    assert settings.default.database is None
    assert settings.default.deadline is None


def test_a_missing_peer_skips_on_a_developer_machine(monkeypatch):
    monkeypatch.delenv("REQUIRE_PEERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no_such_peer_module"):
        require_module("no_such_peer_module", "a reference")


def test_a_missing_peer_fails_under_require_peers(monkeypatch):
    monkeypatch.setenv("REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_PEERS=1 makes this an error"):
        require_module("no_such_peer_module", "a reference")
    assert require_module("numpy", "always there").__name__ == "numpy"


def test_missing_shared_data_fails_under_its_own_variable(monkeypatch):
    monkeypatch.setenv("REQUIRE_PEERS", "1")
    monkeypatch.delenv("REQUIRE_SHARED_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception):
        skip_or_fail("no data", "REQUIRE_SHARED_DATA")
    monkeypatch.setenv("REQUIRE_SHARED_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_SHARED_DATA=1"):
        skip_or_fail("no data", "REQUIRE_SHARED_DATA")
