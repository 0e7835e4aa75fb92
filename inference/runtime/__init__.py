"""Loading a model folder and running it: shared by the worker and the CLI.

No Django here, and no model runtime at import time: ONNX Runtime or
TensorFlow is imported only when a Predictor is built (see ``predictor``).

- ``model_format``: model.json, its validation, ModelFileError, the shipped model's folder.
- ``decision``: the decision rule (threshold, uncertain band) and the image-quality gate.
- ``backends``: which runtime runs a model, and its threads; ``onnx_backend`` and ``keras_backend`` run it.
- ``heatmaps``: Grad-CAM from an ONNX export's output in numpy, and the PNG overlay.
- ``predictor``: the Predictor that ties them together.

The names other modules use are re-exported here (``from inference.runtime import Predictor``).
"""

from .backends import BACKENDS, inference_threads, requested_backend
from .decision import IMAGE_QUALITY, UNCERTAIN_BAND, Result, decide, featureless, with_image_quality
from .heatmaps import HEATMAP_MAX_ALPHA, gradcam_heatmap, heatmap_png
from .model_format import (
    METADATA_FILE,
    MODELS_DIR,
    ModelFileError,
    read_metadata,
    shipped_model_dir,
    validate_metadata,
)
from .predictor import Predictor

__all__ = [
    "BACKENDS",
    "HEATMAP_MAX_ALPHA",
    "IMAGE_QUALITY",
    "METADATA_FILE",
    "MODELS_DIR",
    "ModelFileError",
    "Predictor",
    "Result",
    "UNCERTAIN_BAND",
    "decide",
    "featureless",
    "gradcam_heatmap",
    "heatmap_png",
    "inference_threads",
    "read_metadata",
    "requested_backend",
    "shipped_model_dir",
    "validate_metadata",
    "with_image_quality",
]
