"""Browser tests of the portal: Playwright drives Debian's chromium against
pytest-django's live server; predictions come from a real Celery worker."""

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM
# would refuse to run beside it without this.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

# The real worker and its shared media folder (tests/e2e/conftest.py).
from tests.e2e.conftest import _media_shared_with_worker, broker, wait_for, worker  # noqa: E402, F401

CHROMIUM = os.environ.get("SKINCARE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
PASSWORD = "correct horse battery"  # tests/factories.py


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        # Fail, not skip: a suite that silently drops its browser tests would
        # pass without checking the portal at all. `make test` installs it.
        pytest.fail(f"no chromium at {CHROMIUM} (apt-get install chromium, or set SKINCARE_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) at tablet-ish desktop size."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page, username, password=PASSWORD):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login" not in url)
