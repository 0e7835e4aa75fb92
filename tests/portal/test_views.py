"""The portal's pages through Django's test client (the browser tests are in test_browser.py)."""

import datetime
import hashlib
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from cases import services
from cases.models import Lesion, LesionImage, Patient, Review
from inference.models import Prediction
from tests.conftest import png_bytes
from tests.factories import LesionFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, owner):
    client.force_login(owner)
    return client


def upload_image(user, lesion, data, **kwargs):
    return services.add_lesion_image(
        uploader=user, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic", **kwargs
    )


def finish(image, *, label, probability, **fields):
    Prediction.objects.filter(image=image).update(
        status=Prediction.Status.SUCCEEDED, label=label, probability_malignant=probability, confidence=0.8, **fields
    )


def patient_form(**changes):
    data = {
        "medical_record_number": "MRN-NEW-1",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "date_of_birth": "1980-02-03",
        "sex": "female",
        "fitzpatrick_skin_type": "2",
    }
    data.update(changes)
    return data


class TestSignIn:
    def test_every_page_needs_a_login(self, client, patient):
        for url in ["/", reverse("portal:patient-list"), reverse("portal:patient-detail", args=[patient.pk])]:
            response = client.get(url)
            assert response.status_code == 302
            assert response["Location"].startswith(reverse("portal:login"))

    def test_sign_in_and_out(self, client, owner):
        response = client.post(reverse("portal:login"), {"username": "owner", "password": "correct horse battery"})
        assert response.status_code == 302
        assert client.get("/").status_code == 200
        assert client.get(reverse("portal:logout")).status_code == 405  # logging out is a POST
        client.post(reverse("portal:logout"))
        assert client.get("/").status_code == 302

    def test_repeated_failures_lock_the_account_out(self, client, owner, settings):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            response = client.post(reverse("portal:login"), {"username": "owner", "password": "wrong"})
            assert response.status_code == 200
            assert "correct username and password" in response.content.decode()
        response = client.post(reverse("portal:login"), {"username": "owner", "password": "wrong"})
        assert response.status_code == 429
        assert "temporarily locked" in response.content.decode()
        # Even the right password is refused until the cool-off has passed.
        response = client.post(reverse("portal:login"), {"username": "owner", "password": "correct horse battery"})
        assert response.status_code == 429
        assert client.get("/").status_code == 302

    def test_sessions_expire_after_inactivity(self, signed_in, settings):
        from django.contrib.sessions.models import Session

        assert settings.SESSION_COOKIE_AGE <= 30 * 60
        assert settings.SESSION_SAVE_EVERY_REQUEST is True
        session = Session.objects.get()
        before = session.expire_date
        assert signed_in.get("/").status_code == 200  # each request renews the clock
        assert Session.objects.get().expire_date >= before
        Session.objects.update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
        assert signed_in.get("/").status_code == 302

    def test_password_change(self, signed_in, owner):
        response = signed_in.post(
            reverse("portal:password-change"),
            {
                "old_password": "correct horse battery",
                "new_password1": "a much longer new passphrase",
                "new_password2": "a much longer new passphrase",
            },
        )
        assert response.status_code == 302
        owner.refresh_from_db()
        assert owner.check_password("a much longer new passphrase")

    def test_a_csrf_less_post_is_refused(self, owner, patient):
        client = Client(enforce_csrf_checks=True)
        client.force_login(owner)
        response = client.post(reverse("portal:patient-create"), patient_form())
        assert response.status_code == 403
        assert not Patient.objects.filter(medical_record_number="MRN-NEW-1").exists()


