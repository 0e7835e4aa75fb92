"""Who may reach what: every URL pattern, generated from the URL configuration,
against the owner, a colleague in the same clinic, an outsider (another
clinic's clinician, signed in), an anonymous visitor and another clinic's
device token.

``RULES`` must name every pattern ``get_resolver()`` lists (admin pages made
by ModelAdmin and AdminSite match ``ADMIN_GENERATED``): a new endpoint
without a rule fails ``test_every_url_pattern_has_a_rule`` until someone
decides who may reach it.
"""

import io
import re
from dataclasses import dataclass, field

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from api.tokens import issue_token
from cases import services
from core.models import AuditEvent
from inference.models import ModelVersion, Prediction

from .badfiles import plain_png

OWNER, COLLEAGUE, OUTSIDER, ANONYMOUS, OTHER_TOKEN = "owner", "colleague", "outsider", "anonymous", "other_clinic_token"
ACTORS = (OWNER, COLLEAGUE, OUTSIDER, ANONYMOUS, OTHER_TOKEN)


@dataclass(frozen=True)
class Rule:
    """Expected status per actor; ``api`` rules sign clinicians in with their device tokens."""

    statuses: dict
    method: str = "get"
    api: bool = False
    # Strings of the owner's record that an outsider's answer must not contain.
    hides_owner_records: bool = False
    data: dict = field(default_factory=dict)


def _portal(owner, outsider, anonymous=302, colleague=None):
    colleague = owner if colleague is None else colleague
    # A bearer token means nothing to the portal: the same as no session.
    return {OWNER: owner, COLLEAGUE: colleague, OUTSIDER: outsider, ANONYMOUS: anonymous, OTHER_TOKEN: anonymous}


def _api(owner, outsider, colleague=None):
    colleague = owner if colleague is None else colleague
    return {OWNER: owner, COLLEAGUE: colleague, OUTSIDER: outsider, ANONYMOUS: 401, OTHER_TOKEN: outsider}


PORTAL_RECORD = Rule(_portal(200, 404))  # a record of the owner's clinic
PORTAL_OWN = Rule(_portal(200, 200), hides_owner_records=True)  # each user's own view
API_RECORD = Rule(_api(200, 404), api=True)
API_OWN = Rule(_api(200, 200), api=True, hides_owner_records=True)
PUBLIC = Rule(dict.fromkeys(ACTORS, 200))
STAFF_ONLY = Rule(dict.fromkeys(ACTORS, 302))  # to the admin's sign-in page: nobody here is staff

RULES = {
    # Portal.
    "portal:home": PORTAL_OWN,
    "portal:patient-list": PORTAL_OWN,
    "portal:patient-create": PORTAL_OWN,
    "portal:patient-detail": PORTAL_RECORD,
    "portal:patient-edit": PORTAL_RECORD,
    "portal:upload": PORTAL_RECORD,
    "portal:image-detail": PORTAL_RECORD,
    "portal:image-review": Rule(_portal(400, 404), method="post"),  # 400: an empty review, but reached
    "portal:image-status": PORTAL_RECORD,
    "portal:image-file": PORTAL_RECORD,
    "portal:prediction-heatmap": PORTAL_RECORD,
    "portal:login": Rule(_portal(302, 302, anonymous=200)),  # signed in: on to the worklist
    "portal:logout": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "portal:password-change": Rule(_portal(200, 200)),
    "portal:password-change-done": Rule(_portal(200, 200)),
    # API.
    "api:tokens": API_OWN,
    "api:token-detail": Rule(_api(200, 404, colleague=404), api=True),  # one's own tokens only
    "api:clinics": API_OWN,
    "api:patients": API_OWN,
    "api:patient-detail": API_RECORD,
    "api:patient-lesions": API_RECORD,
    "api:lesion-detail": API_RECORD,
    "api:lesion-images": API_RECORD,
    "api:image-detail": API_RECORD,
    "api:image-file": API_RECORD,
    "api:image-reviews": API_RECORD,
    "api:prediction-heatmap": API_RECORD,
    "api:schema": PUBLIC,  # no clinical data
    "api:docs": PUBLIC,
    "api:redoc": PUBLIC,
    # Interoperability (interop/): FHIR, PDF reports, DICOM.
    "interop_api:fhir-metadata": Rule(dict.fromkeys(ACTORS, 200), api=True),  # FHIR's public CapabilityStatement
    "interop_api:fhir-patient": API_RECORD,
    "interop_api:fhir-bodystructure": API_RECORD,
    "interop_api:fhir-media": API_RECORD,
    "interop_api:fhir-diagnosticreport": API_RECORD,
    "interop_api:fhir-observation": API_RECORD,
    "interop_api:fhir-device": Rule(
        _api(200, 404), api=True
    ),  # a model version (no patient data) seen via a prediction
    "interop_api:fhir-everything": API_RECORD,
    "interop_api:fhir-search": API_OWN,  # each user's own clinics' rows
    "interop_api:fhir-unknown": Rule(_api(404, 404), api=True),
    "interop_api:fhir-base": Rule(_api(404, 404), api=True),
    "interop_api:image-report": API_RECORD,
    "interop_api:image-dicom": API_RECORD,
    "interop_portal:image-report": PORTAL_RECORD,
    "interop_portal:image-dicom": PORTAL_RECORD,
    # Admin: staff only, custom views included.
    "admin:login": PUBLIC,
    "admin:index": STAFF_ONLY,
    "admin:logout": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "admin:autocomplete": STAFF_ONLY,
    "admin:password_change": STAFF_ONLY,
    "admin:password_change_done": STAFF_ONLY,
    "admin:auth_user_password_change": STAFF_ONLY,
    "admin:jsi18n": STAFF_ONLY,
    "admin:view_on_site": STAFF_ONLY,
    "admin:app_list": STAFF_ONLY,
    "admin:inference_prediction_image": STAFF_ONLY,
    "admin:inference_prediction_heatmap": STAFF_ONLY,
    "admin:inference_modelversion_rollback": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "admin:inference_modelversion_stop_shadow": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "admin:inference_modelversion_activate": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "admin:inference_modelversion_start_shadow": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "admin:inference_modelversion_plot": STAFF_ONLY,
    "admin:inference_modelversion_withdraw": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "admin:inference_modelversion_site_rollback": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "admin:inference_modelversion_site_stop_shadow": Rule(dict.fromkeys(ACTORS, 302), method="post"),
    "inference_site_validation": STAFF_ONLY,
    "inference_monitoring": STAFF_ONLY,
    "admin/(?P<url>.*)$": STAFF_ONLY,  # the admin's catch-all
}
# What ModelAdmin and AdminSite generate for every registered model.
ADMIN_GENERATED = re.compile(r"^admin:\w+_(changelist|add|history|delete|change)$|^admin/\w+/\w+/<path:object_id>/$")


