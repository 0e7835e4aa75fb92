from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from inference.models import OUT_OF_DISTRIBUTION_WARNING

from . import permissions, selectors


@login_required
@require_GET
def home(request):
    images = selectors.recent_images_for(request.user)
    return render(request, "cases/home.html", {"images": images, "ood_warning": OUT_OF_DISTRIBUTION_WARNING})


@login_required
@require_GET
def image_file(request, image_id):
    """The image's bytes, for users who may see its patient; 404 for anyone else."""
    image = permissions.get_image_or_404(request.user, image_id)
    content_type = {"JPEG": "image/jpeg", "PNG": "image/png"}.get(image.image_format, "application/octet-stream")
    response = FileResponse(image.image.open("rb"), content_type=content_type)
    # Clinical images must not linger in shared or proxy caches.
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_GET
def prediction_heatmap(request, prediction_id):
    """The prediction's Grad-CAM overlay (PNG), for users who may see its image; 404 otherwise."""
    prediction = permissions.get_prediction_or_404(request.user, prediction_id)
    if not prediction.heatmap:
        raise Http404("This prediction has no heatmap.")
    response = FileResponse(prediction.heatmap.open("rb"), content_type="image/png")
    # Derived from a clinical image: as private as the image itself.
    response["Cache-Control"] = "private, no-store"
    return response