class TestWorklist:
    def test_highest_risk_first_and_reviewed_images_leave(self, signed_in, owner, lesion, jpeg_bytes, active_model):
        benign = upload_image(owner, lesion, jpeg_bytes)
        malignant_low = upload_image(owner, lesion, jpeg_bytes)
        malignant_high = upload_image(owner, lesion, jpeg_bytes)
        uncertain = upload_image(owner, lesion, jpeg_bytes)
        pending = upload_image(owner, lesion, jpeg_bytes)
        failed = upload_image(owner, lesion, jpeg_bytes)
        finish(benign, label="benign", probability=0.1)
        finish(malignant_low, label="malignant", probability=0.7)
        finish(malignant_high, label="malignant", probability=0.95)
        finish(uncertain, label="uncertain", probability=0.5)
        Prediction.objects.filter(image=failed).update(status="failed", error="broken")

        content = signed_in.get("/").content.decode()
        order = re.findall(r'<tr data-image="([0-9a-f-]+)"', content)
        expected = [malignant_high, malignant_low, uncertain, pending, failed, benign]
        assert order == [str(i.pk) for i in expected]
        assert "6 to review" in content
        assert "Uncertain — needs specialist review" in content

        services.add_review(reviewer=owner, image=malignant_high, verdict="agree", final_diagnosis="melanoma")
        content = signed_in.get("/").content.decode()
        assert str(malignant_high.pk) not in re.findall(r'<tr data-image="([0-9a-f-]+)"', content)

    def test_filters(self, signed_in, owner, lesion, jpeg_bytes, active_model):
        benign = upload_image(owner, lesion, jpeg_bytes)
        malignant = upload_image(owner, lesion, jpeg_bytes)
        pending = upload_image(owner, lesion, jpeg_bytes)
        finish(benign, label="benign", probability=0.1)
        finish(malignant, label="malignant", probability=0.9)

        def rows(**params):
            return re.findall(r'<tr data-image="([0-9a-f-]+)"', signed_in.get("/", params).content.decode())

        assert rows(risk="malignant") == [str(malignant.pk)]
        assert rows(status="pending") == [str(pending.pk)]
        today = timezone.localdate()
        assert len(rows(uploaded_from=today.isoformat(), uploaded_to=today.isoformat())) == 3
        assert rows(uploaded_to=(today - datetime.timedelta(days=1)).isoformat()) == []
        assert len(rows(clinic=str(lesion.patient.clinic.pk))) == 3

    def test_an_outsider_sees_nothing(self, client, outsider, owner, lesion, jpeg_bytes, active_model):
        image = upload_image(owner, lesion, jpeg_bytes)
        client.force_login(outsider)
        assert str(image.pk) not in client.get("/").content.decode()

    def test_queries_do_not_grow_with_rows(
        self, signed_in, owner, clinic, jpeg_bytes, active_model, django_assert_max_num_queries
    ):
        def add_rows(count):
            for n in range(count):
                lesion = LesionFactory(patient=PatientFactory(clinic=clinic))
                image = upload_image(owner, lesion, jpeg_bytes)
                finish(image, label="malignant" if n % 2 else "benign", probability=n / 40)

        def queries_for_page():
            with CaptureQueriesContext(connection) as context:
                response = signed_in.get("/")
            assert response.status_code == 200
            return len(context), response.content.decode().count("<tr data-image=")

        add_rows(5)
        small, rows = queries_for_page()
        assert rows == 5
        add_rows(25)
        with django_assert_max_num_queries(small):
            response = signed_in.get("/")
        assert response.content.decode().count("<tr data-image=") == 25  # one page of 30
        assert small <= 12


