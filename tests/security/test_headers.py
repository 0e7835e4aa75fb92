"""Headers on every response: CSP (no inline script or style), Permissions-Policy,
no-store wherever patient data may be; and production settings that pass
``check --deploy`` with no warning."""

import os
import re
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from core.headers import CONTENT_SECURITY_POLICY
from tests.api.conftest import token_client

REPO = Path(settings.BASE_DIR)


def _pages(patient, image):
    return [
        "/",
        reverse("portal:patient-list"),
        reverse("portal:patient-detail", args=[patient.pk]),
        reverse("portal:upload", args=[patient.pk]),
        reverse("portal:image-detail", args=[image.pk]),
        reverse("portal:image-status", args=[image.pk]),
        "/admin/",
        "/admin/cases/patient/",
        "/admin/inference/prediction/",
        "/admin/inference/modelversion/",
        "/admin/inference/monitoring/",
    ]


@pytest.fixture
def image(owner, lesion, active_model):
    import io

    from cases import services

    from .badfiles import plain_png

    return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(plain_png()), modality="clinical")


def _check_page(client, url):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
    assert "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]
    assert "no-store" in response["Cache-Control"], url


def test_every_page_has_the_strict_policy_and_no_store(client, superuser, patient, image):
    _check_page(client, "/accounts/login/")
    superuser.clinics.add(patient.clinic)
    client.force_login(superuser)
    for url in _pages(patient, image):
        _check_page(client, url)


INLINE = [
    re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I),  # inline script
    re.compile(r"\son[a-z]+\s*=", re.I),  # event handler attributes
    re.compile(r"\sstyle\s*=", re.I),  # style attributes
    re.compile(r"<style", re.I),
    re.compile(r"javascript:", re.I),
]


def test_no_page_relies_on_inline_script_or_style(client, superuser, patient, image):
    """What the strict policy would block: nothing in the portal's or the admin's HTML."""
    _assert_no_inline(client.get("/accounts/login/").content.decode(), "/accounts/login/")
    superuser.clinics.add(patient.clinic)
    client.force_login(superuser)
    prediction = image.predictions.get()
    urls = [*_pages(patient, image), reverse("admin:inference_prediction_change", args=[prediction.pk])]
    for url in urls:
        _assert_no_inline(client.get(url).content.decode(), url)


def _assert_no_inline(html, url):
    for pattern in INLINE:
        assert not pattern.search(html), (url, pattern.pattern, pattern.search(html))


def test_templates_have_no_inline_script_or_style():
    for path in [*REPO.joinpath("templates").rglob("*.html"), *REPO.joinpath("api", "templates").rglob("*.html")]:
        if path.name == "redoc.html":
            continue  # the API docs have their own policy (core/headers.py)
        text = path.read_text()
        for pattern in INLINE:
            assert not pattern.search(text), (path, pattern.pattern)


def test_api_answers_are_not_stored(owner, patient):
    api = token_client(owner)
    for url in ["/api/v1/clinics", "/api/v1/patients", f"/api/v1/patients/{patient.pk}", "/api/v1/nothing"]:
        response = api.get(url)
        assert "no-store" in response["Cache-Control"], url
        assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert "camera=()" in response["Permissions-Policy"]


def test_an_etag_poll_still_works_without_caching(owner, image):
    api = token_client(owner)
    first = api.get(f"/api/v1/images/{image.pk}")
    assert "no-store" in first["Cache-Control"]
    again = api.get(f"/api/v1/images/{image.pk}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304


def test_the_api_docs_have_their_own_policy_and_no_inline_script(client):
    response = client.get("/api/docs/")
    assert "'unsafe-inline'" in response["Content-Security-Policy"].split("style-src", 1)[1].split(";")[0]
    assert "script-src 'self'" in response["Content-Security-Policy"]
    html = response.content.decode()
    assert not INLINE[0].search(html)


def test_static_files_carry_the_policy_headers(client):
    response = client.get("/static/portal/portal.css")
    assert response.status_code == 200
    assert "Permissions-Policy" in response and "Content-Security-Policy" in response


def test_production_settings_pass_check_deploy(tmp_path):
    key = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(50))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKINCARE_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="skincare.settings.production",
        SKINCARE_SECRET_KEY=key,
        SKINCARE_VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL="sqlite://:memory:",
    )
    completed = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "no issues" in completed.stdout
