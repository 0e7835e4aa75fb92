import pytest
from django.core.management import call_command

from cases.models import LesionImage, Patient
from inference.models import Prediction

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_clinic_users_and_images_once(active_model):
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    assert Patient.objects.count() == 4
    assert LesionImage.objects.count() == 16
    assert Prediction.objects.filter(model_version=active_model).count() == 16


def test_seed_demo_gives_the_demo_admins_their_roles(active_model):
    from django.contrib.auth import get_user_model

    from cases import permissions

    call_command("seed_demo")
    users = get_user_model().objects.in_bulk(["dr.alvarez", "ml.lead", "dr.chen"], field_name="username")
    clinic = users["dr.alvarez"].clinics.get()
    assert permissions.can_edit_in_admin(users["dr.alvarez"], clinic)
    assert not permissions.is_ml_admin(users["dr.alvarez"])
    assert permissions.is_ml_admin(users["ml.lead"])
    assert not permissions.can_edit_in_admin(users["ml.lead"], clinic)
    assert not permissions.can_view_admin(users["dr.chen"])


def _stored_before_the_gate(image, **older):
    """Make ``image`` look as an upload stored before the quality gate (or measured by an older version of it)."""
    LesionImage.objects.filter(pk=image.pk).update(
        quality_measures=older.get("measures", {}),
        quality_findings=[],
        perceptual_hash=older.get("perceptual_hash", ""),
        duplicate_of=None,
        possible_wrong_patient_of=None,
    )


def test_backfill_image_quality_measures_hashes_and_links_old_images_once(owner, lesion, jpeg_bytes, capsys):
    import io

    from PIL import Image, ImageFilter

    from cases import services
    from core import quality

    first = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes))
    again = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes))
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg_bytes)).filter(ImageFilter.GaussianBlur(6)).save(out, "JPEG", quality=92)
    blurred = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(out.getvalue()))
    expected = {
        image.pk: (image.quality_measures, image.quality_findings, image.perceptual_hash)
        for image in (first, again, blurred)
    }
    for image in (first, again):
        _stored_before_the_gate(image)
    old_measures = {**blurred.quality_measures, "version": quality.MEASURES_VERSION - 1}
    _stored_before_the_gate(blurred, measures=old_measures, perceptual_hash=blurred.perceptual_hash)

    call_command("backfill_image_quality", batch_size=2)
    assert "3 of 3 images needing it measured; 0 could not be read." in capsys.readouterr().out
    for image in (first, again, blurred):
        image.refresh_from_db()
        assert (image.quality_measures, image.quality_findings, image.perceptual_hash) == expected[image.pk]
    assert "blurred" in blurred.quality_findings
    # Only earlier uploads count: the second copy names the first, never the reverse.
    assert first.duplicate_of is None and again.duplicate_of == first

    call_command("backfill_image_quality")
    assert "0 of 0 images needing it measured" in capsys.readouterr().out


def test_backfill_image_quality_reports_an_unreadable_file_and_fails(owner, lesion, jpeg_bytes, capsys):
    import io

    from cases import services

    image = services.add_lesion_image(uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes))
    _stored_before_the_gate(image)
    with image.image.storage.open(image.image.name, "wb") as fh:
        fh.write(b"not an image")
    with pytest.raises(SystemExit):
        call_command("backfill_image_quality")
    assert f"{image.id}: not measured" in capsys.readouterr().err
    image.refresh_from_db()
    assert image.perceptual_hash == "" and image.quality_measures == {}
