"""The prediction review admin (inference/admin/predictions.py): its list and filters, the thumbnails,
re-run, flag and CSV export. About 430 lines, kept in one module like the admin it tests: each action is
tested for each role that may or may not use it."""

import csv
import io

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from cases import services as case_services
from cases.models import Review
from core.models import AuditEvent
from inference import services
from inference.models import ModelVersion, Prediction
from tests import admin_helpers
from tests.conftest import png_bytes
from tests.factories import LesionFactory, PatientFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:inference_prediction_changelist"


@pytest.fixture
def old_model(db):
    """A retired model version, inactive."""
    return ModelVersion.objects.create(
        name="baseline",
        version="0",
        file="models/baseline.keras",
        sha256="0" * 64,
        input_size=32,
        preprocessing="square-resize-v1",
        threshold=0.5,
    )


@pytest.fixture
def other_lesion(outsider):
    return LesionFactory(patient=PatientFactory(clinic=outsider.clinics.get()))


def predict(image, model_version, **fields):
    return Prediction.objects.create(image=image, model_version=model_version, **fields)


def succeeded(label, probability):
    return {"status": "succeeded", "label": label, "probability_malignant": probability, "confidence": 0.9}


def listed(client, **params):
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return {p.pk for p in response.context["cl"].result_list}


def run_action(client, action, predictions, capture):
    with capture(execute=True):
        return client.post(
            reverse(CHANGELIST), {"action": action, "_selected_action": [p.pk for p in predictions]}, follow=True
        )


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


# --- The review list: columns and filters.


@pytest.fixture
def review_rows(owner, lesion, active_model, old_model):
    """Six predictions over five images, one of each kind the filters tell apart."""
    images = [admin_helpers.make_image(lesion, owner) for _ in range(5)]
    rows = {
        "benign": predict(images[0], active_model, **succeeded("benign", 0.1)),
        "malignant": predict(images[1], active_model, flagged_for_specialist=True, **succeeded("malignant", 0.9)),
        "uncertain": predict(images[2], active_model, **succeeded("uncertain", 0.5)),
        "failed": predict(images[3], active_model, status="failed", error="The image cannot be analysed."),
        "pending": predict(images[4], active_model),
        "shadow": predict(images[0], old_model, is_shadow=True, **succeeded("benign", 0.3)),
    }
    admin_helpers.make_review(images[0], owner, verdict="agree", final_diagnosis="nevus")
    admin_helpers.make_review(
        images[1], owner, verdict="disagree", final_diagnosis="nevus", histopathology_result="benign"
    )
    return rows


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"status__exact": "failed"}, {"failed"}),
        ({"status__exact": "pending"}, {"pending"}),
        ({"label__exact": "uncertain"}, {"uncertain"}),
        ({"probability": "lt20"}, {"benign"}),
        ({"probability": "20to50"}, {"shadow"}),
        ({"probability": "50to80"}, {"uncertain"}),
        ({"probability": "ge80"}, {"malignant"}),
        ({"clinical": "no"}, {"shadow"}),
        ({"clinical": "yes"}, {"benign", "malignant", "uncertain", "failed", "pending"}),
        ({"reviewed": "yes"}, {"benign", "malignant", "shadow"}),
        ({"reviewed": "no"}, {"uncertain", "failed", "pending"}),
        ({"disagreement": "yes"}, {"malignant"}),
        ({"disagreement": "no"}, {"benign", "uncertain", "failed", "pending", "shadow"}),
        ({"failed": "yes"}, {"failed"}),
        ({"failed": "no"}, {"benign", "malignant", "uncertain", "pending", "shadow"}),
        ({"flagged_for_specialist__exact": "1"}, {"malignant"}),
    ],
)
def test_each_filter_returns_exactly_its_rows(client, plain_staff, review_rows, params, expected):
    client.force_login(plain_staff)
    assert listed(client, **params) == {review_rows[name].pk for name in expected}


def test_the_model_version_filter_returns_exactly_its_rows(client, plain_staff, review_rows, old_model):
    client.force_login(plain_staff)
    assert listed(client, model_version__id__exact=str(old_model.pk)) == {review_rows["shadow"].pk}


def test_the_list_shows_the_latest_review_of_the_image(client, plain_staff, review_rows, owner):
    image = review_rows["malignant"].image
    admin_helpers.make_review(image, owner, verdict="agree", final_diagnosis="melanoma")
    client.force_login(plain_staff)
    rows = {p.pk: p for p in client.get(reverse(CHANGELIST)).context["cl"].result_list}
    assert rows[review_rows["malignant"].pk].latest_verdict == "agree"
    assert rows[review_rows["malignant"].pk].latest_final_diagnosis == "melanoma"
    assert rows[review_rows["uncertain"].pk].latest_verdict is None


