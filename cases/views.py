from django.contrib.auth.decorators import login_required
from django.http import FileResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import permissions, selectors


@login_required
@require_GET
def home(request):
    images = selectors.recent_images_for(request.user)
    return render(request, "cases/home.html", {"images": images})


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
