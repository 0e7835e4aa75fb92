"""Exit 0 if this machine's Celery worker answers and reaches PostgreSQL, 1 otherwise: a container health check.

``python manage.py worker_health`` asks ``celery@<hostname>`` (the worker's
default name) over the broker's control channel to run ``SELECT 1`` on a
fresh database connection (``inference.worker_checks``). The worker's main
process answers from its event loop, so a worker that lost its broker
connection or is wedged fails the check, and so does one that cannot reach
PostgreSQL: it would otherwise keep taking messages and failing them
(docs/operations.md).
"""

import socket

from celery import current_app
from django.core.management.base import BaseCommand, CommandError

from inference.worker_checks import DATABASE_CHECK


class Command(BaseCommand):
    help = "Ask this machine's Celery worker to check its database; exit 1 if it does not answer or cannot reach it."

    def add_arguments(self, parser):
        parser.add_argument("--hostname", default=f"celery@{socket.gethostname()}", help="the worker's node name")
        parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")

    def handle(self, *args, hostname, timeout, **options):
        try:
            replies = current_app.control.broadcast(DATABASE_CHECK, destination=[hostname], reply=True, timeout=timeout)
        except Exception as exc:
            raise CommandError(f"cannot reach the broker: {type(exc).__name__}") from exc
        answer = next((reply[hostname] for reply in replies if hostname in reply), None)
        if answer is None:
            raise CommandError(f"worker {hostname} did not answer within {timeout:g} s")
        if not answer.get("ok"):
            raise CommandError(f"worker {hostname} cannot reach the database: {answer.get('error', answer)}")
        self.stdout.write(f"{hostname}: ok (database reachable)")