def test_the_list_shows_thumbnails_from_admin_only_urls(client, plain_staff, review_rows):
    prediction = review_rows["benign"]
    prediction.heatmap.save("heatmap.png", ContentFile(png_bytes()))
    client.force_login(plain_staff)
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert reverse("admin:inference_prediction_image", args=[prediction.pk]) in page
    assert reverse("admin:inference_prediction_heatmap", args=[prediction.pk]) in page
    assert "/media/" not in page


# --- The bytes behind the thumbnails.


@pytest.fixture
def uploaded(owner, lesion, jpeg_bytes, active_model):
    image = case_services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    return Prediction.objects.get(image=image)


def test_staff_get_the_image_without_its_metadata(client, plain_staff, uploaded, jpeg_bytes):
    client.force_login(plain_staff)
    response = client.get(reverse("admin:inference_prediction_image", args=[uploaded.pk]))
    assert response.status_code == 200
    # The stored (sanitized at upload) bytes, as every other door serves them.
    served = b"".join(response.streaming_content)
    assert served == uploaded.image.image.open("rb").read()
    assert b"Exif" not in served
    assert response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"]


def test_staff_get_the_heatmap_and_a_404_when_there_is_none(client, plain_staff, uploaded):
    client.force_login(plain_staff)
    url = reverse("admin:inference_prediction_heatmap", args=[uploaded.pk])
    assert client.get(url).status_code == 404
    uploaded.heatmap.save("heatmap.png", ContentFile(png_bytes()))
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == png_bytes()


