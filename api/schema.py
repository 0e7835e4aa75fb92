"""OpenAPI post-processing: every operation documents the shared error shape."""

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "example": "validation_error"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "Validation errors only: field name to messages.",
                    "additionalProperties": True,
                },
            },
        }
    },
}

ERRORS = {
    "400": "Invalid input (validation_error) or a malformed body (parse_error).",
    "401": "Missing, invalid, expired or revoked token (WWW-Authenticate: Bearer).",
    "403": "Authenticated but not allowed (e.g. a session request without a CSRF token).",
    "404": "No such record, or one outside your clinics.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "429": "Throttled; see the Retry-After header.",
}
WRITE_ERRORS = {
    "413": "The request body is larger than the limit.",
    "415": "Unsupported Content-Type.",
    "422": "Idempotency-Key reused with a different request.",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    # Request bodies reject unknown fields (api.serializers.StrictMixin): say so.
    for name, component in schemas.items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    schemas["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            errors = dict(ERRORS)
            if method in ("post", "put", "patch"):
                errors.update(WRITE_ERRORS)
            if path.endswith("/auth/tokens") and method == "post":
                errors.pop("403", None)
            responses = operation.setdefault("responses", {})
            for code, description in errors.items():
                if code not in responses:
                    responses[code] = {"description": description, "content": {"application/json": {"schema": ref}}}
            responses["429"].setdefault("headers", RETRY_AFTER)
    return result
