"""The API client of scripts/stack-check.sh: stdlib only, run on the host against the stack's web port.

    python3 scripts/stack_client.py BASE_URL token USERNAME PASSWORD      -> prints a device token
    python3 scripts/stack_client.py BASE_URL lesion TOKEN                 -> prints a new lesion's id
    python3 scripts/stack_client.py BASE_URL upload TOKEN LESION IMAGE    -> prints the new image's id
    python3 scripts/stack_client.py BASE_URL wait TOKEN SECONDS ID...     -> waits until each has a finished prediction

Requests carry ``X-Forwarded-Proto: https`` as the TLS-terminating proxy in
front of the stack would (docs/deployment.md). An upload refused because the
database is briefly gone (a 5xx, or no answer) is retried with the same
idempotency key, as the app does, so it is stored once.
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


def call(base, method, path, *, token=None, body=None, headers=None, timeout=30):
    headers = {**PROXY_HEADERS, **(headers or {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def retrying(attempt, seconds=120):
    """``attempt()`` until it answers; 5xx and connection errors are retried (a restart in progress)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or time.monotonic() > deadline:
                raise SystemExit(f"{exc.code} {exc.reason}: {exc.read()[:500]!r}") from None
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def multipart(fields: dict, file_field: str, path: Path):
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + path.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def main(base, command, *args):
    if command == "token":
        username, password = args
        body = {"username": username, "password": password, "device_name": "stack-check"}
        print(retrying(lambda: call(base, "POST", "/api/v1/auth/tokens", body=body))["token"])
    elif command == "lesion":
        (token,) = args
        key = str(uuid.uuid4())
        patient = {
            "medical_record_number": f"STACK-{key[:8]}",
            "given_name": "Stack",
            "family_name": "Check",
            "date_of_birth": "1970-01-01",
            "sex": "female",
        }
        patient = retrying(
            lambda: call(base, "POST", "/api/v1/patients", token=token, body=patient, headers={"Idempotency-Key": key})
        )
        lesion = {"anatomical_site": "posterior_torso", "description": "stack check"}
        path = f"/api/v1/patients/{patient['id']}/lesions"
        lesion = retrying(
            lambda: call(base, "POST", path, token=token, body=lesion, headers={"Idempotency-Key": str(uuid.uuid4())})
        )
        print(lesion["id"])
    elif command == "upload":
        token, lesion, image = args
        body, content_type = multipart({"modality": "dermoscopic"}, "file", Path(image))
        headers = {"Content-Type": content_type, "Idempotency-Key": str(uuid.uuid4())}
        path = f"/api/v1/lesions/{lesion}/images"
        print(retrying(lambda: call(base, "POST", path, token=token, body=body, headers=headers))["id"])
    elif command == "wait":
        token, seconds, *ids = args
        deadline = time.monotonic() + float(seconds)
        pending = set(ids)
        while pending:
            for image_id in sorted(pending):
                try:
                    prediction = call(base, "GET", f"/api/v1/images/{image_id}", token=token)["prediction"]
                except (urllib.error.HTTPError, OSError):
                    continue  # a restart in progress
                if prediction and prediction["status"] in ("succeeded", "failed"):
                    print(
                        f"{image_id}: {prediction['status']} {prediction.get('label')} "
                        f"p={prediction.get('probability_malignant')}"
                    )
                    pending.discard(image_id)
            if pending and time.monotonic() > deadline:
                raise SystemExit(f"no finished prediction after {seconds} s for: {' '.join(sorted(pending))}")
            time.sleep(1)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(*sys.argv[1:])
