"""A site model's whole life in its own scope: shadow, stop shadow, promote, roll back to the previous
site model, withdraw to the global model; ML admins only, each switch audited; the admin's buttons."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from core.models import AuditEvent
from inference import registry
from inference.models import ModelActivation, ModelVersion
from tests import admin_helpers
from tests.conftest import BASELINE_DIR, edit_metadata, register_model
from tests.factories import ClinicFactory

from .test_site_models import register_site, site_folder

pytestmark = pytest.mark.django_db


@pytest.fixture
def global_model(db):
    return register_model(BASELINE_DIR)


@pytest.fixture
def first(tmp_path, clinic):
    return register_site(site_folder(tmp_path, "north-site-1", 0.92), clinic)


@pytest.fixture
def second(tmp_path, clinic):
    return register_site(site_folder(tmp_path, "north-site-2", 0.95), clinic)


def audited(version, starts):
    return AuditEvent.objects.filter(object_id=str(version.pk), description__startswith=starts).exists()


def state(*versions):
    for version in versions:
        version.refresh_from_db()
    return [(v.is_active, v.is_shadow) for v in versions]


class TestShadow:
    def test_a_site_model_shadows_its_site_only_and_the_switch_is_audited(self, global_model, first, clinic, ml_admin):
        registry.start_shadow(first, user=ml_admin)
        assert ModelVersion.objects.for_site(clinic.pk) == (global_model, first)
        assert ModelVersion.objects.for_site(ClinicFactory(name="Southside").pk) == (global_model, None)
        assert ModelVersion.objects.shadow() is None  # the global shadow is untouched
        assert audited(first, "Shadow mode started for Northside Dermatology")

    def test_stopping_a_sites_shadow_leaves_the_global_shadow(self, tmp_path, global_model, first, ml_admin):
        import shutil

        shutil.copytree(BASELINE_DIR, tmp_path / "global-shadow")
        edit_metadata(tmp_path / "global-shadow", version="shadow")
        global_shadow = register_model(tmp_path / "global-shadow", activate=False)
        registry.start_shadow(global_shadow, user=ml_admin)
        registry.start_shadow(first, user=ml_admin)
        stopped = registry.stop_shadow(user=ml_admin, scope=first)
        assert stopped == first and state(first, global_shadow) == [(False, False), (False, True)]
        assert ModelActivation.objects.filter(model_version=first, action="shadow_stopped").exists()
        assert audited(first, "Shadow mode stopped")

    def test_stopping_without_a_site_shadow_says_so(self, global_model, first, ml_admin):
        with pytest.raises(ValidationError, match="No model is in shadow mode for Northside"):
            registry.stop_shadow(user=ml_admin, scope=first)

    def test_the_sites_shadow_is_promoted(self, global_model, first, ml_admin):
        registry.start_shadow(first, user=ml_admin)
        registry.activate_model_version(first, user=ml_admin)
        assert state(first) == [(True, False)]
        assert ModelVersion.objects.for_site(first.clinic_id) == (first, None)

    @pytest.mark.parametrize("who", ["clinic_admin", "plain_staff", "nobody"])
    def test_only_ml_admins_start_or_stop_a_sites_shadow(self, first, clinic, ml_admin, who):
        user = {"clinic_admin": admin_helpers.clinic_admin, "plain_staff": admin_helpers.plain_staff}.get(
            who, lambda clinic: None
        )(clinic)
        with pytest.raises(PermissionDenied):
            registry.start_shadow(first, user=user)
        registry.start_shadow(first, user=ml_admin)
        with pytest.raises(PermissionDenied):
            registry.stop_shadow(user=user, scope=first)
        assert state(first) == [(False, True)]


class TestRollback:
    def test_back_to_the_previous_site_model(self, global_model, first, second, ml_admin):
        registry.activate_model_version(first, user=ml_admin)
        registry.activate_model_version(second, user=ml_admin)
        assert registry.rollback_target(second) == (second, first)
        back = registry.rollback_model_version(user=ml_admin, scope=second)
        assert back == first and state(first, second) == [(True, False), (False, False)]
        assert ModelVersion.objects.active() == global_model  # the global model is untouched
        assert ModelActivation.objects.filter(model_version=first, action="rolled_back", previous=second).exists()
        assert audited(first, "Rolled back for Northside Dermatology")

    def test_without_an_earlier_site_model_it_points_to_withdrawal(self, global_model, first, ml_admin):
        registry.activate_model_version(first, user=ml_admin)
        with pytest.raises(ValidationError, match="Withdraw it to go back to the global model"):
            registry.rollback_model_version(user=ml_admin, scope=first)
        assert state(first) == [(True, False)]

    def test_the_global_rollback_ignores_site_models(self, global_model, first, ml_admin):
        registry.activate_model_version(first, user=ml_admin)
        with pytest.raises(ValidationError, match="no earlier active model"):
            registry.rollback_model_version(user=ml_admin)
        assert state(first, global_model) == [(True, False), (True, False)]

    @pytest.mark.parametrize("who", ["clinic_admin", "nobody"])
    def test_only_ml_admins_roll_a_site_back(self, first, second, clinic, ml_admin, who):
        registry.activate_model_version(first, user=ml_admin)
        registry.activate_model_version(second, user=ml_admin)
        user = admin_helpers.clinic_admin(clinic) if who == "clinic_admin" else None
        with pytest.raises(PermissionDenied):
            registry.rollback_model_version(user=user, scope=second)
        assert state(first, second) == [(False, False), (True, False)]

    def test_withdrawal_after_a_rollback_falls_back_to_the_global_model(
        self, global_model, first, second, ml_admin, clinic
    ):
        registry.activate_model_version(first, user=ml_admin)
        registry.activate_model_version(second, user=ml_admin)
        registry.rollback_model_version(user=ml_admin, scope=second)
        registry.withdraw_site_model(first, user=ml_admin)
        assert ModelVersion.objects.for_site(clinic.pk)[0] == global_model


class TestAdminButtons:
    def url(self, name, version):
        return reverse(f"admin:inference_modelversion_{name}", args=[version.pk])

    def test_an_active_site_model_offers_roll_back_and_withdraw(self, client, global_model, first, second, ml_admin):
        registry.activate_model_version(first, user=ml_admin)
        registry.activate_model_version(second, user=ml_admin)
        client.force_login(ml_admin)
        page = client.get(reverse("admin:inference_modelversion_change", args=[second.pk])).content.decode()
        assert self.url("site_rollback", second) in page and self.url("withdraw", second) in page
        confirm = client.get(self.url("site_rollback", second)).content.decode()
        assert "Northside Dermatology" in confirm and "north-site-1-1" in confirm
        response = client.post(self.url("site_rollback", second))
        assert response.status_code == 302
        assert state(first, second) == [(True, False), (False, False)]

    def test_a_site_shadow_is_started_and_stopped_from_the_admin(self, client, global_model, first, ml_admin):
        client.force_login(ml_admin)
        assert client.post(self.url("start_shadow", first)).status_code == 302
        assert state(first) == [(False, True)]
        page = client.get(reverse("admin:inference_modelversion_change", args=[first.pk])).content.decode()
        assert self.url("site_stop_shadow", first) in page
        assert client.post(self.url("site_stop_shadow", first)).status_code == 302
        assert state(first) == [(False, False)]
        assert audited(first, "Shadow mode started") and audited(first, "Shadow mode stopped")

    def test_nothing_to_roll_back_is_a_message_not_an_error(self, client, global_model, first, ml_admin):
        registry.activate_model_version(first, user=ml_admin)
        client.force_login(ml_admin)
        response = client.post(self.url("site_rollback", first), follow=True)
        assert "Withdraw it to go back to the global model" in response.content.decode()
        assert state(first) == [(True, False)]

    @pytest.mark.parametrize("who", ["clinic_admin", "plain_staff"])
    @pytest.mark.parametrize("switch", ["site_rollback", "site_stop_shadow", "start_shadow", "withdraw"])
    def test_the_wrong_role_is_refused(self, client, global_model, first, second, clinic, ml_admin, who, switch):
        registry.activate_model_version(first, user=ml_admin)
        registry.activate_model_version(second, user=ml_admin)
        registry.start_shadow(first, user=ml_admin)
        before = state(first, second)
        client.force_login(getattr(admin_helpers, who)(clinic))
        assert client.post(self.url(switch, second if switch != "site_stop_shadow" else first)).status_code == 403
        assert state(first, second) == before