class TestPatients:
    def test_search_by_name_and_mrn(self, signed_in, clinic, outsider):
        PatientFactory(clinic=clinic, family_name="Curie", medical_record_number="X-1")
        PatientFactory(clinic=clinic, family_name="Noether", medical_record_number="Y-2")
        PatientFactory(clinic=outsider.clinics.get(), family_name="Curious", medical_record_number="X-9")
        content = signed_in.get(reverse("portal:patient-list"), {"q": "cur"}).content.decode()
        assert "Curie" in content and "Noether" not in content and "Curious" not in content
        content = signed_in.get(reverse("portal:patient-list"), {"q": "y-2"}).content.decode()
        assert "Noether" in content and "Curie" not in content

    def test_create_and_edit(self, signed_in, clinic):
        response = signed_in.post(reverse("portal:patient-create"), patient_form())
        patient = Patient.objects.get(medical_record_number="MRN-NEW-1")
        assert response["Location"] == reverse("portal:patient-detail", args=[patient.pk])
        assert patient.clinic == clinic
        response = signed_in.post(
            reverse("portal:patient-edit", args=[patient.pk]), patient_form(given_name="Augusta Ada")
        )
        assert response.status_code == 302
        patient.refresh_from_db()
        assert patient.given_name == "Augusta Ada"

    @pytest.mark.parametrize(
        "changes, field, message",
        [
            (
                {"medical_record_number": "TAKEN"},
                "medical_record_number",
                "Another patient in this clinic has this MRN.",
            ),
            ({"date_of_birth": "2999-01-01"}, "date_of_birth", "The date of birth is in the future."),
            ({"given_name": ""}, "given_name", "This field is required."),
            ({"family_name": "  "}, "family_name", "This field is required."),
        ],
    )
    def test_errors_are_shown_next_to_the_field(self, signed_in, clinic, changes, field, message):
        PatientFactory(clinic=clinic, medical_record_number="TAKEN")
        before = Patient.objects.count()
        response = signed_in.post(reverse("portal:patient-create"), patient_form(**changes))
        assert response.status_code == 200
        assert response.context["form"].errors[field] == [message]
        html = response.content.decode().replace("&#x27;", "'")
        # The error sits under the id the field's aria-describedby names.
        assert re.search(rf'id="id_{field}_error"><div>{re.escape(message)}<', html)
        assert re.search(rf'<[^>]*aria-describedby="id_{field}_error"[^>]*id="id_{field}"', html)
        assert re.search(rf'<a href="#id_{field}" data-error-link>[^<]*{re.escape(message)}</a>', html)
        assert Patient.objects.count() == before

    def test_an_mrn_taken_in_another_clinic_is_fine(self, signed_in, outsider):
        PatientFactory(clinic=outsider.clinics.get(), medical_record_number="MRN-NEW-1")
        assert signed_in.post(reverse("portal:patient-create"), patient_form()).status_code == 302

    def test_editing_to_a_duplicate_mrn_is_refused(self, signed_in, clinic, patient):
        PatientFactory(clinic=clinic, medical_record_number="TAKEN")
        response = signed_in.post(
            reverse("portal:patient-edit", args=[patient.pk]), patient_form(medical_record_number="TAKEN")
        )
        assert response.status_code == 200
        assert "medical_record_number" in response.context["form"].errors

    def test_patient_page_groups_lesions_and_shows_the_body_map(self, signed_in, owner, patient, jpeg_bytes):
        back = LesionFactory(patient=patient, anatomical_site="posterior_torso", description="left scapula")
        LesionFactory(patient=patient, anatomical_site="head_neck", description="temple")
        upload_image(owner, back, jpeg_bytes, captured_at=timezone.now() - datetime.timedelta(days=30))
        reviewed = upload_image(owner, back, jpeg_bytes)
        services.add_review(reviewer=owner, image=reviewed, verdict="agree", final_diagnosis="nevus")
        services.add_review(reviewer=owner, image=reviewed, verdict="disagree", final_diagnosis="melanoma")
        content = signed_in.get(reverse("portal:patient-detail", args=[patient.pk])).content.decode()
        assert "Reviewed: Melanoma" in content and "Awaiting review" in content
        assert 'id="site-posterior_torso"' in content and 'id="site-head_neck"' in content
        assert "<svg" in content and 'class="region has-lesions"' in content
        assert content.count('data-image="') == 2

    def test_outsiders_get_404_everywhere(self, client, outsider, owner, lesion, jpeg_bytes):
        image = upload_image(owner, lesion, jpeg_bytes)
        client.force_login(outsider)
        patient = lesion.patient
        for url in [
            reverse("portal:patient-detail", args=[patient.pk]),
            reverse("portal:patient-edit", args=[patient.pk]),
            reverse("portal:upload", args=[patient.pk]),
            reverse("portal:image-detail", args=[image.pk]),
            reverse("portal:image-status", args=[image.pk]),
            reverse("portal:image-file", args=[image.pk]),
        ]:
            assert client.get(url).status_code == 404, url
        assert client.post(reverse("portal:image-review", args=[image.pk]), {}).status_code == 404


def jpeg_with_gps():
    img = Image.new("RGB", (64, 48), (150, 90, 70))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0xA431] = "SERIAL-12345"  # BodySerialNumber
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (51.0, 30.0, 12.5)
    gps[3] = "W"
    gps[4] = (0.0, 7.0, 39.0)
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", exif=exif, comment=b"taken at home")
    return buffer.getvalue()


