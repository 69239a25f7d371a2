"""Floor probe: gunicorn gevent, read the body (gunicorn's reader, or recv_into past it), md5 it,
pwrite it. FLOOR_MODE=read|recvinto. A probe only: recvinto uses gunicorn's private objects."""
import hashlib, json, os
MODE = os.environ.get("FLOOR_MODE", "read")
BLOCK = 1 << 20
def app(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    rng = environ.get("HTTP_CONTENT_RANGE", "bytes 0-0/0")
    first = int(rng.split()[1].split("-")[0])
    end = int(rng.split()[1].split("-")[1].split("/")[0])
    md5 = hashlib.md5()
    fd = os.open("/tmp/probe/work/floor2-%d.bin" % os.getpid(), os.O_WRONLY | os.O_CREAT, 0o600)
    pos, left = first, n
    if MODE == "recvinto":
        body = environ["wsgi.input"]
        reader = body.reader
        held = body.buf.getvalue() + reader.unreader.take_buffered()
        assert len(held) <= left
        if held:
            md5.update(held); os.pwrite(fd, held, pos); pos += len(held); left -= len(held)
        sock = environ["gunicorn.socket"]
        buf = bytearray(BLOCK); view = memoryview(buf)
        while left:
            want = min(BLOCK, left); got = 0
            while got < want:
                k = sock.recv_into(view[got:want])
                if not k: raise OSError("short body")
                got += k
            md5.update(view[:got]); os.pwrite(fd, view[:got], pos); pos += got; left -= got
        reader.length = 0
    else:
        read = environ["wsgi.input"].read
        while left:
            data = read(min(BLOCK, left))
            if not data: break
            md5.update(data); os.pwrite(fd, data, pos); pos += len(data); left -= len(data)
    os.close(fd)
    data = json.dumps({"upload_id": "f" * 32, "offset": end + 1, "expires": None}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
