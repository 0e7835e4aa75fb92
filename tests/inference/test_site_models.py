"""Site models: scoped registration, activation (ML admins, sensitivity gate, audit), withdrawal
back to the global model, per-site choice of model in request_prediction, admin visibility."""

import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.test import RequestFactory, override_settings

from cases import services as case_services
from core.models import AuditEvent
from inference import registry, services
from inference.admin.model_versions import ModelVersionAdmin
from inference.models import ModelActivation, ModelVersion
from inference.registry.load_check import assume_model_loads
from tests import admin_helpers
from tests.conftest import BASELINE_DIR, edit_metadata, register_model
from tests.factories import ClinicFactory, LesionFactory, MembershipFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


def site_folder(tmp_path, name, sensitivity):
    import shutil

    target = tmp_path / name
    shutil.copytree(BASELINE_DIR, target)
    edit_metadata(
        target,
        name=name,
        version="1",
        site_adaptation={"site": name, "cv": {"sensitivity": sensitivity, "roc_auc": 0.95}},
    )
    return target


def register_site(folder, clinic, device_model=""):
    with override_settings(SKINCARE_MODEL_LOAD_CHECK=assume_model_loads):
        version, _ = registry.register_model_version(model_dir=folder, clinic=clinic, device_model=device_model)
    return version


@pytest.fixture
def global_model(db):
    return register_model(BASELINE_DIR)


@pytest.fixture
def site_model(tmp_path, clinic):
    return register_site(site_folder(tmp_path, "north-site", 0.92), clinic)


def upload(user, lesion, data):
    return case_services.add_lesion_image(uploader=user, lesion=lesion, file=io.BytesIO(data), modality="dermoscopic")


class TestActivation:
    def test_an_ml_admin_activates_a_site_model_beside_the_global_one(self, global_model, site_model, ml_admin):
        registry.activate_model_version(site_model, user=ml_admin)
        assert set(ModelVersion.objects.filter(is_active=True)) == {global_model, site_model}
        assert ModelVersion.objects.active() == global_model
        event = AuditEvent.objects.get(object_id=str(site_model.pk), action=AuditEvent.Action.ACTION)
        assert "Activated for Northside Dermatology" in event.description
        assert ModelActivation.objects.filter(model_version=site_model, action="activated").exists()

    def test_a_second_site_model_replaces_the_first_in_its_scope_only(self, tmp_path, clinic, site_model, ml_admin):
        registry.activate_model_version(site_model, user=ml_admin)
        newer = register_site(site_folder(tmp_path, "north-site-2", 0.95), clinic)
        registry.activate_model_version(newer, user=ml_admin)
        site_model.refresh_from_db()
        newer.refresh_from_db()
        assert (site_model.is_active, newer.is_active) == (False, True)

    def test_the_database_allows_one_active_model_per_site(self, tmp_path, clinic, site_model, ml_admin):
        other = register_site(site_folder(tmp_path, "north-site-2", 0.95), clinic)
        registry.activate_model_version(site_model, user=ml_admin)
        with pytest.raises(IntegrityError), transaction.atomic():
            ModelVersion.objects.filter(pk=other.pk).update(is_active=True)

    def test_low_local_sensitivity_is_refused(self, tmp_path, clinic, ml_admin):
        weak = register_site(site_folder(tmp_path, "weak-site", 0.85), clinic)
        with pytest.raises(ValidationError, match="0.850, below 0.90"):
            registry.activate_model_version(weak, user=ml_admin)
        weak.refresh_from_db()
        assert not weak.is_active
        assert not AuditEvent.objects.filter(object_id=str(weak.pk)).exists()

    @pytest.mark.parametrize("who", ["clinic_admin", "nobody"])
    def test_only_ml_admins_activate_a_site_model(self, site_model, clinic, who):
        user = admin_helpers.clinic_admin(clinic) if who == "clinic_admin" else None
        with pytest.raises(PermissionDenied):
            registry.activate_model_version(site_model, user=user)
        site_model.refresh_from_db()
        assert not site_model.is_active

    def test_a_site_adapted_model_is_never_made_global(self, tmp_path, ml_admin):
        unscoped = register_model(site_folder(tmp_path, "unscoped-site", 0.95), activate=False)
        with pytest.raises(ValidationError, match="register it with that clinic"):
            registry.activate_model_version(unscoped, user=ml_admin)

    def test_withdrawal_goes_back_to_the_global_model_and_is_audited(self, global_model, site_model, ml_admin):
        registry.activate_model_version(site_model, user=ml_admin)
        registry.withdraw_site_model(site_model, user=ml_admin)
        site_model.refresh_from_db()
        assert not site_model.is_active and ModelVersion.objects.active() == global_model
        assert ModelActivation.objects.filter(model_version=site_model, action="site_withdrawn").exists()
        assert AuditEvent.objects.filter(object_id=str(site_model.pk), description__startswith="Withdrawn").exists()

    def test_withdrawal_needs_an_ml_admin(self, site_model, ml_admin, clinic):
        registry.activate_model_version(site_model, user=ml_admin)
        with pytest.raises(PermissionDenied):
            registry.withdraw_site_model(site_model, user=admin_helpers.clinic_admin(clinic))
        site_model.refresh_from_db()
        assert site_model.is_active