class TestUpload:
    def post(self, client, patient, files, **fields):
        data = {
            "lesion": "new",
            "anatomical_site": "lower_extremity",
            "description": "left shin",
            "modality": "dermoscopic",
            "captured_on": timezone.localdate().isoformat(),
            "images": files,
            **fields,
        }
        return client.post(reverse("portal:upload", args=[patient.pk]), data)

    def test_several_images_to_a_new_lesion(
        self, signed_in, patient, demo_image_paths, queued_predictions, active_model
    ):
        files = [SimpleUploadedFile(p.name, p.read_bytes(), "image/jpeg") for p in demo_image_paths[:3]]
        response = self.post(signed_in, patient, files)
        assert response.status_code == 302
        lesion = Lesion.objects.get(patient=patient)
        assert lesion.anatomical_site == "lower_extremity"
        assert lesion.images.count() == 3
        assert Prediction.objects.filter(image__lesion=lesion, status="pending").count() == 3
        page = signed_in.get(response["Location"]).content.decode()
        assert page.count('hx-trigger="every 2s"') == 3

    def test_to_an_existing_lesion_with_a_past_date(
        self, signed_in, lesion, jpeg_bytes, active_model, queued_predictions
    ):
        response = self.post(
            signed_in,
            lesion.patient,
            [SimpleUploadedFile("a.jpg", jpeg_bytes, "image/jpeg")],
            lesion=str(lesion.pk),
            captured_on="2024-05-06",
        )
        assert response.status_code == 302
        image = lesion.images.get()
        assert timezone.localtime(image.captured_at).date() == datetime.date(2024, 5, 6)

    @pytest.mark.parametrize(
        "files, fields, field, message",
        [
            (lambda j: [SimpleUploadedFile("notes.txt", b"hello", "text/plain")], {}, "images", "not a JPEG or PNG"),
            (lambda j: [], {}, "images", "Choose at least one image."),
            (
                lambda j: [SimpleUploadedFile("a.jpg", j, "image/jpeg")],
                {"captured_on": "2999-01-01"},
                "captured_on",
                "in the future",
            ),
            (
                lambda j: [SimpleUploadedFile("a.jpg", j, "image/jpeg")],
                {"anatomical_site": ""},
                "anatomical_site",
                "Choose the anatomical site",
            ),
            (
                lambda j: [
                    SimpleUploadedFile("a.jpg", j, "image/jpeg"),
                    SimpleUploadedFile("b.jpg", b"", "image/jpeg"),
                ],
                {},
                "images",
                "empty",
            ),
        ],
    )
    def test_bad_input_stores_nothing(
        self, signed_in, patient, jpeg_bytes, queued_predictions, files, fields, field, message
    ):
        response = self.post(signed_in, patient, files(jpeg_bytes), **fields)
        assert response.status_code == 200
        assert message in " ".join(response.context["form"].errors[field])
        assert not Lesion.objects.exists() and not LesionImage.objects.exists()
        assert queued_predictions == []

    def test_oversized_files_are_refused(self, signed_in, patient, jpeg_bytes, settings, queued_predictions):
        settings.SKINCARE_MAX_UPLOAD_BYTES = len(jpeg_bytes) - 1
        response = self.post(signed_in, patient, [SimpleUploadedFile("big.jpg", jpeg_bytes, "image/jpeg")])
        assert response.status_code == 200
        assert "limit" in " ".join(response.context["form"].errors["images"])
        assert not LesionImage.objects.exists()


class TestPredictionAndReview:
    @pytest.fixture
    def image(self, owner, lesion, jpeg_bytes, active_model):
        return upload_image(owner, lesion, jpeg_bytes)

    def test_status_fragment_polls_until_finished(self, signed_in, image):
        url = reverse("portal:image-status", args=[image.pk])
        assert 'hx-trigger="every 2s"' in signed_in.get(url).content.decode()
        finish(image, label="malignant", probability=0.91)
        content = signed_in.get(url).content.decode()
        assert "hx-trigger" not in content
        assert "Malignant" in content and "0.91" in content

    def test_panel_shows_uncertain_ood_model_and_disclaimer(self, signed_in, image, active_model):
        finish(image, label="uncertain", probability=0.5, out_of_distribution=True)
        content = signed_in.get(reverse("portal:image-detail", args=[image.pk])).content.decode()
        assert "Uncertain — needs specialist review" in content
        assert "Unlike the images this model was trained on — interpret with caution." in content
        assert active_model.label in content
        assert "decision support, not a diagnosis" in content

    def test_heatmap_toggle_is_offered_when_there_is_one(self, signed_in, image):
        finish(image, label="benign", probability=0.1)
        prediction = image.predictions.get()
        from django.core.files.base import ContentFile

        prediction.heatmap.save("h.png", ContentFile(png_bytes((16, 16), "RGBA", (255, 0, 0, 128))))
        content = signed_in.get(reverse("portal:image-detail", args=[image.pk])).content.decode()
        assert reverse("portal:prediction-heatmap", args=[prediction.pk]) in content
        assert 'role="switch"' in content

    def test_review_is_appended_and_shown(self, signed_in, owner, image):
        finish(image, label="malignant", probability=0.9)
        url = reverse("portal:image-review", args=[image.pk])
        data = {"verdict": "agree", "final_diagnosis": "melanoma", "biopsy_requested": "on", "notes": "excise"}
        assert signed_in.post(url, data).status_code == 302
        assert signed_in.post(url, {**data, "histopathology_result": "invasive_melanoma"}).status_code == 302
        reviews = list(Review.objects.filter(image=image).order_by("created_at"))
        assert len(reviews) == 2 and reviews[0].histopathology_result == "" and reviews[0].biopsy_requested
        assert reviews[0].prediction == image.predictions.get()
        content = signed_in.get(reverse("portal:image-detail", args=[image.pk])).content.decode()
        assert content.count("data-review") == 2

    def test_an_empty_review_shows_errors_and_stores_nothing(self, signed_in, image):
        response = signed_in.post(reverse("portal:image-review", args=[image.pk]), {})
        assert response.status_code == 400
        assert set(response.context["form"].errors) == {"verdict", "final_diagnosis"}
        assert not Review.objects.exists()


