"""The model registry: registration (folder, .zip upload, management command), activation,
rollback and shadow mode, including two activations at the same moment."""

import io
import json
import shutil
import stat
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from inference import registry
from inference.models import ModelActivation, ModelVersion
from inference.runtime import read_metadata
from tests.conftest import edit_metadata
from tests.factories import UserFactory
from training.files import sha256_of

pytestmark = pytest.mark.django_db


def zip_folder(folder: Path, *, top: str | None = "model", extra: dict | None = None) -> bytes:
    """``folder`` packed as a .zip, under one top folder (or at the root when ``top`` is None)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                archive.write(path, f"{top}/{name}" if top else name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def stored_model_files():
    """Every file under models/ in storage (model files, ONNX exports, plots)."""
    found = []

    def walk(folder):
        try:
            folders, files = default_storage.listdir(folder)
        except FileNotFoundError:
            return
        found.extend(f"{folder}/{name}" for name in files)
        for sub in folders:
            walk(f"{folder}/{sub}")

    walk("models")
    return sorted(found)


@pytest.fixture(scope="module", autouse=True)
def _one_load_check_per_model():
    """The child-process load check is real, but runs once per distinct model file and metadata in
    this module (the shipped model takes seconds to load). Its timeout is generous: the test
    machine's cores are shared, and speed is measured in bench/, not here."""
    real = registry.check_model_loads
    seen = {}

    def check(model_dir):
        metadata = read_metadata(model_dir)
        model_file = Path(model_dir) / metadata.get("file", "model.keras")
        rest = {k: v for k, v in metadata.items() if k not in ("name", "version")}
        key = (sha256_of(model_file), json.dumps(rest, sort_keys=True))
        if key not in seen:
            try:
                seen[key] = real(model_dir)
            except ValidationError as exc:
                seen[key] = exc
        if isinstance(seen[key], ValidationError):
            raise ValidationError(seen[key].messages)
        return seen[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "check_model_loads", check)
        mp.setattr(registry, "CHECK_TIMEOUT_SECONDS", 300)
        yield


@pytest.fixture
def no_load_check(monkeypatch):
    """For tests about what is stored beside the model, not whether it loads."""
    monkeypatch.setattr(registry, "check_model_loads", lambda model_dir: {"ok": True})


@pytest.fixture
def admin_user(db):
    return UserFactory(username="ml-lead")


