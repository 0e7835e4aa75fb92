import datetime
import io
import struct
import zlib
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from cases import services
from cases.models import LesionImage, Patient, Review
from inference.models import Prediction
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def stored_files():
    try:
        return default_storage.listdir(services.IMAGE_FOLDER)[1]
    except FileNotFoundError:
        return []


def add(owner, lesion, data, **kwargs):
    kwargs.setdefault("modality", "dermoscopic")
    return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(data), **kwargs)


def bomb_png(width=20_000, height=20_000):
    """A tiny PNG whose header claims 400 megapixels."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


class TestAddLesionImage:
    def test_it_stores_the_image_and_queues_one_prediction(
        self, owner, lesion, jpeg_bytes, active_model, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as callbacks:
            image = add(owner, lesion, jpeg_bytes)

        image.refresh_from_db()
        assert image.image_format == "JPEG"
        assert (image.width, image.height) == (300, 300)
        assert image.byte_size == len(jpeg_bytes)
        assert image.image.read() == jpeg_bytes
        assert image.image.name == f"lesion-images/{image.id}.jpg"
        prediction = Prediction.objects.get(image=image)
        assert prediction.model_version == active_model
        assert prediction.status == Prediction.Status.PENDING
        assert len(callbacks) == 1

    def test_it_queues_nothing_before_commit(
        self, owner, lesion, jpeg_bytes, active_model, queued_predictions, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            with transaction.atomic():
                image = add(owner, lesion, jpeg_bytes)
            assert queued_predictions == []
        assert queued_predictions == [(str(Prediction.objects.get(image=image).pk),)]

    def test_it_accepts_png(self, owner, lesion, active_model):
        image = add(owner, lesion, png_bytes())
        assert image.image_format == "PNG"
        assert image.image.name.endswith(".png")

    def test_it_waits_for_a_model_when_none_is_active(self, owner, lesion, jpeg_bytes):
        image = add(owner, lesion, jpeg_bytes)
        assert not Prediction.objects.filter(image=image).exists()

    @pytest.mark.parametrize(
        "data, message",
        [
            (b"", "empty"),
            (b"%PDF-1.4 not an image at all", "not a JPEG or PNG"),
            (b"GIF89a" + b"\x00" * 100, "not a JPEG or PNG"),
            (bomb_png(), "pixels"),
            (png_bytes(size=(8, 8)), "at least"),
        ],
        ids=["empty", "pdf", "gif", "decompression-bomb", "tiny"],
    )
    def test_it_refuses_bad_files_and_stores_nothing(
        self, owner, lesion, active_model, data, message, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks() as callbacks, pytest.raises(ValidationError) as error:
            add(owner, lesion, data)
        assert message in " ".join(error.value.messages)
        assert LesionImage.objects.count() == 0
        assert Prediction.objects.count() == 0
        assert stored_files() == []
        assert callbacks == []

    def test_it_refuses_a_truncated_jpeg(self, owner, lesion, jpeg_bytes, active_model):
        with pytest.raises(ValidationError, match="damaged or truncated"):
            add(owner, lesion, jpeg_bytes[: len(jpeg_bytes) // 2])
        assert LesionImage.objects.count() == 0
        assert stored_files() == []

    def test_it_refuses_an_oversized_file_before_reading_it(self, owner, lesion, settings, jpeg_bytes):
        settings.SKINCARE_MAX_UPLOAD_BYTES = len(jpeg_bytes) - 1
        with pytest.raises(ValidationError, match="limit"):
            add(owner, lesion, jpeg_bytes)
        assert LesionImage.objects.count() == 0

    def test_it_refuses_a_future_capture_date(self, owner, lesion, jpeg_bytes):
        with pytest.raises(ValidationError) as error:
            add(owner, lesion, jpeg_bytes, captured_at=timezone.now() + timedelta(days=1))
        assert "captured_at" in error.value.message_dict
        assert LesionImage.objects.count() == 0

    def test_it_refuses_an_unknown_modality(self, owner, lesion, jpeg_bytes):
        with pytest.raises(ValidationError):
            add(owner, lesion, jpeg_bytes, modality="x-ray")

    def test_it_requires_membership_of_the_patients_clinic(self, outsider, lesion, jpeg_bytes):
        with pytest.raises(PermissionDenied):
            add(outsider, lesion, jpeg_bytes)
        assert LesionImage.objects.count() == 0

    def test_a_colleague_may_add_images(self, colleague, lesion, jpeg_bytes):
        assert add(colleague, lesion, jpeg_bytes).uploaded_by == colleague

    def test_a_rolled_back_transaction_queues_nothing_and_the_sweeper_removes_the_file(
        self, owner, lesion, jpeg_bytes, active_model, queued_predictions, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            with pytest.raises(RuntimeError), transaction.atomic():
                add(owner, lesion, jpeg_bytes)
                raise RuntimeError("the caller's transaction fails after the upload")

        assert LesionImage.objects.count() == 0
        assert Prediction.objects.count() == 0
        assert queued_predictions == []
        assert len(stored_files()) == 1  # no rollback hook: the orphan waits for the sweeper
        deleted = services.delete_orphan_image_files(older_than=timedelta(0))
        assert len(deleted) == 1
        assert stored_files() == []

    def test_the_sweeper_keeps_files_that_have_rows_and_recent_orphans(self, owner, lesion, jpeg_bytes):
        image = add(owner, lesion, jpeg_bytes)
        default_storage.save(f"{services.IMAGE_FOLDER}/recent-orphan.jpg", io.BytesIO(b"x"))
        assert services.delete_orphan_image_files(older_than=timedelta(hours=1)) == []
        assert services.delete_orphan_image_files(older_than=timedelta(0)) == [
            f"{services.IMAGE_FOLDER}/recent-orphan.jpg"
        ]
        assert default_storage.exists(image.image.name)

    def test_a_failing_save_removes_the_stored_file(self, owner, lesion, jpeg_bytes, settings):
        settings.SKINCARE_IMAGE_STORED_HOOK = f"{__name__}.explode"
        with pytest.raises(RuntimeError):
            add(owner, lesion, jpeg_bytes)
        assert stored_files() == []
        assert LesionImage.objects.count() == 0


def explode(image):
    """An image-stored hook whose database went away (see SKINCARE_IMAGE_STORED_HOOK)."""
    raise RuntimeError("database went away")


class TestCreatePatient:
    def test_it_refuses_a_duplicate_mrn_in_the_same_clinic(self, owner, clinic, patient):
        with pytest.raises(ValidationError) as error:
            services.create_patient(
                user=owner,
                clinic=clinic,
                medical_record_number=patient.medical_record_number,
                given_name="A",
                family_name="B",
                date_of_birth=datetime.date(1990, 1, 1),
            )
        assert error.value.message_dict == {"medical_record_number": ["Another patient in this clinic has this MRN."]}

    @pytest.mark.parametrize("typed", [" mrn-0001 ", "mrn-0001", "MRN-0001\t"])
    def test_an_mrn_differing_only_in_case_or_spaces_is_the_same_mrn(self, owner, clinic, typed):
        first = services.create_patient(
            user=owner,
            clinic=clinic,
            medical_record_number="MRN-0001",
            given_name="A",
            family_name="B",
            date_of_birth=datetime.date(1990, 1, 1),
        )
        assert first.medical_record_number == "MRN-0001"
        with pytest.raises(ValidationError) as error:
            services.create_patient(
                user=owner,
                clinic=clinic,
                medical_record_number=typed,
                given_name="C",
                family_name="D",
                date_of_birth=datetime.date(1990, 1, 1),
            )
        assert error.value.message_dict == {"medical_record_number": ["Another patient in this clinic has this MRN."]}
        assert Patient.objects.filter(clinic=clinic).count() == 1

    def test_mrns_are_stored_stripped_and_in_upper_case(self, owner, clinic):
        patient = services.create_patient(
            user=owner,
            clinic=clinic,
            medical_record_number="  ns-4821 ",
            given_name="A",
            family_name="B",
            date_of_birth=datetime.date(1990, 1, 1),
        )
        patient.refresh_from_db()
        assert patient.medical_record_number == "NS-4821"

    def test_the_database_refuses_a_second_normalised_mrn_whatever_skips_the_service(self, clinic, patient):
        # A write that bypasses clean() (a bulk import, raw SQL) still cannot store it.
        with pytest.raises(IntegrityError), transaction.atomic():
            Patient.objects.create(
                clinic=clinic,
                medical_record_number=f" {patient.medical_record_number.lower()} ",
                given_name="X",
                family_name="Y",
                date_of_birth=datetime.date(1990, 1, 1),
            )

    def test_the_same_mrn_is_fine_in_another_clinic(self, outsider, patient):
        other_clinic = outsider.clinics.get()
        created = services.create_patient(
            user=outsider,
            clinic=other_clinic,
            medical_record_number=patient.medical_record_number,
            given_name="A",
            family_name="B",
            date_of_birth=datetime.date(1990, 1, 1),
        )
        assert created.clinic == other_clinic

    def test_it_refuses_a_future_birth_date(self, owner, clinic):
        with pytest.raises(ValidationError):
            services.create_patient(
                user=owner,
                clinic=clinic,
                medical_record_number="X1",
                given_name="A",
                family_name="B",
                date_of_birth=timezone.localdate() + timedelta(days=1),
            )

    def test_it_requires_membership(self, outsider, clinic):
        with pytest.raises(PermissionDenied):
            services.create_patient(
                user=outsider,
                clinic=clinic,
                medical_record_number="X1",
                given_name="A",
                family_name="B",
                date_of_birth=datetime.date(1990, 1, 1),
            )


class TestAddReview:
    def test_reviews_are_appended_never_overwritten(self, owner, colleague, lesion, jpeg_bytes, active_model):
        image = add(owner, lesion, jpeg_bytes)
        first = services.add_review(reviewer=owner, image=image, verdict="agree", final_diagnosis="nevus")
        second = services.add_review(
            reviewer=colleague,
            image=image,
            verdict="disagree",
            final_diagnosis="melanoma",
            biopsy_requested=True,
            notes="Asymmetric, irregular border.",
        )
        assert list(Review.objects.filter(image=image)) == [first, second]
        first.refresh_from_db()
        assert (first.reviewer, first.final_diagnosis) == (owner, "nevus")
        assert second.prediction == Prediction.objects.get(image=image)

    def test_an_outsider_cannot_review(self, owner, outsider, lesion, jpeg_bytes):
        image = add(owner, lesion, jpeg_bytes)
        with pytest.raises(PermissionDenied):
            services.add_review(reviewer=outsider, image=image, verdict="agree", final_diagnosis="nevus")

    def test_an_unknown_diagnosis_is_refused(self, owner, lesion, jpeg_bytes):
        image = add(owner, lesion, jpeg_bytes)
        with pytest.raises(ValidationError):
            services.add_review(reviewer=owner, image=image, verdict="agree", final_diagnosis="rash")
        assert Review.objects.count() == 0


class TestBrokerUnreachable:
    """Issue #12: the broker down during an upload made outside any transaction."""

    @pytest.fixture
    def broker_down(self, monkeypatch):
        from celery import current_app
        from kombu.exceptions import OperationalError

        from inference import queueing

        def refuse(*args, **kwargs):
            raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

        monkeypatch.setattr(current_app, "send_task", refuse)
        monkeypatch.setattr(queueing, "_broker_down_until", 0.0)  # restored after the test

    def test_the_upload_succeeds_keeps_its_file_and_its_prediction_waits(
        self, owner, lesion, jpeg_bytes, active_model, broker_down, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            image = add(owner, lesion, jpeg_bytes)  # autocommit: the publish runs right after the commit
        assert stored_files() == [image.image.name.removeprefix(f"{services.IMAGE_FOLDER}/")]
        assert list(Prediction.objects.filter(image=image).values_list("status", "sent_at")) == [("pending", None)]

    @pytest.mark.django_db(transaction=True)
    def test_a_hook_failing_after_the_commit_never_deletes_the_committed_file(
        self, owner, lesion, jpeg_bytes, active_model, monkeypatch
    ):
        # A real commit (no test transaction around it): the hook runs, and
        # raises, inside add_lesion_image, after the row has committed.
        def raising_after_commit(image):
            transaction.on_commit(lambda: (_ for _ in ()).throw(RuntimeError("publish failed")))

        monkeypatch.setattr(services, "_image_stored", raising_after_commit)
        with pytest.raises(RuntimeError, match="publish failed"):
            add(owner, lesion, jpeg_bytes)
        image = LesionImage.objects.get()
        assert stored_files() == [image.image.name.removeprefix(f"{services.IMAGE_FOLDER}/")]
