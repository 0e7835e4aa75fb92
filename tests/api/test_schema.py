"""The OpenAPI schema, its viewers (local files, no CDN) and a schemathesis
run against the live API: no 5xx, every response as the schema says."""

import io
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.tokens import issue_token
from cases import services
from inference.models import Prediction

from .conftest import token_client

# Examples per operation and mode: enough to find shape errors, quick enough for CI.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", 12))
# Reproducible by default; SCHEMATHESIS_RANDOM=1 explores new inputs on each run.
DERANDOMIZE = not os.environ.get("SCHEMATHESIS_RANDOM")

pytestmark = pytest.mark.django_db


def test_schema_is_public_openapi_3_with_bearer_auth(db):
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["deviceToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A device token from POST /api/v1/auth/tokens.",
    }
    upload = schema["paths"]["/api/v1/lesions/{lesion_id}/images"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"201", "400", "401", "404", "413", "415", "422", "429"} <= set(upload["responses"])
    sign_in = schema["paths"]["/api/v1/auth/tokens"]["post"]
    assert sign_in.get("security", []) in ([], [{}])  # no token needed to get one
    assert schema["paths"]["/api/v1/patients"]["get"]["security"][0] == {"deviceToken": []}


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_viewers_use_local_static_files_only(db, client, url):
    response = client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "cdn" not in page.lower() and "https://" not in page.replace("https://github.com", "")
    assert "/static/drf_spectacular_sidecar/" in page
    asset = page.split("/static/drf_spectacular_sidecar/", 1)[1].split('"', 1)[0]
    static = client.get(f"/static/drf_spectacular_sidecar/{asset}")
    assert static.status_code == 200, asset


@pytest.fixture
def live_schema(db):
    """The schema as the WSGI application serves it; requests go to the same app.

    Like Django's test client, keep the handler from closing the test's
    database connection at the end of each request.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from skincare.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def test_api_conforms_to_its_schema(
    live_schema, owner, patient, lesion, jpeg_bytes, active_model, queued_predictions, settings
):
    """Every operation, valid and invalid input, all of schemathesis's checks
    but one: positive_data_acceptance expects every schema-valid body to be
    accepted, while clinical rules legitimately refuse some with 400 (a date
    of birth in the future, a duplicate record number, a clinic that is not
    yours, bytes that are not an image). Everything else, including
    negative_data_rejection and response conformance, must pass.

    Path parameters are real records of the owner's clinic (random UUIDs
    would only ever meet 404s), the rest is generated.
    """
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            "user": "100000/min",
            "token": "100000/min",
            "uploads": "100000/min",
            "auth": "100000/min",
        },
    }
    image = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="clinical")
    prediction = Prediction.objects.get(image=image)
    spare_token, _ = issue_token(user=owner, name="spare")
    known = {
        "patient_id": str(patient.pk),
        "lesion_id": str(lesion.pk),
        "image_id": str(image.pk),
        "prediction_id": str(prediction.pk),
        "token_id": str(spare_token.pk),
    }
    headers = {"Authorization": f"Bearer {token_client(owner).token}"}
    operations = [result.ok() for result in live_schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        path_parameters = {name: value for name, value in known.items() if "{" + name + "}" in operation.path}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(mode, path_parameters=path_parameters or None)

            @given(case=strategy)
            @hypothesis_settings(
                max_examples=EXAMPLES,
                derandomize=DERANDOMIZE,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case):
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            check()
