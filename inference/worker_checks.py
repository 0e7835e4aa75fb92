"""What a worker answers ``manage.py worker_health`` with: that it can reach PostgreSQL.

A worker cut off from the database still answers pings and keeps taking
messages, sweeps included, failing every one, so a ping alone reports it
healthy. The check runs in the worker's main process (the one that answers
the broker's control channel), on the same host, network and settings as its
pool, with a fresh connection: a short ``connect_timeout`` bounds it, and
nothing is left open for a forked pool process to inherit.

Registered when a worker starts (``skincare.celery``), never in web processes.
"""

from celery.worker.control import inspect_command

DATABASE_CHECK = "skincare_database"
CONNECT_TIMEOUT_SECONDS = 3


@inspect_command(name=DATABASE_CHECK)
def database_check(state, **kwargs):
    """Run ``SELECT 1`` on a fresh database connection: {"ok": bool, "error": the exception's type}."""
    return check_database()


def check_database() -> dict:
    from django.db import connections

    wrapper = connections.create_connection("default")
    if wrapper.vendor == "postgresql":
        # A copy: the settings' own dict is shared with every other connection.
        options = {**wrapper.settings_dict.get("OPTIONS", {}), "connect_timeout": CONNECT_TIMEOUT_SECONDS}
        wrapper.settings_dict = {**wrapper.settings_dict, "OPTIONS": options}
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        # The type only: a message could hold the database URL and its password.
        return {"ok": False, "error": type(exc).__name__}
    finally:
        wrapper.close()
    return {"ok": True}
