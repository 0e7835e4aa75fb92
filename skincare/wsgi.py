import os

from django.core.wsgi import get_wsgi_application

from skincare.environment import prepare_process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skincare.settings.dev")

prepare_process()
application = get_wsgi_application()
