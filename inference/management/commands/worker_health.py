"""Exit 0 if this machine's Celery worker answers a ping, 1 otherwise: a Docker/Kubernetes health check.

``python manage.py worker_health`` pings ``celery@<hostname>`` (the worker's
default name) over the broker's control channel. The worker's main process
answers it from its event loop, so a worker that lost its broker connection
or is wedged fails the check (docs/operations.md).
"""

import socket

from celery import current_app
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Ping this machine's Celery worker; exit 1 if it does not answer."

    def add_arguments(self, parser):
        parser.add_argument("--hostname", default=f"celery@{socket.gethostname()}", help="the worker's node name")
        parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS")

    def handle(self, *args, hostname, timeout, **options):
        try:
            replies = current_app.control.ping(destination=[hostname], timeout=timeout)
        except Exception as exc:
            raise CommandError(f"cannot reach the broker: {type(exc).__name__}") from exc
        if not any(hostname in reply for reply in replies):
            raise CommandError(f"worker {hostname} did not answer within {timeout:g} s")
        self.stdout.write(f"{hostname}: ok")
