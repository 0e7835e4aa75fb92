"""Part of the security suite (docs/security.md), here beside the portal's
browser fixtures (one chromium per test session).

The strict Content-Security-Policy in a real browser: the portal and the
admin work under it and the browser reports no violation (chromium logs
each refused inline script or style to the console)."""

import io

import pytest
from playwright.sync_api import expect

from cases import services
from tests.conftest import png_bytes

from .conftest import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _watch_console(browser_page):
    violations = []
    browser_page.on(
        "console",
        lambda message: (
            violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text
            else None
        ),
    )
    return violations


def test_portal_and_admin_pages_run_without_a_policy_violation(page, owner, superuser, lesion, jpeg_bytes):
    image = services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    violations = _watch_console(page)
    sign_in(page, "owner")
    patient = lesion.patient
    for url in [
        "/",
        "/patients/",
        f"/patients/{patient.pk}/",
        f"/patients/{patient.pk}/upload",
        f"/images/{image.pk}/",
    ]:
        page.goto(url)
        page.wait_for_load_state("networkidle")
    # The navigation's collapse (Bootstrap's script) still works at a phone's width.
    page.set_viewport_size({"width": 400, "height": 800})
    page.get_by_role("button", name="Toggle navigation").click()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients")).to_be_visible()
    assert not violations, violations


def test_the_admin_runs_without_a_policy_violation(page, superuser, owner, lesion):
    image = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(png_bytes()), modality="clinical")
    violations = _watch_console(page)
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(superuser.username)
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    for url in [
        "/admin/",
        "/admin/cases/patient/",
        f"/admin/cases/lesionimage/{image.pk}/change/",
        "/admin/cases/patient/add/",
        "/admin/inference/modelversion/",
        "/admin/inference/monitoring/",
        "/admin/inference/prediction/",
    ]:
        page.goto(url)
        page.wait_for_load_state("networkidle")
    assert not violations, violations
