"""Leases and the sweeper, in one process (tests/faults runs them across real processes)."""

import io
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from cases import services as case_services
from inference import leases, queueing, services, sweeper
from inference.models import Prediction
from inference.tasks import run_prediction_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def prediction(owner, lesion, jpeg_bytes, active_model):
    image = case_services.add_lesion_image(
        uploader=owner, lesion=lesion, file=io.BytesIO(jpeg_bytes), modality="dermoscopic"
    )
    return Prediction.objects.get(image=image)


@pytest.fixture
def broker():
    client = queueing.redis_broker()
    assert client is not None, "the tests run on Redis"
    client.set(queueing.BROKER_MARKER_KEY, "test")
    client.delete(sweeper.ORPHAN_CHECK_KEY)
    return client


def lease(prediction, *, seconds, token=None, attempts=1):
    token = token or uuid.uuid4()
    Prediction.objects.filter(pk=prediction.pk).update(
        status="running",
        lease_token=token,
        lease_expires_at=timezone.now() + timedelta(seconds=seconds),
        started_at=timezone.now(),
        attempts=attempts,
    )
    return token


class TestDeliveries:
    def test_a_delivery_while_a_live_run_holds_the_lease_does_nothing(self, prediction):
        lease(prediction, seconds=60)
        result = services.run_prediction(prediction.pk)
        assert (result.status, result.attempts, result.probability_malignant) == ("running", 1, None)

    def test_a_delivery_after_the_lease_expired_takes_over_and_counts_an_attempt(self, prediction):
        lease(prediction, seconds=-1)
        result = services.run_prediction(prediction.pk)
        assert (result.status, result.attempts) == ("succeeded", 2)
        assert (result.lease_token, result.lease_expires_at) == (None, None)

    def test_a_retry_takes_its_own_lease_back(self, prediction):
        token = lease(prediction, seconds=60)
        result = services.run_prediction(prediction.pk, lease_token=token)
        assert (result.status, result.attempts) == ("succeeded", 2)

    def test_a_run_that_lost_its_lease_stores_nothing_and_leaves_no_file(self, prediction, monkeypatch):
        real_store = services._store_heatmap
        stored = []

        def store_then_lose_the_lease(prediction_row, predictor, array):
            name, ms = real_store(prediction_row, predictor, array)
            stored.append(name)
            lease(prediction, seconds=60)  # meanwhile another run took the row over
            return name, ms

        monkeypatch.setattr(services, "_store_heatmap", store_then_lose_the_lease)
        result = services.run_prediction(prediction.pk)
        assert result.status == "running" and result.probability_malignant is None
        assert stored and not result.heatmap.storage.exists(stored[0])

    def test_finished_rows_are_not_attempts(self, prediction):
        first = services.run_prediction(prediction.pk)
        again = services.run_prediction(prediction.pk)
        assert first.attempts == again.attempts == 1

    def test_the_heartbeat_renews_a_held_lease_and_notices_a_lost_one(self, prediction):
        token = lease(prediction, seconds=1)
        beat = leases.Heartbeat(prediction.pk, token, seconds=60)
        assert beat.renew()
        prediction.refresh_from_db()
        assert prediction.lease_expires_at > timezone.now() + timedelta(seconds=50)
        lease(prediction, seconds=60)  # another token
        assert not beat.renew() and beat.lost


class TestTaskGivingUp:
    def test_an_unreachable_database_never_drops_the_message(self, prediction, monkeypatch):
        from django.db import OperationalError

        calls = []
        real = services.run_prediction

        def database_down_for_a_while(prediction_id, lease_token=None):
            calls.append(lease_token)
            if len(calls) <= 8:  # beyond the 5 ordinary retries
                raise OperationalError("connection refused")
            return real(prediction_id, lease_token=lease_token)

        monkeypatch.setattr(services, "run_prediction", database_down_for_a_while)
        run_prediction_task.apply(args=[str(prediction.pk)])  # eager: retries run inline
        assert len(calls) == 9 and len(set(calls)) == 1
        assert Prediction.objects.get(pk=prediction.pk).status == "succeeded"

    def test_another_database_error_through_every_retry_leaves_the_row_for_the_sweeper(self, prediction, monkeypatch):
        from django.db import DataError

        def broken(prediction_id, lease_token=None):
            lease(prediction, seconds=60, token=lease_token)
            raise DataError("value out of range")

        monkeypatch.setattr(services, "run_prediction", broken)
        run_prediction_task.apply(args=[str(prediction.pk)])
        prediction.refresh_from_db()
        # Pending and never sent: the sweeper's next pass sends it, not "failed".
        assert (prediction.status, prediction.sent_at, prediction.lease_token) == ("pending", None, None)

    def test_retries_carry_the_lease_token(self, prediction, monkeypatch):
        tokens = []
        real = services.run_prediction

        def flaky_once(prediction_id, lease_token=None):
            tokens.append(lease_token)
            if len(tokens) == 1:
                lease(prediction, seconds=60, token=lease_token)
                raise services.TransientError("storage blip")
            return real(prediction_id, lease_token=lease_token)

        monkeypatch.setattr(services, "run_prediction", flaky_once)
        run_prediction_task.apply(args=[str(prediction.pk)])
        assert len(tokens) == 2 and tokens[0] == tokens[1]
        assert Prediction.objects.get(pk=prediction.pk).status == "succeeded"