class TestPerSiteChoice:
    def test_a_clinic_with_a_site_model_gets_it_and_another_the_global_one(
        self, global_model, site_model, ml_admin, owner, lesion, jpeg_bytes, outsider
    ):
        registry.activate_model_version(site_model, user=ml_admin)
        here = upload(owner, lesion, jpeg_bytes)
        other_clinic = outsider.clinics.get()
        there = upload(outsider, LesionFactory(patient=PatientFactory(clinic=other_clinic)), jpeg_bytes)
        assert list(here.predictions.values_list("model_version", flat=True)) == [site_model.pk]
        assert list(there.predictions.values_list("model_version", flat=True)) == [global_model.pk]

    def test_after_withdrawal_the_clinic_gets_the_global_model(
        self, global_model, site_model, ml_admin, owner, lesion, jpeg_bytes
    ):
        registry.activate_model_version(site_model, user=ml_admin)
        registry.withdraw_site_model(site_model, user=ml_admin)
        image = upload(owner, lesion, jpeg_bytes)
        assert services.request_prediction(image).model_version == global_model

    def test_a_re_run_uses_the_clinics_site_model(
        self, global_model, site_model, ml_admin, owner, lesion, jpeg_bytes, queued_predictions
    ):
        image = upload(owner, lesion, jpeg_bytes)
        before = image.predictions.get()
        registry.activate_model_version(site_model, user=ml_admin)
        [outcome] = services.rerun_with_active_model(predictions=[before], user=admin_helpers.superuser())
        assert outcome.prediction.model_version == site_model and outcome.outcome == "queued"

    def test_a_device_scoped_model_beats_the_clinic_wide_one(self, tmp_path, clinic, site_model, ml_admin):
        device = register_site(site_folder(tmp_path, "north-dermlite", 0.93), clinic, device_model="DL5")
        registry.activate_model_version(site_model, user=ml_admin)
        registry.activate_model_version(device, user=ml_admin)
        assert ModelVersion.objects.for_site(clinic.pk, "DL5")[0] == device
        assert ModelVersion.objects.for_site(clinic.pk, "")[0] == site_model
        assert ModelVersion.objects.for_site(ClinicFactory().pk, "DL5")[0] is None


class TestAdminVisibility:
    def test_a_site_model_is_seen_by_its_clinic_and_ml_admins_only(
        self, rf: RequestFactory, global_model, site_model, clinic
    ):
        from django.contrib import admin

        model_admin = ModelVersionAdmin(ModelVersion, admin.site)

        def visible(user):
            request = rf.get("/")
            request.user = user
            return set(model_admin.get_queryset(request))

        elsewhere = ClinicFactory(name="Southside")
        stranger = UserFactory(username="stranger", is_staff=True)
        MembershipFactory(clinic=elsewhere, user=stranger)
        assert visible(admin_helpers.plain_staff(clinic)) == {global_model, site_model}
        assert visible(stranger) == {global_model}
        assert visible(admin_helpers.ml_admin()) == {global_model, site_model}


class TestLocalValidation:
    def cases(self, site_model, owner, lesion, n_mel, n_ben):
        from datetime import timedelta

        from django.utils import timezone

        from inference.models import Prediction

        rows = [(0.8, "malignant", "invasive_melanoma")] * (n_mel - 1) + [(0.2, "benign", "melanoma_in_situ")]
        rows += [(0.1, "benign", "benign")] * (n_ben - 2) + [(0.5, "uncertain", "benign"), (0.7, "malignant", "benign")]
        for p, label, truth in rows:
            image = admin_helpers.make_image(lesion, owner)
            prediction = Prediction.objects.create(
                image=image, model_version=site_model, status="succeeded", probability_malignant=p, label=label
            )
            # An earlier review without a result, then the latest with one.
            admin_helpers.make_review(image, owner, prediction=prediction)
            admin_helpers.make_review(
                image,
                owner,
                prediction=prediction,
                histopathology_result=truth,
                created_at=timezone.now() + timedelta(minutes=1),
            )

    def test_figures_against_histopathology(self, site_model, owner, lesion, clinic):
        from inference.monitoring.site_validation import site_validation

        self.cases(site_model, owner, lesion, 10, 12)
        report = site_validation(site_model, clinic)
        assert (report.n_melanoma, report.n_benign, report.enough) == (10, 12, True)
        figures = {name: (value, interval) for name, value, interval, _ in report.figures}
        assert figures["Sensitivity at the threshold"][0] == pytest.approx(9 / 10)
        assert figures["Referral specificity"][0] == pytest.approx(10 / 12)
        low, high = figures["Sensitivity at the threshold"][1]
        assert low < 0.9 < high

    def test_thin_data_is_too_few_to_judge_and_the_page_says_so(self, site_model, owner, lesion, clinic, client):
        self.cases(site_model, owner, lesion, 3, 4)
        client.force_login(admin_helpers.ml_admin())
        page = client.get(f"/admin/inference/site-validation/{site_model.pk}/")
        assert page.status_code == 200
        assert "Too few cases to judge" in page.content.decode()

    def test_another_clinics_staff_cannot_open_it(self, site_model, client):
        stranger = UserFactory(username="stranger", is_staff=True)
        MembershipFactory(clinic=ClinicFactory(name="Southside"), user=stranger)
        client.force_login(stranger)
        assert client.get(f"/admin/inference/site-validation/{site_model.pk}/").status_code == 404
