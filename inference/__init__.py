"""Model registry, predictions and the inference task.

Importing this package (or inference.runtime) must not import Django models or
TensorFlow: ``python -m inference predict`` runs with neither a database nor
Django settings, and the Celery parent process must never load a model.
"""
