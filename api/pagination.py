from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

from core.audit import mark_listed


class Pagination(PageNumberPagination):
    """``?page=2&page_size=100``; every list answers {count, next, previous, results}.

    A malformed page or page_size is a 400, not silently replaced by a default.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()

    def _positive(self, request, name):
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            raise ValidationError({name: ["Must be a positive integer."]})
        return int(raw)

    def get_page_size(self, request):
        size = self._positive(request, self.page_size_query_param)
        return self.page_size if size is None else min(size, self.max_page_size)

    def paginate_queryset(self, queryset, request, view=None):
        self._positive(request, self.page_query_param)
        page = super().paginate_queryset(queryset, request, view)
        # The rows shown go on the read audit (core.middleware) when they are patient data.
        mark_listed(request, page or [])
        return page

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
        return parameters
