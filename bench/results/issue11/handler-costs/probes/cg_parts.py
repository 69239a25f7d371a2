import sys
exec(open("/tmp/probe/inproc.py").read().split("import cProfile, pstats, collections")[0])
VARIANT = sys.argv[4]
if VARIANT == "trivial_view":
    from chunky_redis.protocols import chunky
    from chunky_redis.protocols.base import json_response
    def put(self, request, upload_id=None):
        request.read()
        return json_response({"upload_id": "a" * 32, "offset": 65536, "expires": "2026-11-27T08:00:00Z"})
    chunky.ChunkedUploadView.put = put
    # call N times on the same URL (uid None path)
    def run():
        for i in range(N):
            st, b = call("PUT", "/upload/", data, {"CONTENT_TYPE": "application/octet-stream", "HTTP_CONTENT_RANGE": f"bytes 0-{CHUNK-1}/{CHUNK}", "HTTP_CONTENT_DISPOSITION": 'attachment; filename="bench.bin"'})
            assert st.startswith("200"), st
run()
