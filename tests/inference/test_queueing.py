"""Work reaches the broker on commit, by the task's name, and a broker fault loses nothing."""

import pytest
from celery import current_app
from django.db import transaction

from inference import queueing
from inference.tasks import run_prediction_task


def test_the_name_sent_is_the_tasks_name():
    assert queueing.RUN_PREDICTION_TASK == run_prediction_task.name


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_before_commit_and_nothing_after_a_rollback(queued_predictions):
    with transaction.atomic():
        queueing.send_prediction_on_commit("a")
        assert queued_predictions == []
    assert queued_predictions == [("a",)]
    with pytest.raises(RuntimeError), transaction.atomic():
        queueing.send_prediction_on_commit("b")
        raise RuntimeError
    assert queued_predictions == [("a",)]


@pytest.mark.django_db(transaction=True)
def test_a_broker_fault_does_not_stop_the_other_hooks(monkeypatch, queued_predictions):
    def unreachable(name, args=(), **options):
        if args == ["first"]:
            raise ConnectionError("broker down")
        queued_predictions.append(tuple(args))

    monkeypatch.setattr(current_app, "send_task", unreachable)
    with transaction.atomic():
        queueing.send_prediction_on_commit("first")
        queueing.send_prediction_on_commit("second")
    assert queued_predictions == [("second",)]
