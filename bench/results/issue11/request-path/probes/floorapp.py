"""The floor: gunicorn's gevent worker, read the body, answer JSON. No Django, no Redis."""
import json, os, hashlib
MODE = os.environ.get("FLOOR_MODE", "read")
def app(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(n) if n else b""
    rng = environ.get("HTTP_CONTENT_RANGE", "bytes 0-0/0")
    end = int(rng.split()[1].split("-")[1].split("/")[0])
    if MODE == "md5":
        hashlib.md5(body).digest()
    data = json.dumps({"upload_id": "f" * 32, "offset": end + 1, "expires": None}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
