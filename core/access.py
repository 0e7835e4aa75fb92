"""Telling the rest of the system that what a user may reach has changed.

Called, explicitly, by the code that changes a user's password, active flag
or clinic memberships (the portal's password form, the user and membership
admin). ``core`` and ``cases`` import nothing from ``api``, so the call goes
through the ``SKINCARE_USER_ACCESS_CHANGED_HOOK`` setting
(``api.tokens.user_access_changed``: revoke the device tokens the user is no
longer entitled to), as ``SKINCARE_IMAGE_STORED_HOOK`` does for uploads.

Paths that do not call it (a shell, ``manage.py changepassword``, a reset
form) are still covered: every token use checks the same entitlement
(docs/security.md); this call only makes the revocation immediate.
"""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string


def user_access_changed(user) -> None:
    import_string(settings.SKINCARE_USER_ACCESS_CHANGED_HOOK)(user)


def users_access_changed(user_ids) -> None:
    for user in get_user_model().objects.filter(pk__in={pk for pk in user_ids if pk is not None}):
        user_access_changed(user)