def shipped_label(model_dir):
    metadata = json.loads((model_dir / "model.json").read_text())
    return f"{metadata['name']}-{metadata['version']}"


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

    @pytest.mark.parametrize(
        "damage, message",
        [
            (lambda d: (d / "model.keras").write_text("just some text\n"), "model.keras is not a Keras model"),
            (lambda d: (d / "model.json").write_text("{"), "Invalid model metadata"),
            (lambda d: (d / "model.json").unlink(), "model.json not found"),
            (lambda d: edit_metadata(d, file="elsewhere.keras"), "names the model file 'elsewhere.keras'"),
            (lambda d: edit_metadata(d, file="../../model.keras"), "must be a file name in the model folder"),
            (lambda d: edit_metadata(d, name="../../etc"), "name '../../etc' must be"),
            (lambda d: edit_metadata(d, preprocessing="unheard-of"), "preprocessing"),
            (
                lambda d: (d / "roc_curve.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"),
                "roc_curve.png is not a valid PNG",
            ),
            (lambda d: (d / "evaluation.json").write_text("[1, 2"), "evaluation.json is not valid JSON"),
            (lambda d: edit_metadata(d, onnx_file="absent.onnx"), "'absent.onnx', which is not in the model folder"),
        ],
        ids=[
            "text-as-keras",
            "bad-json",
            "no-metadata",
            "missing-model-file",
            "file-outside-the-folder",
            "unsafe-name",
            "unknown-preprocessing",
            "broken-plot",
            "bad-evaluation",
            "missing-onnx",
        ],
    )
    def test_a_bad_model_is_refused_and_the_active_one_stays(self, active_model, model_copy, damage, message):
        files_before = stored_model_files()
        edit_metadata(model_copy, version="broken")
        damage(model_copy)
        with pytest.raises(ValidationError, match=message):
            registry.register_model_version(model_dir=model_copy, activate=True)
        assert ModelVersion.objects.active() == active_model
        assert ModelVersion.objects.count() == 1
        assert not ModelActivation.objects.exists()
        assert stored_model_files() == files_before

    def test_a_model_whose_input_shape_disagrees_with_its_metadata_is_refused(self, active_model, baseline_copy):
        edit_metadata(baseline_copy, input_size=224)
        with pytest.raises(ValidationError) as caught:
            registry.register_model_version(model_dir=baseline_copy, activate=True)
        assert caught.value.messages == ["The model takes 64×64 images but model.json says 224."]
        assert ModelVersion.objects.active() == active_model and ModelVersion.objects.count() == 1

    def test_an_onnx_export_is_stored_with_its_checked_sha256(self, model_copy, no_load_check):
        (model_copy / "model.onnx").write_bytes(b"onnx bytes")
        digest = sha256_of(model_copy / "model.onnx")
        edit_metadata(model_copy, version="onnx", onnx_file="model.onnx", onnx_sha256=digest)
        version, _ = registry.register_model_version(model_dir=model_copy)
        assert version.onnx_sha256 == digest
        assert version.onnx_file.read() == b"onnx bytes"

    def test_an_onnx_file_that_is_not_the_exported_one_is_refused(self, model_copy, no_load_check):
        (model_copy / "model.onnx").write_bytes(b"onnx bytes")
        edit_metadata(model_copy, version="onnx", onnx_file="model.onnx", onnx_sha256="ab" * 32)
        with pytest.raises(ValidationError, match="is not the one exported with this model"):
            registry.register_model_version(model_dir=model_copy)
        assert stored_model_files() == []

    def test_an_onnx_file_that_does_not_load_is_refused(self, active_model, baseline_copy):
        (baseline_copy / "model.onnx").write_bytes(b"not a protobuf")
        digest = sha256_of(baseline_copy / "model.onnx")
        edit_metadata(baseline_copy, onnx_file="model.onnx", onnx_sha256=digest)
        with pytest.raises(ValidationError, match="The ONNX export model.onnx cannot be used"):
            registry.register_model_version(model_dir=baseline_copy, activate=True)
        assert ModelVersion.objects.active() == active_model and ModelVersion.objects.count() == 1

    def test_a_model_without_card_or_plots_is_registered_without_them(self, baseline_copy, no_load_check):
        for name in ("MODEL_CARD.md", "evaluation.json", "roc_curve.png", "reliability_diagram.png"):
            (baseline_copy / name).unlink(missing_ok=True)
        version, _ = registry.register_model_version(model_dir=baseline_copy)
        assert (version.model_card, version.evaluation, version.roc_curve.name) == ("", {}, "")

    def test_a_check_that_takes_too_long_is_refused(self, baseline_copy, monkeypatch):
        monkeypatch.setattr(registry, "CHECK_TIMEOUT_SECONDS", 0.01)
        with pytest.raises(ValidationError, match="took longer than 0.01 s"):
            real_check(baseline_copy)

    def test_a_checker_that_dies_without_an_answer_is_refused(self, baseline_copy, monkeypatch):
        monkeypatch.setattr(sys, "executable", shutil.which("false"))
        with pytest.raises(ValidationError, match="stopped without an answer"):
            real_check(baseline_copy)

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


def real_check(model_dir):
    """The unmemoised child-process check (the module fixture wraps the registry's)."""
    return _REAL_CHECK(model_dir)


_REAL_CHECK = registry.check_model_loads


