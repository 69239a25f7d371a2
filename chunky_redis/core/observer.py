"""What the core tells an observer as uploads move (metrics, for one). No Django here.

The default observer does nothing. The Django layer passes one that counts
(chunky_redis/metrics.py) when ``CHUNKY_REDIS_METRICS`` is on; the core knows no
metrics library.
"""

from __future__ import annotations

from .records import Upload


class UploadObserver:
    """Every method is told of something already recorded, and does nothing here.

    An observer that raises is logged and ignored (``UploadContext.observe_chunk``):
    it can never fail a request.
    """

    def chunk_recorded(self, upload: Upload, received: int, seconds: float, created: bool) -> None:
        """A chunk's ``received`` bytes are stored and its offset recorded.

        ``created``: the chunk made the upload (``received`` is 0 for an upload created
        without data). ``seconds``: since the service began the chunk, its headers
        checked and before its lock, to its record.
        """


NO_OBSERVER = UploadObserver()
