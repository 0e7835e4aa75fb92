"""The audit trail: who changed which record in the admin, when, and from what to what;
and who read which patient data, through which door, from where.

Every ModelAdmin of ``cases`` and ``inference`` mixes in ``AuditedAdminMixin``,
which writes a ``cases.AuditEvent`` with field-level old and new values on
add, change and delete (inline rows included). Admin actions log themselves
with ``log_action`` / ``log_actions``. Events are written inside the admin's
own transaction, so a change that rolls back leaves no event behind.

Values of sensitive fields (token hashes, passwords) are never written: a
change to one is recorded as ``[HIDDEN, HIDDEN]``, so the trail says *that*
it changed without holding anything usable.
"""

import hashlib
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from .models import AuditEvent

HIDDEN = "[hidden]"
# Field names whose values never enter the trail, whatever the model.
SENSITIVE_FIELDS = frozenset({"password", "token_hash"})


def model_label(obj_or_model) -> str:
    return obj_or_model._meta.label_lower


class _Hidden:
    """A sensitive value inside a snapshot: compared by digest, written as HIDDEN."""

    __slots__ = ("digest",)

    def __init__(self, value):
        self.digest = hashlib.sha256(repr(value).encode()).hexdigest()

    def __eq__(self, other):
        return isinstance(other, _Hidden) and other.digest == self.digest

    def __hash__(self):
        return hash(self.digest)


def _written(value):
    return HIDDEN if isinstance(value, _Hidden) else value


def _json_safe(value):
    # UUIDs, datetimes and Decimals become the strings DjangoJSONEncoder writes.
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _audited_fields(obj):
    for field in obj._meta.concrete_fields:
        # An auto_now timestamp changes on every save: noise, not a change.
        if getattr(field, "auto_now", False):
            continue
        yield field


def snapshot(obj, hidden=()) -> dict:
    """The row's concrete field values as JSON-safe data (foreign keys by primary key).

    Only for ``diff``: sensitive values are held as digests, never as themselves.
    """
    hidden = SENSITIVE_FIELDS.union(hidden)
    values = {}
    for field in _audited_fields(obj):
        value = getattr(obj, field.attname)
        if field.name in hidden:
            values[field.name] = None if value in (None, "") else _Hidden(value)
            continue
        if isinstance(field, models.FileField):
            value = value.name if value else ""
        values[field.name] = _json_safe(value)
    if obj.pk is not None:
        # Many-to-many links (a user's groups, a group's permissions) are part
        # of what an admin changes: recorded as the sorted primary keys.
        for field in obj._meta.many_to_many:
            linked = getattr(obj, field.name).values_list("pk", flat=True)
            values[field.name] = sorted(_json_safe(list(linked)), key=str)
    return values


def diff(before: dict | None, after: dict | None) -> dict:
    """``{"field": [old, new]}`` for each field whose value differs (a missing side is None)."""
    before = before or {}
    after = after or {}
    changes = {}
    for name in before.keys() | after.keys():
        old, new = before.get(name), after.get(name)
        if old != new:
            changes[name] = [_written(old), _written(new)]
    return dict(sorted(changes.items()))


def _event(*, user, action, obj, changes=None, description="") -> AuditEvent:
    return AuditEvent(
        user=user if user is not None and user.is_authenticated else None,
        action=action,
        model=model_label(obj),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        changes=changes or {},
        description=description[:300],
    )


def log_created(*, user, obj, hidden=()) -> AuditEvent:
    event = _event(user=user, action=AuditEvent.Action.CREATED, obj=obj, changes=diff(None, snapshot(obj, hidden)))
    event.save()
    return event


def log_changed(*, user, obj, before: dict, hidden=()) -> AuditEvent | None:
    """Record what changed since ``before`` (a ``snapshot``); nothing when nothing changed."""
    changes = diff(before, snapshot(obj, hidden))
    if not changes:
        return None
    event = _event(user=user, action=AuditEvent.Action.CHANGED, obj=obj, changes=changes)
    event.save()
    return event


def log_deleted(*, user, obj, hidden=(), before: dict | None = None) -> AuditEvent:
    """Record a deletion; call it before the row is deleted (or pass its ``before`` snapshot)."""
    changes = diff(before if before is not None else snapshot(obj, hidden), None)
    event = _event(user=user, action=AuditEvent.Action.DELETED, obj=obj, changes=changes)
    event.save()
    return event


