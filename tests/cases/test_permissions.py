import io

import pytest
from django.http import Http404

from cases import permissions, services

pytestmark = pytest.mark.django_db


@pytest.fixture
def image(owner, lesion, jpeg_bytes):
    return services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic")


class TestScoping:
    @pytest.mark.parametrize("who, visible", [("owner", True), ("colleague", True), ("outsider", False)])
    def test_records_are_visible_only_within_the_clinic(self, request, image, who, visible):
        user = request.getfixturevalue(who)
        assert permissions.patients_visible_to(user).filter(pk=image.lesion.patient.pk).exists() is visible
        assert permissions.lesions_visible_to(user).filter(pk=image.lesion.pk).exists() is visible
        assert permissions.images_visible_to(user).filter(pk=image.pk).exists() is visible

    def test_get_or_404_hides_other_clinics_records(self, outsider, image):
        with pytest.raises(Http404):
            permissions.get_patient_or_404(outsider, image.lesion.patient.pk)
        with pytest.raises(Http404):
            permissions.get_image_or_404(outsider, image.pk)

    def test_a_malformed_id_is_404_not_500(self, owner):
        with pytest.raises(Http404):
            permissions.get_patient_or_404(owner, "not-a-uuid")

    def test_a_user_in_two_clinics_sees_each_record_once(self, owner, outsider, image):
        from tests.factories import MembershipFactory

        MembershipFactory(user=owner, clinic=outsider.clinics.get())
        assert permissions.images_visible_to(owner).count() == 1

    def test_an_inactive_user_sees_nothing(self, owner, image):
        owner.is_active = False
        owner.save()
        assert not permissions.images_visible_to(owner).exists()
