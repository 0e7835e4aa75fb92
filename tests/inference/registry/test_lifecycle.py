"""The registry's lifecycle: registering a model folder (directly and through ``manage.py register_model``),
activation, rollback and shadow mode, including two activations at the same moment."""

import json
import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from inference import registry
from inference.models import ModelActivation, ModelVersion
from inference.runtime import read_metadata
from tests.conftest import edit_metadata
from tests.factories import UserFactory
from training.files import sha256_of

from .helpers import history, make_version, shipped_label, state, zip_folder

pytestmark = pytest.mark.django_db


class TestRegisterModel:
    def test_it_registers_verifies_and_activates_the_shipped_model(self, model_dir, admin_user):
        version, created = registry.register_model_version(model_dir=model_dir, activate=True, user=admin_user)
        assert created and version.is_active
        assert version.sha256 == sha256_of(model_dir / "model.keras")
        assert version.file.read()[:2] == b"PK"  # a .keras archive, copied into storage
        assert version.registered_by == admin_user
        assert version.model_card == (model_dir / "MODEL_CARD.md").read_text()
        assert version.evaluation == json.loads((model_dir / "evaluation.json").read_text())
        for field in ("roc_curve", "reliability_diagram"):
            with getattr(version, field).open("rb") as fh:
                assert fh.read() == (model_dir / f"{field}.png").read_bytes()
        metadata = read_metadata(model_dir)
        if metadata.get("onnx_file"):  # once training exports ONNX beside the Keras file
            assert version.onnx_sha256 == sha256_of(model_dir / metadata["onnx_file"])
        activation = ModelActivation.objects.get()
        assert (activation.model_version, activation.action, activation.previous, activation.by) == (
            version,
            ModelActivation.Action.ACTIVATED,
            None,
            admin_user,
        )

    def test_registering_again_is_a_no_op(self, model_dir):
        first, _ = registry.register_model_version(model_dir=model_dir, activate=True)
        second, created = registry.register_model_version(model_dir=model_dir, activate=True)
        assert not created and first == second
        assert ModelVersion.objects.count() == 1
        assert ModelActivation.objects.count() == 1  # activating the active model records nothing

    def test_activation_leaves_exactly_one_active(self, model_dir, model_copy):
        old, _ = registry.register_model_version(model_dir=model_dir, activate=True)
        edit_metadata(model_copy, version="next")
        new, _ = registry.register_model_version(model_dir=model_copy, activate=True)
        old.refresh_from_db()
        assert (old.is_active, new.is_active) == (False, True)
        assert ModelVersion.objects.active() == new
        assert ModelActivation.objects.first().previous == old

    def test_the_database_refuses_two_active_models(self, model_dir, model_copy):
        registry.register_model_version(model_dir=model_dir, activate=True)
        edit_metadata(model_copy, version="next")
        new, _ = registry.register_model_version(model_dir=model_copy)
        with pytest.raises(IntegrityError), transaction.atomic():
            ModelVersion.objects.filter(pk=new.pk).update(is_active=True)

    def test_a_changed_file_under_the_same_version_is_refused(self, model_dir, model_copy):
        registry.register_model_version(model_dir=model_dir)
        with open(model_copy / "model.keras", "ab") as fh:
            fh.write(b"\0")
        with pytest.raises(ValidationError, match="different file"):
            registry.register_model_version(model_dir=model_copy)

    def test_the_management_command_registers_the_shipped_model(self, capsys):
        call_command("register_model", "--activate")
        assert "(active)" in capsys.readouterr().out
        assert ModelVersion.objects.active() is not None

    def test_the_management_command_accepts_a_zip(self, model_dir, tmp_path, capsys):
        archive = tmp_path / "model.zip"
        archive.write_bytes(zip_folder(model_dir))
        call_command("register_model", str(archive), "--activate")
        assert f"{shipped_label(model_dir)} registered (active)" in capsys.readouterr().out

    def test_the_management_command_reports_a_bad_model(self, tmp_path):
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(CommandError, match="neither a model folder nor a .zip"):
            call_command("register_model", str(tmp_path / "notes.txt"))
        with pytest.raises(CommandError, match="model.json not found"):
            call_command("register_model", str(tmp_path))


class TestActivation:
    def test_activating_records_who_and_which_version_was_active_before(self, admin_user):
        a, b = make_version("a", is_active=True), make_version("b")
        registry.activate_model_version(b, user=admin_user)
        assert state() == ("b", None)
        row = ModelActivation.objects.get()
        assert (row.action, row.model_version, row.previous, row.by) == ("activated", b, a, admin_user)
        b.refresh_from_db()
        assert b.activated_at is not None

    def test_promoting_the_shadow_model_ends_its_shadow_mode(self, admin_user):
        make_version("a", is_active=True)
        b = make_version("b", is_shadow=True)
        registry.activate_model_version(b, user=admin_user)
        assert state() == ("b", None)

    def test_a_failed_activation_leaves_the_active_model(self, admin_user, monkeypatch):
        make_version("a", is_active=True)
        b = make_version("b")

        def broken(**kwargs):
            raise RuntimeError("database went away")

        monkeypatch.setattr(ModelActivation.objects, "create", broken)
        with pytest.raises(RuntimeError):
            registry.activate_model_version(b, user=admin_user)
        assert state() == ("a", None)

    def test_activating_a_deleted_version_is_refused(self, admin_user):
        make_version("a", is_active=True)
        gone = make_version("gone")
        ModelVersion.objects.filter(pk=gone.pk).delete()
        with pytest.raises(ValidationError, match="no longer exists"):
            registry.activate_model_version(gone, user=admin_user)
        assert state() == ("a", None)


