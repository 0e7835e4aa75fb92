import pytest
from django.core.cache import cache

# Chromium for test_csp_browser.py, as the portal's browser tests use it.
from tests.portal.conftest import browser, page  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()
