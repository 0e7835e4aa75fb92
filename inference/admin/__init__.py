"""The inference app's admin, one module per concern.

- ``model_versions``: registering, activating, rolling back and shadowing models.
- ``predictions``: reviewing what the models predicted.
- ``monitoring``: how each model version performs in practice.
- ``site_validation``: a model version on one clinic's biopsy-confirmed images.
- ``site_jobs``: site adaptation runs on the training queue.
"""

from . import model_versions, monitoring, predictions, site_jobs  # noqa: F401  (registers the admins)
