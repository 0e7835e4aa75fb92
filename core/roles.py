"""The one role rule that needs no clinical record: who may open the admin at all.

Everything else about who may see or change what is in ``cases.permissions``,
which re-exports this, so doors keep asking one module.
"""


def can_view_admin(user):
    """Any active staff user may look at the admin's pages (read-only unless a role says more)."""
    return bool(user.is_authenticated and user.is_active and user.is_staff)