@pytest.mark.parametrize("view", ["image", "heatmap"])
def test_a_clinician_who_is_not_staff_cannot_fetch_admin_images(client, owner, uploaded, view):
    client.force_login(owner)
    response = client.get(reverse(f"admin:inference_prediction_{view}", args=[uploaded.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


# --- Re-run with the active model.


@pytest.fixture
def rerun_rows(owner, lesion, active_model, old_model):
    """One image in each state the re-run tells apart."""
    images = [admin_helpers.make_image(lesion, owner) for _ in range(5)]
    return {
        "old_model_only": predict(images[0], old_model, **succeeded("benign", 0.2)),
        "done": predict(images[1], active_model, **succeeded("malignant", 0.8)),
        "failed": predict(images[2], active_model, status="failed", error="Gave up", attempts=6),
        "shadow": predict(images[3], active_model, is_shadow=True, **succeeded("benign", 0.1)),
        "pending": predict(images[4], active_model),
    }


def test_rerun_queues_what_the_active_model_has_not_done(
    client, ml_admin, rerun_rows, active_model, queued_predictions, django_capture_on_commit_callbacks
):
    client.force_login(ml_admin)
    response = run_action(client, "rerun_with_active_model", rerun_rows.values(), django_capture_on_commit_callbacks)

    new = Prediction.objects.get(image=rerun_rows["old_model_only"].image, model_version=active_model)
    failed = Prediction.objects.get(pk=rerun_rows["failed"].pk)
    assert (new.status, new.is_shadow) == ("pending", False)
    assert (failed.status, failed.error, failed.attempts, failed.finished_at) == ("pending", "", 0, None)
    assert sorted(queued_predictions) == sorted([(str(new.pk),), (str(failed.pk),)])
    assert Prediction.objects.get(pk=rerun_rows["shadow"].pk).is_shadow is False
    assert Prediction.objects.get(pk=rerun_rows["done"].pk).status == "succeeded"
    assert messages_of(response) == [
        "Re-run with the active model: 2 queued, 1 published from shadow, 1 already queued, 1 already done."
    ]


def test_rerun_twice_queues_nothing_new(
    client, ml_admin, rerun_rows, queued_predictions, django_capture_on_commit_callbacks
):
    client.force_login(ml_admin)
    run_action(client, "rerun_with_active_model", rerun_rows.values(), django_capture_on_commit_callbacks)
    count, sent = Prediction.objects.count(), len(queued_predictions)
    response = run_action(client, "rerun_with_active_model", rerun_rows.values(), django_capture_on_commit_callbacks)
    assert Prediction.objects.count() == count
    assert len(queued_predictions) == sent
    assert messages_of(response) == ["Re-run with the active model: 0 queued, 3 already queued, 2 already done."]


def test_rerun_writes_an_audit_event_per_image(
    client, ml_admin, rerun_rows, queued_predictions, django_capture_on_commit_callbacks
):
    client.force_login(ml_admin)
    run_action(client, "rerun_with_active_model", rerun_rows.values(), django_capture_on_commit_callbacks)
    events = AuditEvent.objects.filter(model="inference.prediction", action="action")
    assert events.count() == 5
    assert {e.user for e in events} == {ml_admin}
    failed = events.get(object_id=str(rerun_rows["failed"].pk))
    assert failed.changes == {"error": ["Gave up", ""], "status": ["failed", "pending"]}
    assert "queued" in failed.description
    shadow = events.get(object_id=str(rerun_rows["shadow"].pk))
    assert shadow.changes == {"is_shadow": [True, False]}


def test_rerun_with_no_active_model_says_so_and_changes_nothing(
    client, ml_admin, owner, lesion, old_model, queued_predictions, django_capture_on_commit_callbacks
):
    prediction = predict(admin_helpers.make_image(lesion, owner), old_model, status="failed")
    client.force_login(ml_admin)
    response = run_action(client, "rerun_with_active_model", [prediction], django_capture_on_commit_callbacks)
    assert messages_of(response) == ["No model is active: activate one before re-running predictions."]
    assert Prediction.objects.count() == 1 and queued_predictions == []
    assert not AuditEvent.objects.exclude(action__in=["read", "refused"]).exists()


def test_a_clinic_admin_reruns_their_clinics_predictions(
    client, clinic_admin, rerun_rows, queued_predictions, django_capture_on_commit_callbacks
):
    client.force_login(clinic_admin)
    run_action(client, "rerun_with_active_model", [rerun_rows["failed"]], django_capture_on_commit_callbacks)
    assert queued_predictions == [(str(rerun_rows["failed"].pk),)]


def test_a_clinic_admin_cannot_rerun_another_clinics_predictions(
    client,
    clinic_admin,
    rerun_rows,
    other_lesion,
    outsider,
    active_model,
    queued_predictions,
    django_capture_on_commit_callbacks,
):
    theirs = predict(admin_helpers.make_image(other_lesion, outsider), active_model, status="failed")
    client.force_login(clinic_admin)
    # Least privilege: another clinic's prediction is not in their admin at all.
    assert theirs.pk not in listed(client)
    run_action(client, "rerun_with_active_model", [theirs], django_capture_on_commit_callbacks)
    assert queued_predictions == []
    assert Prediction.objects.get(pk=theirs.pk).status == "failed"
    assert not AuditEvent.objects.exclude(action__in=["read", "refused"]).exists()


def test_plain_staff_are_not_offered_rerun_or_flag(
    client, plain_staff, rerun_rows, queued_predictions, django_capture_on_commit_callbacks
):
    client.force_login(plain_staff)
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="export_csv"' in page
    assert 'value="rerun_with_active_model"' not in page and 'value="flag_for_specialist"' not in page
    for action in ("rerun_with_active_model", "flag_for_specialist"):
        run_action(client, action, [rerun_rows["failed"]], django_capture_on_commit_callbacks)
    assert queued_predictions == []
    assert Prediction.objects.get(pk=rerun_rows["failed"].pk).status == "failed"
    assert not Prediction.objects.filter(flagged_for_specialist=True).exists()


# --- Flag for specialist review.


def test_flagging_records_who_and_when_and_is_audited(
    client, clinic_admin, rerun_rows, django_capture_on_commit_callbacks
):
    prediction = rerun_rows["done"]
    client.force_login(clinic_admin)
    response = run_action(client, "flag_for_specialist", [prediction], django_capture_on_commit_callbacks)
    prediction.refresh_from_db()
    assert prediction.flagged_for_specialist is True
    assert prediction.flagged_by == clinic_admin and prediction.flagged_at is not None
    assert messages_of(response) == ["1 flagged for specialist review."]
    event = AuditEvent.objects.get(object_id=str(prediction.pk))
    assert (event.user, event.description, event.changes) == (
        clinic_admin,
        "Flagged for specialist review",
        {"flagged_for_specialist": [False, True]},
    )


def test_flagging_again_keeps_the_first_flag(
    client, clinic_admin, superuser, rerun_rows, django_capture_on_commit_callbacks
):
    prediction = rerun_rows["done"]
    client.force_login(clinic_admin)
    run_action(client, "flag_for_specialist", [prediction], django_capture_on_commit_callbacks)
    first = Prediction.objects.get(pk=prediction.pk).flagged_at
    client.force_login(superuser)
    response = run_action(client, "flag_for_specialist", [prediction], django_capture_on_commit_callbacks)
    prediction.refresh_from_db()
    assert (prediction.flagged_by, prediction.flagged_at) == (clinic_admin, first)
    assert messages_of(response) == ["0 flagged for specialist review; 1 already flagged."]
    assert AuditEvent.objects.exclude(action__in=["read", "refused"]).count() == 1


def test_a_clinic_admin_cannot_flag_another_clinics_prediction(
    client, clinic_admin, other_lesion, outsider, active_model, django_capture_on_commit_callbacks
):
    theirs = predict(admin_helpers.make_image(other_lesion, outsider), active_model)
    client.force_login(clinic_admin)
    run_action(client, "flag_for_specialist", [theirs], django_capture_on_commit_callbacks)
    assert Prediction.objects.get(pk=theirs.pk).flagged_for_specialist is False


def test_an_ml_admin_flags_any_clinics_prediction(
    client, ml_admin, other_lesion, outsider, active_model, django_capture_on_commit_callbacks
):
    theirs = predict(admin_helpers.make_image(other_lesion, outsider), active_model)
    client.force_login(ml_admin)
    run_action(client, "flag_for_specialist", [theirs], django_capture_on_commit_callbacks)
    assert Prediction.objects.get(pk=theirs.pk).flagged_for_specialist is True


# --- Export as CSV.


def export(client, predictions):
    response = client.post(
        reverse(CHANGELIST), {"action": "export_csv", "_selected_action": [p.pk for p in predictions]}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_any_staff_exports_the_selection_with_the_latest_review(client, plain_staff, review_rows, patient, clinic):
    client.force_login(plain_staff)
    malignant = review_rows["malignant"]
    header, *rows = export(client, [malignant, review_rows["pending"]])
    assert header[:4] == ["prediction_id", "image_id", "patient_mrn", "clinic"]
    assert len(rows) == 2
    row = dict(zip(header, next(r for r in rows if r[0] == str(malignant.pk)), strict=True))
    assert row == {
        **row,
        "image_id": str(malignant.image_id),
        "patient_mrn": patient.medical_record_number,
        "clinic": clinic.name,
        "model_version": malignant.model_version.label,
        "status": "succeeded",
        "label": "malignant",
        "probability_malignant": "0.9",
        "shadow": "False",
        "flagged_for_specialist": "True",
        "latest_verdict": Review.Verdict.DISAGREE,
        "final_diagnosis": "nevus",
        "histopathology_result": "benign",
        "queued_at": malignant.queued_at.isoformat(),
    }


def test_the_export_is_audited_row_by_row(client, plain_staff, review_rows):
    client.force_login(plain_staff)
    export(client, [review_rows["benign"], review_rows["failed"]])
    events = AuditEvent.objects.filter(description="Exported as CSV")
    assert {e.object_id for e in events} == {str(review_rows["benign"].pk), str(review_rows["failed"].pk)}
    assert {e.user for e in events} == {plain_staff}


@pytest.mark.parametrize("mrn", ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)"])
def test_the_export_defuses_spreadsheet_formulas(client, plain_staff, owner, active_model, mrn, clinic):
    lesion = LesionFactory(patient=PatientFactory(clinic=clinic, medical_record_number=mrn))
    prediction = predict(admin_helpers.make_image(lesion, owner), active_model)
    client.force_login(plain_staff)
    header, row = export(client, [prediction])
    assert row[header.index("patient_mrn")] == "'" + mrn


def test_the_export_leaves_ordinary_values_alone(client, plain_staff, review_rows):
    client.force_login(plain_staff)
    header, row = export(client, [review_rows["benign"]])
    assert row[header.index("probability_malignant")] == "0.1"
    assert row[header.index("patient_mrn")].startswith("MRN-")


def test_the_services_refuse_a_user_without_a_role(plain_staff, rerun_rows):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.rerun_with_active_model(predictions=[rerun_rows["failed"]], user=plain_staff)
    with pytest.raises(PermissionDenied):
        services.flag_for_specialist(predictions=[rerun_rows["failed"]], user=plain_staff)


# --- What clinicians see of a flag.


def test_the_portal_shows_a_flag_to_the_clinicians_of_the_image(client, colleague, clinic_admin, uploaded):
    page_url = reverse("portal:image-detail", args=[uploaded.image_id])
    client.force_login(colleague)
    assert "Flagged for specialist review" not in client.get(page_url).content.decode()
    services.flag_for_specialist(predictions=[uploaded], user=clinic_admin)
    assert "Flagged for specialist review" in client.get(page_url).content.decode()


def test_the_list_is_searchable_by_mrn_and_ids(client, plain_staff, review_rows, patient):
    client.force_login(plain_staff)
    assert len(listed(client, q=patient.medical_record_number)) == len(review_rows)
    failed = review_rows["failed"]
    assert listed(client, q=str(failed.pk)) == {failed.pk}
    assert listed(client, q=str(failed.image_id)) == {failed.pk}
    assert listed(client, q="no-such-thing") == set()