class TestUpload:
    def test_a_zip_of_the_shipped_model_folder_is_registered(self, model_dir, admin_user):
        upload = io.BytesIO(zip_folder(model_dir))
        version, created = registry.register_model_upload(upload=upload, user=admin_user, activate=True)
        assert created and version.is_active and version.registered_by == admin_user
        assert version.sha256 == sha256_of(model_dir / "model.keras")
        shipped_auc = json.loads((model_dir / "model.json").read_text())["metrics"]["roc_auc"]["mean"]
        assert 0.9 < version.metrics["roc_auc"]["mean"] == shipped_auc
        assert version.model_card.startswith((model_dir / "MODEL_CARD.md").read_text()[:40])
        assert version.roc_curve.name and version.reliability_diagram.name
        metadata = read_metadata(model_dir)
        if metadata.get("onnx_file"):
            assert version.onnx_sha256 == metadata.get("onnx_sha256", version.onnx_sha256)
            assert version.onnx_file.name

    def test_files_may_sit_at_the_root_of_the_zip(self, model_dir, admin_user):
        upload = io.BytesIO(zip_folder(model_dir, top=None, extra={"__MACOSX/._model.json": b"junk"}))
        version, created = registry.register_model_upload(upload=upload, user=admin_user)
        assert created and version.label == shipped_label(model_dir) and not version.is_active

    @staticmethod
    def symlink_zip(model_dir):
        data = zip_folder(model_dir)
        buffer = io.BytesIO(data)
        with zipfile.ZipFile(buffer, "a") as archive:
            link = zipfile.ZipInfo("model/evil")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(link, "/etc/passwd")
        return buffer.getvalue()

    @pytest.mark.parametrize(
        "make_upload, message",
        [
            (lambda d: b"just some text, not a zip", "not a zip archive, or it is damaged"),
            (lambda d: (data := zip_folder(d))[: len(data) // 2], "not a zip archive, or it is damaged"),
            (lambda d: _zip({"model/model.keras": b"PK"}), "no model.json"),
            (lambda d: _zip({"a/model.json": b"{}", "b/model.keras": b""}), "no model.json"),
            (lambda d: _zip({"../model.json": b"{}"}), "unsafe path"),
            (lambda d: _zip({"/tmp/model.json": b"{}"}), "unsafe path"),
            (lambda d: TestUpload.symlink_zip(d), "symbolic link"),
            (lambda d: _with_metadata(d, file="missing.keras"), "names the model file 'missing.keras'"),
            (lambda d: with_file(d, "model.keras", b"a text file renamed .keras\n"), "is not a Keras model"),
        ],
        ids=[
            "not-a-zip",
            "truncated-zip",
            "no-model-json",
            "two-top-folders",
            "dot-dot-path",
            "absolute-path",
            "symlink",
            "model-json-names-a-missing-file",
            "text-file-renamed-keras",
        ],
    )
    def test_bad_uploads_are_refused_with_a_clear_message_and_the_active_model_stays(
        self, active_model, model_copy, make_upload, message
    ):
        files_before = stored_model_files()
        edit_metadata(model_copy, version="upload")
        with pytest.raises(ValidationError, match=message):
            registry.register_model_upload(upload=io.BytesIO(make_upload(model_copy)), user=None, activate=True)
        assert ModelVersion.objects.active() == active_model
        assert ModelVersion.objects.count() == 1
        assert stored_model_files() == files_before

    def test_a_model_with_the_wrong_input_shape_is_refused(self, active_model, baseline_copy):
        edit_metadata(baseline_copy, input_size=224)
        with pytest.raises(ValidationError, match="takes 64×64 images but model.json says 224"):
            registry.register_model_upload(upload=io.BytesIO(zip_folder(baseline_copy)), user=None, activate=True)
        assert ModelVersion.objects.active() == active_model and ModelVersion.objects.count() == 1

    def test_archives_over_the_limits_are_refused_before_unpacking(self, model_dir, monkeypatch):
        data = zip_folder(model_dir)
        monkeypatch.setattr(registry, "MAX_ARCHIVE_FILES", 3)
        with pytest.raises(ValidationError, match="files; the limit is 3"):
            registry.register_model_upload(upload=io.BytesIO(data), user=None)
        monkeypatch.setattr(registry, "MAX_ARCHIVE_FILES", 500)
        monkeypatch.setattr(registry, "MAX_UNPACKED_BYTES", 1_000_000)
        with pytest.raises(ValidationError, match="unpacks to more than"):
            registry.register_model_upload(upload=io.BytesIO(data), user=None)
        monkeypatch.setattr(registry, "MAX_ARCHIVE_BYTES", 1000)
        with pytest.raises(ValidationError, match="the limit is"):
            registry.register_model_upload(upload=io.BytesIO(data), user=None)
        assert not ModelVersion.objects.exists()

    def test_a_zip_bomb_is_refused(self, monkeypatch, tmp_path):
        monkeypatch.setattr(registry, "MAX_UNPACKED_BYTES", 10_000)
        data = _zip({"model/model.json": b"{}", "model/big.bin": b"\0" * 50_000})
        with pytest.raises(ValidationError, match="unpacks to more than"):
            registry.unpack_model_archive(io.BytesIO(data), tmp_path)


def _zip(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _with_metadata(folder, **changes):
    edit_metadata(folder, **changes)
    return zip_folder(folder)


def with_file(folder, name, data):
    (folder / name).write_bytes(data)
    return zip_folder(folder)


# --- activation, rollback, shadow ---------------------------------------------


def make_version(label, *, is_active=False, is_shadow=False):
    """A registered version without a real file: switching never opens it."""
    return ModelVersion.objects.create(
        name="model",
        version=label,
        file=f"models/{label}.keras",
        sha256=label.ljust(64, "0"),
        input_size=224,
        preprocessing="square-sog-v2",
        threshold=0.5,
        is_active=is_active,
        is_shadow=is_shadow,
    )


def state():
    """(active label, shadow label) as the database has them."""
    active, shadow = ModelVersion.objects.active(), ModelVersion.objects.shadow()
    return (active.version if active else None, shadow.version if shadow else None)


def history():
    """(action, version, previous) of every ModelActivation, oldest first."""
    return [
        (row.action, row.model_version.version, row.previous.version if row.previous else None)
        for row in ModelActivation.objects.order_by("at", "id").select_related("model_version", "previous")
    ]


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
