"""The acquisition device of an image: named by the uploader or read from EXIF at upload, shown and
filtered in the admin, corrected by the clinic's administrators only (audited)."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from cases import selectors, services
from cases.models import LesionImage
from core.models import AuditEvent
from tests import admin_helpers
from tests.factories import LesionFactory, PatientFactory
from tests.security import badfiles

pytestmark = pytest.mark.django_db


def add(user, lesion, data, **device):
    return services.add_lesion_image(
        uploader=user, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic", **device
    )


class TestAtUpload:
    def test_the_exif_make_and_model_are_kept_when_the_uploader_names_none(self, owner, lesion):
        image = add(owner, lesion, badfiles.laden_jpeg())
        assert (image.device_make, image.device_model) == ("PhoneMaker", "Pixel Secret")

    def test_the_device_the_uploader_names_wins_over_the_exif(self, owner, lesion):
        image = add(owner, lesion, badfiles.laden_jpeg(), device_model="  DL5 ")
        image.refresh_from_db()
        # The EXIF names the phone; the person names the dermatoscope on it: the make is not mixed in.
        assert (image.device_make, image.device_model) == ("", "DL5")

    def test_make_and_model_together(self, owner, lesion, jpeg_bytes):
        image = add(owner, lesion, jpeg_bytes, device_make="DermLite", device_model="DL5")
        assert (image.device_make, image.device_model) == ("DermLite", "DL5")

    def test_no_exif_and_no_name_leaves_it_blank(self, owner, lesion, jpeg_bytes):
        image = add(owner, lesion, jpeg_bytes)
        assert (image.device_make, image.device_model) == ("", "")

    @pytest.mark.parametrize(
        ("device", "message"),
        [
            ({"device_model": "x" * 101}, "At most 100 characters"),
            ({"device_make": "Derm\nLite"}, "printable characters only"),
            ({"device_model": "DL5\x00"}, "printable characters only"),
        ],
    )
    def test_a_bad_name_is_refused_and_nothing_is_stored(self, owner, lesion, jpeg_bytes, settings, device, message):
        with pytest.raises(ValidationError) as caught:
            add(owner, lesion, jpeg_bytes, **device)
        [field] = device
        assert message in " ".join(caught.value.message_dict[field])
        assert not LesionImage.objects.exists()
        folder = settings.MEDIA_ROOT / "lesion-images"
        assert not folder.exists() or not any(folder.iterdir())


def test_the_clinics_known_device_models_most_used_first(owner, lesion, outsider, jpeg_bytes):
    for name in ["DL4", "DL5", "DL5", ""]:
        add(owner, lesion, jpeg_bytes, device_model=name)
    elsewhere = LesionFactory(patient=PatientFactory(clinic=outsider.clinics.get()))
    add(outsider, elsewhere, jpeg_bytes, device_model="Secret-Scope")
    assert selectors.device_models_of(lesion.patient.clinic) == ["DL5", "DL4"]


class TestInTheAdmin:
    @pytest.fixture
    def image(self, owner, lesion, jpeg_bytes):
        return add(owner, lesion, jpeg_bytes, device_make="DermLite", device_model="DL4")

    def change(self, client, image, **fields):
        data = {
            "modality": image.modality,
            "captured_at_0": "2026-01-02",
            "captured_at_1": "10:00:00",
            "device_make": image.device_make,
            "device_model": image.device_model,
            **fields,
        }
        return client.post(reverse("admin:cases_lesionimage_change", args=[image.pk]), data)

    def test_a_clinic_admin_corrects_the_device_and_it_is_audited(self, client, clinic, image):
        client.force_login(admin_helpers.clinic_admin(clinic))
        assert self.change(client, image, device_model="DL5").status_code == 302
        image.refresh_from_db()
        assert image.device_model == "DL5"
        event = AuditEvent.objects.get(model="cases.lesionimage", action=AuditEvent.Action.CHANGED)
        assert event.changes["device_model"] == ["DL4", "DL5"]

    def test_a_bad_device_name_is_a_form_error(self, client, clinic, image):
        client.force_login(admin_helpers.clinic_admin(clinic))
        response = self.change(client, image, device_model="x" * 101)
        assert response.status_code == 200
        assert "at most 100 characters" in response.content.decode()
        image.refresh_from_db()
        assert image.device_model == "DL4"

    @pytest.mark.parametrize("who", ["plain_staff", "other_clinic_admin", "ml_admin"])
    def test_others_may_not_change_it(self, client, clinic, outsider, image, who):
        user = {
            "plain_staff": lambda: admin_helpers.plain_staff(clinic),
            "other_clinic_admin": lambda: admin_helpers.clinic_admin(outsider.clinics.get(), username="elsewhere"),
            "ml_admin": admin_helpers.ml_admin,
        }[who]()
        client.force_login(user)
        assert self.change(client, image, device_model="DL9").status_code in (403, 302)
        image.refresh_from_db()
        assert image.device_model == "DL4"
        assert not AuditEvent.objects.filter(model="cases.lesionimage", action=AuditEvent.Action.CHANGED).exists()

    def test_the_list_shows_and_filters_by_device_of_visible_clinics_only(
        self, client, clinic, image, owner, lesion, outsider, jpeg_bytes
    ):
        add(owner, lesion, jpeg_bytes)
        elsewhere = LesionFactory(patient=PatientFactory(clinic=outsider.clinics.get()))
        add(outsider, elsewhere, jpeg_bytes, device_model="Secret-Scope")
        client.force_login(admin_helpers.clinic_admin(clinic))
        url = reverse("admin:cases_lesionimage_changelist")
        page = client.get(url).content.decode()
        assert "DermLite DL4" in page and "Secret-Scope" not in page
        filtered = client.get(url, {"device_model": "DL4"})
        assert [row.pk for row in filtered.context["cl"].result_list] == [image.pk]
        unknown = client.get(url, {"device_model": "-"})
        assert [row.device_model for row in unknown.context["cl"].result_list] == [""]
