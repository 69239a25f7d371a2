"""A final storage that hands off slowly, for killing Celery workers in the middle of it.

Loaded by worker processes by dotted path (CHUNKY_TEST_FINAL_STORAGE). Each save
writes the file in small pieces with pauses, so the hand-off takes about
CHUNKY_TEST_SLOW_SAVE_SECONDS; after the first piece it drops a marker file
``<upload_id>.<pid>`` in CHUNKY_TEST_SLOW_SAVE_MARKERS, telling the test that a
hand-off is under way and which process runs it.

Because it overrides ``_save``, finalization streams into it instead of renaming.
"""

import os
import time

from django.core.files.storage import FileSystemStorage

_PIECE = 64 * 1024


class SlowStorage(FileSystemStorage):
    def _save(self, name, content):
        seconds = float(os.environ.get("CHUNKY_TEST_SLOW_SAVE_SECONDS", "1.5"))
        markers = os.environ.get("CHUNKY_TEST_SLOW_SAVE_MARKERS")
        full = self.path(name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        size = content.size or 1
        pause = seconds * _PIECE / size
        marked = False
        # Write where FileSystemStorage would (same name), piece by piece, as a slow copy would.
        with open(full, "wb") as f:
            while piece := content.read(_PIECE):
                f.write(piece)
                f.flush()
                if markers and not marked:
                    upload_id = name.split("/")[-2]
                    with open(os.path.join(markers, f"{upload_id}.{os.getpid()}"), "w"):
                        pass
                    marked = True
                time.sleep(pause)
        return name