class TestPrivateImages:
    def test_exif_gps_and_serials_are_stripped(self, signed_in, owner, lesion, queued_predictions):
        data = jpeg_with_gps()
        assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)
        image = upload_image(owner, lesion, data)
        response = signed_in.get(reverse("portal:image-file", args=[image.pk]))
        served = b"".join(response.streaming_content)
        assert response["Content-Type"] == "image/jpeg"
        assert b"Exif" not in served and b"SERIAL-12345" not in served and b"PhoneMaker" not in served
        assert b"taken at home" not in served
        with Image.open(io.BytesIO(served)) as img:
            assert not img.getexif()
            assert img.size == (64, 48)
            img.load()
        # Sanitized at upload: what is stored is what is served, and the row describes it.
        assert image.image.open("rb").read() == served
        assert image.sha256 == hashlib.sha256(served).hexdigest() and image.byte_size == len(served)
        assert "exif" in image.metadata_removed and "comment" in image.metadata_removed
        assert image.device_make == "PhoneMaker"

    def test_a_rotated_jpeg_is_served_upright(self, signed_in, owner, lesion, queued_predictions):
        img = Image.new("RGB", (60, 40), (10, 200, 10))
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° clockwise to display
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", exif=exif)
        image = upload_image(owner, lesion, buffer.getvalue())
        served = b"".join(signed_in.get(reverse("portal:image-file", args=[image.pk])).streaming_content)
        with Image.open(io.BytesIO(served)) as out:
            assert out.size == (40, 60)
            assert not out.getexif()

    def test_png_text_chunks_are_stripped(self, signed_in, owner, lesion, queued_predictions):
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Location", "51.5N 0.12W")
        buffer = io.BytesIO()
        Image.new("RGB", (40, 40)).save(buffer, format="PNG", pnginfo=info)
        image = upload_image(owner, lesion, buffer.getvalue())
        served = b"".join(signed_in.get(reverse("portal:image-file", args=[image.pk])).streaming_content)
        assert b"51.5N" not in served
        with Image.open(io.BytesIO(served)) as out:
            assert out.size == (40, 40)
            out.load()


class TestUploadDevice:
    def post(self, client, patient, data, **fields):
        return TestUpload().post(client, patient, [SimpleUploadedFile("a.jpg", data, "image/jpeg")], **fields)

    def test_the_form_offers_the_clinics_device_models_only(self, signed_in, owner, lesion, outsider, jpeg_bytes):
        upload_image(owner, lesion, jpeg_bytes, device_model="DL5")
        elsewhere = LesionFactory(patient=PatientFactory(clinic=outsider.clinics.get()))
        upload_image(outsider, elsewhere, jpeg_bytes, device_model="Secret-Scope")
        page = signed_in.get(reverse("portal:upload", args=[lesion.patient.pk])).content.decode()
        assert 'list="device-model-choices"' in page
        assert '<option value="DL5">' in page and "Secret-Scope" not in page

    def test_the_device_chosen_is_stored(self, signed_in, patient, jpeg_bytes, active_model, queued_predictions):
        assert self.post(signed_in, patient, jpeg_bytes, device_model="DermLite DL5").status_code == 302
        assert LesionImage.objects.get().device_model == "DermLite DL5"

    def test_a_too_long_device_name_is_a_form_error(self, signed_in, patient, jpeg_bytes):
        response = self.post(signed_in, patient, jpeg_bytes, device_model="x" * 101)
        assert response.status_code == 200
        assert "at most 100 characters" in response.content.decode()
        assert not LesionImage.objects.exists()