def log_action(*, user, obj, description, changes=None) -> AuditEvent:
    """Record an admin action on one row, e.g. ``log_action(user=u, obj=v, description="Activated")``.

    ``changes`` is ``{"field": [old, new]}`` for what the action changed, if anything.
    """
    event = _event(user=user, action=AuditEvent.Action.ACTION, obj=obj, changes=changes, description=description)
    event.save()
    return event


def log_actions(*, user, objects, description, changes=None) -> list[AuditEvent]:
    """``log_action`` for many rows in one insert (an export of a whole selection, say)."""
    events = [
        _event(user=user, action=AuditEvent.Action.ACTION, obj=obj, changes=changes, description=description)
        for obj in objects
    ]
    return AuditEvent.objects.bulk_create(events)


# --- Reads of patient data (written by core.middleware.ReadAuditMiddleware).


def mark_listed(request, objects) -> None:
    """Tell the read audit which rows a list page or API list showed (their ids go on record).

    Call it with the page actually shown; ``request`` may be Django's or DRF's.
    """
    objects = list(objects)
    django_request = getattr(request, "_request", request)
    django_request.audit_listed = (
        model_label(objects[0]) if objects else None,
        [str(obj.pk) for obj in objects],
    )


def log_read(*, user, channel, address, model, object_id="", object_ids=(), refused=False) -> AuditEvent:
    """One read (or refused read) of patient data: who, which door, from where, what."""
    return AuditEvent.objects.create(
        user=user if user is not None and user.is_authenticated else None,
        action=AuditEvent.Action.REFUSED if refused else AuditEvent.Action.READ,
        channel=channel,
        client_address=address,
        model=model or "",
        object_id=str(object_id)[:64],
        object_ids=list(object_ids),
        object_repr="",
    )


def events_for(obj):
    """The trail of one row, newest first."""
    return AuditEvent.objects.filter(model=model_label(obj), object_id=str(obj.pk)).select_related("user")


class AuditedAdminMixin:
    """Writes an AuditEvent for every add, change and delete made through this ModelAdmin.

    Put it before ``admin.ModelAdmin`` in the bases. ``audit_hidden_fields``
    names further fields whose values must not be recorded. The object's
    "History" page shows its trail.
    """

    audit_hidden_fields = ()
    object_history_template = "admin/audit/object_history.html"

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Taken before the form writes the posted values onto the instance.
            obj._audit_before = snapshot(obj, self.audit_hidden_fields)
        return obj

    def log_addition(self, request, obj, message):
        log_created(user=request.user, obj=obj, hidden=self.audit_hidden_fields)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        before = getattr(obj, "_audit_before", None)
        if before is None:
            # Not loaded through get_object (a custom view): the stored row
            # is already the new state, so only an action-style note is possible.
            log_action(user=request.user, obj=obj, description=str(message)[:300] or "Changed")
        else:
            log_changed(user=request.user, obj=obj, before=before, hidden=self.audit_hidden_fields)
            obj._audit_before = snapshot(obj, self.audit_hidden_fields)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            log_deleted(user=request.user, obj=obj, hidden=self.audit_hidden_fields)
        return super().log_deletions(request, queryset)

    def save_formset(self, request, form, formset, change):
        """Inline rows: an event per created, changed and deleted row."""
        hidden = getattr(formset, "audit_hidden_fields", ())
        pks = [f.instance.pk for f in formset.initial_forms if f.instance.pk is not None]
        # Read back from the database: the forms have already written the
        # posted values onto their instances.
        stored = {obj.pk: obj for obj in formset.model._default_manager.filter(pk__in=pks)}
        before = {pk: snapshot(obj, hidden) for pk, obj in stored.items()}
        for deleted_form in formset.deleted_forms:
            # Logged first: a deleted instance loses its primary key.
            if deleted_form.instance.pk in stored:
                log_deleted(user=request.user, obj=stored[deleted_form.instance.pk], hidden=hidden)
        super().save_formset(request, form, formset, change)
        for obj in formset.new_objects:
            log_created(user=request.user, obj=obj, hidden=hidden)
        for obj, _fields in formset.changed_objects:
            log_changed(user=request.user, obj=obj, before=before.get(obj.pk, {}), hidden=hidden)

    def history_view(self, request, object_id, extra_context=None):
        from django.contrib.admin.utils import unquote
        from django.urls import reverse

        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if obj is not None:
            context["audit_events"] = events_for(obj)[:200]
            context["audit_trail_url"] = (
                reverse(f"{self.admin_site.name}:core_auditevent_changelist")
                + f"?model={model_label(obj)}&object_id={obj.pk}"
            )
        return super().history_view(request, object_id, context)
