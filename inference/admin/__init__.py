"""The inference app's admin, one module per concern.

- ``model_versions``: registering, activating, rolling back and shadowing models.
- ``predictions``: reviewing what the models predicted.
- ``monitoring``: how each model version performs in practice.
"""

from . import model_versions, monitoring, predictions  # noqa: F401  (registers the admins)