class TestSending:
    def test_an_accepted_publish_is_recorded(self, prediction, queued_predictions):
        assert prediction.sent_at is None  # captured on commit in a test transaction: not sent yet
        assert queueing.send_now(prediction.pk)
        prediction.refresh_from_db()
        assert prediction.sent_at is not None

    def test_an_unreachable_broker_leaves_the_row_pending_and_unsent(self, prediction, monkeypatch, caplog):
        from celery import current_app
        from kombu.exceptions import OperationalError

        tries = []

        def down(*args, **kwargs):
            tries.append(args)
            raise OperationalError("Error 111 connecting to redis. Connection refused.")

        monkeypatch.setattr(queueing, "_broker_down_until", 0.0)  # restored after the test
        monkeypatch.setattr(current_app, "send_task", down)
        assert not queueing._send(str(prediction.pk))
        prediction.refresh_from_db()
        assert (prediction.status, prediction.sent_at) == ("pending", None)
        assert "stays pending" in caplog.text
        # Refused at once: the next publish tries again.
        assert not queueing._send(str(prediction.pk)) and len(tries) == 2
        # Failed slowly (a hanging broker): uploads right after leave the
        # broker alone (one timeout per process, not one per image)...
        monkeypatch.setattr(queueing, "SLOW_PUBLISH_SECONDS", 0.0)
        assert not queueing._send(str(prediction.pk)) and len(tries) == 3
        assert not queueing._send(str(prediction.pk)) and len(tries) == 3
        # ...but the sweeper always tries.
        assert not queueing.send_now(prediction.pk) and len(tries) == 4


class TestSweeper:
    def old(self, seconds=60):
        return timezone.now() - timedelta(seconds=seconds)

    def test_an_expired_lease_is_queued_again(self, prediction, broker, queued_predictions):
        lease(prediction, seconds=-1)
        assert sweeper.sweep()["expired_leases"] == 1
        assert queued_predictions == [(str(prediction.pk),)]
        prediction.refresh_from_db()
        assert (prediction.status, prediction.lease_token) == ("pending", None)
        assert prediction.sent_at is not None

    def test_a_row_left_running_before_leases_existed_is_queued_again(self, prediction, broker, queued_predictions):
        Prediction.objects.filter(pk=prediction.pk).update(status="running", started_at=self.old(3600))
        assert sweeper.sweep()["expired_leases"] == 1
        assert queued_predictions == [(str(prediction.pk),)]

    def test_a_live_lease_is_left_alone(self, prediction, broker, queued_predictions):
        lease(prediction, seconds=60)
        assert not any(sweeper.sweep().values())
        assert queued_predictions == []

    def test_a_row_the_broker_never_accepted_is_sent_after_the_grace(self, prediction, broker, queued_predictions):
        assert not any(sweeper.sweep().values())  # just uploaded: its on-commit publish may be under way
        Prediction.objects.filter(pk=prediction.pk).update(queued_at=self.old())
        assert sweeper.sweep()["never_sent"] == 1
        assert queued_predictions == [(str(prediction.pk),)]
        assert not any(sweeper.sweep().values())  # sent now: not again

    def test_a_row_waiting_behind_a_backlog_is_not_sent_again(self, prediction, broker, queued_predictions):
        Prediction.objects.filter(pk=prediction.pk).update(queued_at=self.old(3600), sent_at=self.old(3600))
        assert not any(sweeper.sweep().values())
        assert queued_predictions == []

    def test_when_the_broker_lost_its_data_every_sent_pending_row_is_sent_again(
        self, prediction, broker, queued_predictions
    ):
        Prediction.objects.filter(pk=prediction.pk).update(queued_at=self.old(), sent_at=self.old())
        broker.delete(queueing.BROKER_MARKER_KEY)  # a restart without persistence
        assert sweeper.sweep()["broker_lost"] == 1
        assert queued_predictions == [(str(prediction.pk),)]
        assert broker.get(queueing.BROKER_MARKER_KEY) is not None
        assert not any(sweeper.sweep().values())

    def test_while_the_broker_is_down_rows_stay_unsent_for_the_next_pass(self, prediction, broker, monkeypatch):
        from celery import current_app

        Prediction.objects.filter(pk=prediction.pk).update(queued_at=self.old())
        monkeypatch.setattr(queueing, "_broker_down_until", 0.0)  # restored after the test
        monkeypatch.setattr(current_app, "send_task", lambda *a, **k: (_ for _ in ()).throw(OSError("down")))
        assert sweeper.sweep()["never_sent"] == 0
        prediction.refresh_from_db()
        assert (prediction.status, prediction.sent_at) == ("pending", None)