def _walk(patterns, prefix="", namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = ":".join(n for n in (namespace, pattern.namespace) if n) or None
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield route, name or route


URLS = sorted(set(_walk(get_resolver().url_patterns)))


def rule_for(key):
    if key in RULES:
        return RULES[key]
    if ADMIN_GENERATED.match(key):
        return STAFF_ONLY
    return None


def test_every_url_pattern_has_a_rule():
    missing = [f"{route} ({key})" for route, key in URLS if rule_for(key) is None]
    assert not missing, "add these to tests/security/test_access_matrix.py RULES: " + ", ".join(missing)
    stale = set(RULES) - {key for _, key in URLS}
    assert not stale, f"rules for patterns that no longer exist: {stale}"


# --- The world: one record of the owner's clinic, of every kind --------------------


@pytest.fixture
def world(owner, colleague, outsider, patient, lesion):
    image = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(plain_png()), modality="clinical")
    version = ModelVersion.objects.create(
        name="m",
        version="1",
        file="models/m.keras",
        sha256="0" * 64,
        input_size=32,
        preprocessing="square-resize-v1",
        threshold=0.5,
    )
    # Finished, so that the model's FHIR Observation exists too.
    prediction = Prediction.objects.create(
        image=image,
        model_version=version,
        status="succeeded",
        label="benign",
        probability_malignant=0.1,
        confidence=0.8,
    )
    prediction.heatmap.save("heatmap.png", ContentFile(plain_png()))
    token_row, _ = issue_token(user=owner, name="owner phone")
    values = {
        "patient_id": patient.pk,
        "lesion_id": lesion.pk,
        "image_id": image.pk,
        "prediction_id": prediction.pk,
        "token_id": token_row.pk,
        "object_id": version.pk,
        "content_type_id": 1,
        "id": owner.pk,
        "plot": "calibration",
        "app_label": "cases",
        "url": "no-such-admin-page/",
        "device_id": version.pk,
        "resource_type": "Patient",
        "rest": "NoSuchType/1",
        "version_id": version.pk,
    }
    secrets = [str(patient.pk), patient.medical_record_number, str(token_row.pk)]
    return {"values": values, "users": {OWNER: owner, COLLEAGUE: colleague, OUTSIDER: outsider}, "secrets": secrets}


def concrete(route, values):
    """``route`` with every parameter filled in from ``values``."""
    if route.startswith("admin/^"):  # the admin's app list: a regex route
        return f"/admin/{values['app_label']}/"
    if "(?P<url>" in route:
        return f"/admin/{values['url']}"
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)
    return "/" + path


def client_for(actor, world, api):
    if actor == ANONYMOUS:
        return APIClient() if api else Client()
    if actor == OTHER_TOKEN:
        _, token = issue_token(user=world["users"][OUTSIDER], name="other clinic phone")
        client = APIClient() if api else Client()
        client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return client
    user = world["users"][actor]
    if api and actor != OUTSIDER:  # the outsider comes with a browser session, to the API too
        _, token = issue_token(user=user, name=f"{actor} phone")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client
    client = APIClient() if api else Client()
    client.force_login(user)
    return client


def _body(response):
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


@pytest.mark.parametrize(("route", "key"), URLS, ids=[key for _, key in URLS])
def test_access(route, key, world):
    rule = rule_for(key)
    assert rule is not None, f"no rule for {route}"
    url = concrete(route, world["values"])
    for actor in ACTORS:
        client = client_for(actor, world, rule.api)
        reads_before = AuditEvent.objects.filter(action__in=["read", "refused"]).count()
        response = getattr(client, rule.method)(url, rule.data)
        expected = rule.statuses[actor]
        if (rule is PORTAL_RECORD or rule is API_RECORD) and rule.method == "get":
            # Every read of one patient record, successful or refused, is one audit row.
            new = list(AuditEvent.objects.filter(action__in=["read", "refused"]).order_by("-id")[:2])
            assert AuditEvent.objects.filter(action__in=["read", "refused"]).count() == reads_before + (
                1 if response.status_code in (200, 401, 403, 404) else 0
            ), f"{actor} GET {url}: audit rows {new}"
        assert response.status_code == expected, f"{actor} {rule.method.upper()} {url}: {response.status_code}"
        if response.status_code == 302 and rule is STAFF_ONLY:
            assert response["Location"].startswith("/admin/login/"), response["Location"]
        if rule.hides_owner_records and actor in (OUTSIDER, OTHER_TOKEN):
            body = _body(response).decode(errors="replace")
            for secret in world["secrets"]:
                assert secret not in body, f"{actor} sees {secret} at {url}"
