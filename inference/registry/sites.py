"""Site models: the rules for activating a model for one clinic (and optionally one device).

A site model comes from ``python -m training adapt`` (its model.json has a
``site_adaptation`` section) and is registered with a clinic scope. Activating
it needs an ML admin and a local cross-validated sensitivity of at least
``MIN_SITE_SENSITIVITY``; a site-adapted model is never made the global one.
The switches themselves are in ``lifecycle`` (scope-aware activation, and
``withdraw_site_model`` back to the global model; rollback and
shadow mode per scope). No TensorFlow here.
"""

from django.core.exceptions import PermissionDenied, ValidationError

from cases.permissions import is_ml_admin

MIN_SITE_SENSITIVITY = 0.90


def site_cv_sensitivity(metadata: dict) -> float | None:
    """The site's nested cross-validated sensitivity recorded by ``training adapt``; None if absent."""
    value = ((metadata or {}).get("site_adaptation") or {}).get("cv", {}).get("sensitivity")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def check_activation(version, user) -> None:
    """Raise PermissionDenied / ValidationError when ``version`` may not be activated in its scope."""
    adapted = "site_adaptation" in (version.metadata or {})
    if not version.is_site_model:
        if adapted:
            raise ValidationError(
                f"{version} was adapted to one site; register it with that clinic "
                "(manage.py register_model DIR --clinic NAME) to activate it there."
            )
        return
    check_site_switch(user)
    sensitivity = site_cv_sensitivity(version.metadata)
    if sensitivity is None:
        raise ValidationError(f"{version} records no local cross-validated sensitivity; it cannot serve a site.")
    if sensitivity < MIN_SITE_SENSITIVITY:
        raise ValidationError(
            f"{version}'s local cross-validated sensitivity is {sensitivity:.3f}, below "
            f"{MIN_SITE_SENSITIVITY:.2f}: it is not activated for {version.scope_label}."
        )


def check_site_switch(user) -> None:
    """Activating, withdrawing, rolling back or shadowing a site model: ML admins only (PermissionDenied)."""
    if user is None or not is_ml_admin(user):
        raise PermissionDenied("Only ML admins may switch a site's model (activate, shadow, roll back, withdraw).")