class TestRollback:
    def test_each_rollback_goes_back_one_activation(self, admin_user):
        a, b, c = make_version("a"), make_version("b"), make_version("c")
        for version in (a, b, c):
            registry.activate_model_version(version, user=admin_user)
        assert registry.rollback_model_version(user=admin_user) == b
        assert state() == ("b", None)
        assert registry.rollback_model_version(user=admin_user) == a
        assert state() == ("a", None)
        with pytest.raises(ValidationError, match="no earlier active model to roll back to"):
            registry.rollback_model_version(user=admin_user)
        assert history() == [
            ("activated", "a", None),
            ("activated", "b", "a"),
            ("activated", "c", "b"),
            ("rolled_back", "b", "c"),
            ("rolled_back", "a", "b"),
        ]
        assert ModelActivation.objects.filter(action="rolled_back").first().by == admin_user

    def test_rolling_back_to_the_shadow_model_ends_its_shadow_mode(self, admin_user):
        a, b = make_version("a"), make_version("b")
        registry.activate_model_version(a, user=admin_user)
        registry.activate_model_version(b, user=admin_user)
        registry.start_shadow(a, user=admin_user)
        registry.rollback_model_version(user=admin_user)
        assert state() == ("a", None)

    def test_without_an_active_model_there_is_nothing_to_roll_back(self, admin_user):
        make_version("a")
        with pytest.raises(ValidationError, match="No model is active"):
            registry.rollback_model_version(user=admin_user)
        assert not ModelActivation.objects.exists()

    def test_a_model_activated_outside_the_registry_has_nothing_to_roll_back_to(self, admin_user):
        make_version("a", is_active=True)
        with pytest.raises(ValidationError, match="no earlier active model"):
            registry.rollback_model_version(user=admin_user)
        assert state() == ("a", None)


class TestShadow:
    def test_starting_shadow_mode_replaces_the_previous_shadow(self, admin_user):
        make_version("a", is_active=True)
        b, c = make_version("b"), make_version("c")
        registry.start_shadow(b, user=admin_user)
        assert state() == ("a", "b")
        registry.start_shadow(c, user=admin_user)
        assert state() == ("a", "c")
        registry.start_shadow(c, user=admin_user)  # already the shadow: nothing new
        assert history() == [("shadow_started", "b", None), ("shadow_started", "c", "b")]

    def test_the_active_model_cannot_be_the_shadow(self, admin_user):
        a = make_version("a", is_active=True)
        with pytest.raises(ValidationError, match="cannot also be the shadow"):
            registry.start_shadow(a, user=admin_user)
        assert state() == ("a", None) and not ModelActivation.objects.exists()

    def test_stopping_shadow_mode(self, admin_user):
        make_version("a", is_active=True)
        registry.start_shadow(make_version("b"), user=admin_user)
        stopped = registry.stop_shadow(user=admin_user)
        assert stopped.version == "b" and state() == ("a", None)
        assert history()[-1] == ("shadow_stopped", "b", "b")
        with pytest.raises(ValidationError, match="No model is in shadow mode"):
            registry.stop_shadow(user=admin_user)


def _in_threads(*targets, timeout=30):
    """Run each target in its own thread (its own database connection); re-raise the first error."""
    errors = []

    def run(target):
        try:
            target()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "an activation hung"
    if errors:
        raise errors[0]


@pytest.mark.django_db(transaction=True)
class TestConcurrentActivation:
    """Two admins click "Activate" on two different versions at the same moment, on real PostgreSQL."""

    def assert_serialised(self, rows):
        # Whichever ran second saw the first's result: its "previous" is the
        # version the first one activated, never the one both started from.
        first, second = rows
        assert second.previous == first.model_version
        assert ModelVersion.objects.filter(is_active=True).count() == 1
        assert ModelVersion.objects.active() == second.model_version

    def test_exactly_one_is_active_afterwards(self):
        user = UserFactory(username="ml-lead")
        make_version("old", is_active=True)
        for round_ in range(5):
            a, b = make_version(f"a{round_}"), make_version(f"b{round_}")
            start = threading.Barrier(2, timeout=10)

            def activate(version, start=start):
                start.wait()
                registry.activate_model_version(version, user=user)

            _in_threads(lambda a=a: activate(a), lambda b=b: activate(b))
            rows = list(ModelActivation.objects.filter(model_version__in=[a, b]).order_by("id"))
            assert len(rows) == 2
            self.assert_serialised(rows)
        assert ModelActivation.objects.count() == 10

    def test_overlapping_transactions_wait_for_each_other(self):
        # Both transactions are open before either activates, and the first
        # holds its locks a moment longer: the second must wait, then see it.
        user = UserFactory(username="ml-lead")
        old = make_version("old", is_active=True)
        for round_ in range(3):
            a, b = make_version(f"a{round_}"), make_version(f"b{round_}")
            start = threading.Barrier(2, timeout=10)

            def activate(version, start=start):
                with transaction.atomic():
                    start.wait()
                    registry.activate_model_version(version, user=user)
                    time.sleep(0.2)

            _in_threads(lambda a=a: activate(a), lambda b=b: activate(b))
            rows = list(ModelActivation.objects.filter(model_version__in=[a, b]).order_by("id"))
            assert len(rows) == 2
            assert rows[0].previous != rows[1].previous
            self.assert_serialised(rows)
        assert ModelVersion.objects.filter(is_active=True).count() == 1
        old.refresh_from_db()
        assert not old.is_active
