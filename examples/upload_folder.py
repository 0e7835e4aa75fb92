"""Upload a folder of lesion photos for one patient and print each prediction
as it arrives: an example client for the skincare REST API (docs/api.md).

    python examples/upload_folder.py --url http://127.0.0.1:8000 \\
        --username dr.alvarez --patient <patient uuid> [--lesion <lesion uuid> | --site posterior_torso] \\
        [--modality dermoscopic] FOLDER

Needs only `requests`. The password is asked for (or read from
SKINCARE_PASSWORD); the device token is revoked again at the end.
Each photo gets a client id derived from its content, so running the script
again after an interruption never uploads a photo twice.
"""

import argparse
import getpass
import hashlib
import os
import sys
import time
import uuid
from pathlib import Path

import requests

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
NAMESPACE = uuid.UUID("5d6f1c1e-8f0b-4c55-9a3e-2b7a4f0e6d21")


class ApiError(Exception):
    pass


class Client:
    def __init__(self, base_url):
        self.base = base_url.rstrip("/")
        self.session = requests.Session()

    def request(self, method, path, *, retries=5, **kwargs):
        """One API call, retried on network errors, 429 and 5xx (safe: writes carry idempotency keys)."""
        url = path if path.startswith("http") else f"{self.base}{path}"
        for attempt in range(retries + 1):
            try:
                response = self.session.request(method, url, timeout=60, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == retries:
                    raise ApiError(f"{method} {path}: {exc}") from exc
                time.sleep(2**attempt)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if attempt == retries:
                    break
                time.sleep(float(response.headers.get("Retry-After", 2**attempt)))
                if "files" in kwargs:  # re-send the file from its start
                    for _, (_, handle, _) in kwargs["files"].items():
                        handle.seek(0)
                continue
            break
        if response.status_code >= 400:
            error = response.json().get("error", {}) if response.content else {}
            fields = f" {error['fields']}" if error.get("fields") else ""
            code, message = error.get("code"), error.get("message")
            raise ApiError(f"{method} {path}: {response.status_code} {code}: {message}{fields}")
        return response

    def sign_in(self, username, password):
        credentials = {"username": username, "password": password, "device_name": "upload_folder.py"}
        body = self.request("POST", "/api/v1/auth/tokens", json=credentials).json()
        self.session.headers["Authorization"] = f"Bearer {body['token']}"
        return body["id"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", required=True)
    parser.add_argument("--patient", required=True, help="the patient's UUID")
    parser.add_argument("--lesion", help="an existing lesion's UUID; default: create one")
    parser.add_argument("--site", default="unknown", help="anatomical site of a new lesion")
    parser.add_argument("--modality", default="dermoscopic", choices=["dermoscopic", "clinical"])
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for all predictions")
    args = parser.parse_args()

    photos = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        sys.exit(f"No JPEG or PNG files in {args.folder}")
    password = os.environ.get("SKINCARE_PASSWORD") or getpass.getpass(f"Password for {args.username}: ")

    api = Client(args.url)
    token_id = api.sign_in(args.username, password)
    try:
        lesion = args.lesion
        if lesion is None:
            lesion = api.request(
                "POST",
                f"/api/v1/patients/{args.patient}/lesions",
                json={"anatomical_site": args.site, "description": f"Uploaded from {args.folder.name}"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            ).json()["id"]
            print(f"created lesion {lesion}")

        pending = {}  # image id -> (photo, etag)
        for photo in photos:
            data = photo.read_bytes()
            client_id = uuid.uuid5(NAMESPACE, f"{lesion}:{hashlib.sha256(data).hexdigest()}")
            with photo.open("rb") as handle:
                mime = "image/png" if photo.suffix.lower() == ".png" else "image/jpeg"
                response = api.request(
                    "POST",
                    f"/api/v1/lesions/{lesion}/images",
                    files={"file": (photo.name, handle, mime)},
                    data={"modality": args.modality, "client_id": str(client_id)},
                )
            image = response.json()
            replay = " (already uploaded)" if response.headers.get("Idempotent-Replayed") else ""
            print(f"uploaded {photo.name} -> image {image['id']}{replay}")
            pending[image["id"]] = (photo, None)

        deadline = time.monotonic() + args.timeout
        delay = 1.0
        while pending and time.monotonic() < deadline:
            for image_id, (photo, etag) in list(pending.items()):
                headers = {"If-None-Match": etag} if etag else {}
                response = api.request("GET", f"/api/v1/images/{image_id}", headers=headers)
                if response.status_code == 304:
                    continue
                prediction = response.json()["prediction"]
                pending[image_id] = (photo, response.headers.get("ETag"))
                if prediction and prediction["status"] in ("succeeded", "failed"):
                    del pending[image_id]
                    print(describe(photo, prediction), flush=True)
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
        for photo, _ in pending.values():
            print(f"{photo.name}: no prediction yet (still queued)")
    finally:
        api.request("DELETE", f"/api/v1/auth/tokens/{token_id}")


def describe(photo, prediction):
    if prediction["status"] == "failed":
        return f"{photo.name}: prediction failed: {prediction['error']}"
    flag = "  ** needs specialist review **" if prediction["uncertain"] else ""
    return (
        f"{photo.name}: {prediction['label']} (p(malignant)={prediction['probability_malignant']:.3f}, "
        f"confidence={prediction['confidence']:.2f}, model {prediction['model_version']}){flag}"
    )


if __name__ == "__main__":
    main()
