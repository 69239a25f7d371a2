"""Signal receivers used by the tests, in the test process and in real worker processes.

Each call is appended, as one JSON line, to the file named by CHUNKY_TEST_SIGNAL_LOG
(when set), so that a test can see what a separate worker process received.
Also the test storages that worker processes load by dotted path.
"""

import json
import os
import threading
import time

from django.core.files.storage import FileSystemStorage
from django.dispatch import receiver

from chunky_redis import signals

received: list[tuple[str, dict]] = []
_lock = threading.Lock()


def _record(name, kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k not in ("signal", "sender")}
    with _lock:
        received.append((name, kwargs))
    path = os.environ.get("CHUNKY_TEST_SIGNAL_LOG")
    if path:
        with open(path, "a") as f:
            # When it was sent (wall clock, which the test process shares): the fault suite
            # tells a signal sent before a record was lost from one sent after.
            line = {"signal": name, **kwargs, "logged_at": time.time()}
            f.write(json.dumps(line, default=str) + "\n")


@receiver(signals.upload_completed)
def on_completed(**kwargs):
    _record("upload_completed", kwargs)


@receiver(signals.chunky_upload_complete)
def on_chunky_complete(**kwargs):
    _record("chunky_upload_complete", kwargs)


@receiver(signals.upload_failed)
def on_failed(**kwargs):
    _record("upload_failed", kwargs)


@receiver(signals.upload_expired)
def on_expired(**kwargs):
    _record("upload_expired", kwargs)


class PausingStorage(FileSystemStorage):
    """A final storage for the kill tests: with CHUNKY_TEST_PAUSE_MARKER set, the first
    ``_save`` writes half of the file, creates the marker file and then waits (to be
    killed); once the marker exists, saves go through.

    Because it overrides ``_save``, finalization streams into it instead of renaming.
    """

    def _save(self, name, content):
        marker = os.environ.get("CHUNKY_TEST_PAUSE_MARKER")
        if not marker or os.path.exists(marker):  # pauses once, then saves normally
            return super()._save(name, content)
        full = self.path(name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        half = content.size // 2
        with open(full, "wb") as f:
            f.write(content.read(half))
        # Written under another name and renamed, so that the test never reads it half written.
        with open(marker + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {name}\n")
        os.replace(marker + ".tmp", marker)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError("PausingStorage was not killed")


class GatedUrlStorage(FileSystemStorage):
    """A final storage for the signal-once test: the first ``url()`` call, which
    finalization makes between the hand-off and the status change, creates
    ``paused`` in CHUNKY_TEST_GATE_DIR and waits there until ``resume`` exists."""

    def url(self, name):
        gate = os.environ["CHUNKY_TEST_GATE_DIR"]
        try:
            os.close(os.open(os.path.join(gate, "paused"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().url(name)  # not the first: no pause
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(gate, "resume")) and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().url(name)
