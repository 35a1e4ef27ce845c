"""How the browser tests get their Chromium: found, installed with apt-get on Debian/Ubuntu,
skipped elsewhere, and never skipped in CI."""

from __future__ import annotations

import pytest

from tests.browser.conftest import locate_chromium, require_browser


def test_an_installed_chromium_is_used_without_installing():
    def install() -> str:
        raise AssertionError("must not install")

    assert locate_chromium(lambda: "/usr/bin/chromium", lambda: True, install) == (
        "/usr/bin/chromium",
        "",
    )


def test_missing_on_debian_it_is_installed_then_found():
    installed: list[bool] = []

    def find() -> str | None:
        return "/usr/bin/chromium" if installed else None

    def install() -> str:
        installed.append(True)
        return ""

    assert locate_chromium(find, lambda: True, install) == ("/usr/bin/chromium", "")
    assert installed == [True]


def test_a_failed_install_and_other_systems_say_why():
    path, why = locate_chromium(lambda: None, lambda: True, lambda: "`apt-get update` failed: x")
    assert path is None
    assert "installing it failed: `apt-get update` failed: x" in why
    path, why = locate_chromium(lambda: None, lambda: False, lambda: "unused")
    assert path is None
    assert "not Debian/Ubuntu" in why


def test_no_browser_skips_locally_and_fails_in_ci():
    assert require_browser("/usr/bin/chromium", "", ci=True) == "/usr/bin/chromium"
    with pytest.raises(pytest.skip.Exception, match="not Debian/Ubuntu"):
        require_browser(None, "Chromium is not installed and this is not Debian/Ubuntu", ci=False)
    with pytest.raises(pytest.fail.Exception, match="browser tests need Chromium in CI"):
        require_browser(None, "Chromium is not installed", ci=True)
