"""Whether a model folder loads: ``python -m inference validate`` in a child process.

Nothing here imports TensorFlow: the child loads the model, so that a
crafted or huge file can neither crash the web process nor fill its memory.

The one seam: registration runs the check named by the setting
``SKINCARE_MODEL_LOAD_CHECK`` (a callable taking the model folder, or its
dotted path), ``check_model_loads`` when unset. Tests that register a model
for some other purpose set it to ``assume_model_loads``, which starts no
child process; nothing else should.
"""

import json
import logging
import os
import subprocess
import sys

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from ..runtime import METADATA_FILE

logger = logging.getLogger(__name__)

# Loading the shipped model takes about 10 s from a cold start (most of it
# importing TensorFlow; the ONNX-only check of the runtime image is quicker).
# The admin waits for the check inside one request, and gunicorn kills a
# request after 60 s (docker/Dockerfile).
# (SKINCARE_MODEL_CHECK_SECONDS, 50 by default.)
LOAD_CHECK_SETTING = "SKINCARE_MODEL_LOAD_CHECK"


def run_load_check(model_dir) -> dict:
    """The registry's load check of ``model_dir``: ``check_model_loads`` unless the setting names another."""
    check = settings.SKINCARE_MODEL_LOAD_CHECK or check_model_loads
    if isinstance(check, str):
        check = import_string(check)
    return check(model_dir)


def assume_model_loads(model_dir) -> dict:
    """The check's stand-in for tests about something else: no child process, always passes."""
    logger.info("Load check of %s skipped (%s)", model_dir, LOAD_CHECK_SETTING)
    return {"ok": True, "skipped": True}


def check_model_loads(model_dir) -> dict:
    """Run ``python -m inference validate`` on ``model_dir`` in a child process; its report, or ValidationError.

    The child loads the model with Keras' safe mode and the worker's
    Predictor, compares its input shape with model.json and runs it once;
    where TensorFlow is not installed (the runtime image) it checks the ONNX
    export the workers will run instead (``inference.__main__.validate``).
    """
    command = [sys.executable, "-m", "inference", "validate", str(model_dir)]
    # No GPU for a check: a web server's child must not claim the memory of
    # a GPU that workers use.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        proc = subprocess.run(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=settings.SKINCARE_MODEL_CHECK_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise ValidationError(
            f"Loading the model took longer than {settings.SKINCARE_MODEL_CHECK_SECONDS} s; it was not registered."
        ) from None
    report = _last_json_object(proc.stdout)
    if proc.returncode == 0 and report.get("ok"):
        return report
    logger.warning("Model check of %s failed (exit %s): %s", model_dir, proc.returncode, proc.stderr[-2000:])
    if "reason" not in report:
        raise ValidationError(
            f"Checking the model stopped without an answer (exit status {proc.returncode}): "
            "the model cannot be used and was not registered."
        )
    raise ValidationError(_check_failure_message(report, str(model_dir)))


def _last_json_object(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else {}
    return {}


def _check_failure_message(report: dict, model_dir: str) -> str:
    # The child's messages name the temporary folder of an upload: meaningless to the admin.
    detail = str(report.get("error", "")).replace(model_dir + os.sep, "").replace(model_dir, "the model folder")
    detail = detail if len(detail) <= 400 else detail[:400] + "…"
    reason = report["reason"]
    if reason == "not_keras":
        return f"The file {report.get('file', 'model.keras')} is not a Keras model ({detail})."
    if reason == "input_shape":
        shape, size = report.get("input_shape"), report.get("input_size")
        if isinstance(shape, list) and len(shape) == 4 and shape[1] == shape[2] and shape[3] == 3:
            return f"The model takes {shape[1]}×{shape[2]} images but {METADATA_FILE} says {size}."
        return f"The model's input shape is {shape}; {METADATA_FILE} says images of {size}×{size} with 3 channels."
    if reason == "not_finite":
        return "The model's output on a blank image is not a finite number: it cannot be used."
    if reason == "onnx":
        return f"The ONNX export {report.get('file', 'model.onnx')} cannot be used: {detail}"
    if reason == "needs_tensorflow":
        # The runtime image has no TensorFlow (docs/deployment.md): such a model
        # could not run on its workers either.
        return (
            f"This model needs TensorFlow: {detail}. Register it from the ml image "
            "(python manage.py register_model), or export it to ONNX first."
        )
    if reason == "metadata":
        return f"Invalid model metadata: {detail}"
    return f"The model cannot be used: {detail}"
