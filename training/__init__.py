"""Model training for skincare: data, model, cross-validation, export.

Plain Python and TensorFlow; this package never imports Django.
"""
