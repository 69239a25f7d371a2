"""An upload made of other uploads (tus concatenation). No Django here.

The new upload lists its parts in ``extra[CONCAT_PARTS]`` and receives no byte of its own:
once every part is complete it is recorded complete (offset == length, the sum of the parts')
and handed to post-processing, where the worker writes its bytes from the parts, computing its
digest as it goes (processing/concat.py), then removes the parts. It may be created before its
parts are complete: each part then names it (``extra[CONCAT_FINALS]``), and the request that
completes the last part, or a later ``finish_concatenation()``, hands it on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from . import durability
from . import errors as exc
from .context import UploadContext, raise_for, require_uploading
from .records import wrap_errors
from .store import CONCAT_PARTS, PROCESSING, UNKNOWN_LENGTH, UPLOADING, Upload

CONCAT_FINALS = "concat_finals"  # extra of a part: the concatenations waiting for it


class Concatenation:
    context: UploadContext

    def concatenate(
        self,
        *,
        owner: str,
        part_ids: Sequence[str],
        max_bytes: int | None,
        filename: str = "",
        extra: dict[str, Any] | None = None,
        unfinished_ok: bool = False,
    ) -> Upload:
        """A new upload made of the owner's uploads in progress, in this order.

        A part may appear more than once. Unless ``unfinished_ok``, every part must have all
        its bytes (else UploadIncomplete); then the new upload is handed to post-processing
        at once, and the parts leave their owner's quota.
        """
        if not part_ids:
            raise exc.BadConcatenation("A concatenation needs at least one part.")
        parts = self._parts(owner, part_ids)
        unfinished = [p for p in parts if not p.length_known or p.offset < p.size]
        if unfinished and not unfinished_ok:
            raise exc.UploadIncomplete(unfinished[0].offset, unfinished[0].size)
        known = all(p.length_known for p in parts)
        size = sum(p.size for p in parts) if known else UNKNOWN_LENGTH
        if max_bytes is not None and size > max_bytes:
            raise exc.TooLarge(size, max_bytes)
        store, now = self.context.store, self.context.store.now()
        upload = Upload(
            upload_id=uuid.uuid4().hex,
            owner=owner,
            filename=filename,
            size=size,
            created=now,
            expires=now + self.context.policy.expiration_ms,
            algorithm=self.context.policy.algorithm,
            extra={**(extra or {}), CONCAT_PARTS: list(part_ids)},
        )
        if not unfinished:
            upload.status, upload.offset, upload.queued = PROCESSING, size, now
            store.create(upload)
            self._hand_on(upload, parts)
            return upload
        store.create(upload)
        for part in {p.upload_id: p for p in parts}.values():
            finals = [*part.extra.get(CONCAT_FINALS, []), upload.upload_id]
            store.transition(
                part.upload_id, UPLOADING, UPLOADING, extra={**part.extra, CONCAT_FINALS: finals}
            )
        # A part completed while it was being named is caught here (its request read the
        # part's record before the name was there).
        return self.finish_concatenation(owner=owner, upload_id=upload.upload_id)

    def finish_concatenation(self, *, owner: str, upload_id: str) -> Upload:
        """Hand on a concatenation whose parts are all complete now; else leave it waiting.

        Safe to call from several requests at once: the status moves once.
        """
        upload = self._status(owner, upload_id)
        if upload.status != UPLOADING or not upload.extra.get(CONCAT_PARTS):
            return upload
        try:
            parts = self._parts(owner, upload.extra[CONCAT_PARTS])
        except (exc.UploadNotFound, exc.UploadExpired, exc.AlreadyComplete, exc.UploadFailed):
            return upload  # a part is gone: the concatenation waits until it expires
        if any(not p.length_known or p.offset < p.size for p in parts):
            return upload
        size = sum(p.size for p in parts)
        store, now = self.context.store, self.context.store.now()
        with wrap_errors():
            store.processing.add(upload_id, now)  # indexed first, as mark_processing() does
        won = store.transition(
            upload_id,
            UPLOADING,
            PROCESSING,
            keep_ms=store.completed_retention_ms,
            size=size,
            offset=size,
            queued=now,
        )
        if won != "ok":
            return self._status(owner, upload_id)
        with wrap_errors():
            store.expiries.remove(upload_id)
        upload.status, upload.size, upload.offset, upload.queued = PROCESSING, size, size, now
        self._hand_on(upload, parts)
        return upload

    def _hand_on(self, upload: Upload, parts: list[Upload]) -> None:
        for part in {p.upload_id: p for p in parts}.values():
            self.context.release_quota(part)
        self.context.hand_off(upload)

    def _parts(self, owner: str, part_ids: Sequence[str]) -> list[Upload]:
        parts = []
        for part_id in part_ids:
            part = self._status(owner, part_id)
            require_uploading(part)
            parts.append(part)
        return parts

    def _status(self, owner: str, upload_id: str) -> Upload:
        code, upload = self.context.store.acquire(upload_id, owner, "", lock=False)
        raise_for(code)
        assert upload is not None
        return durability.reported(upload, self.context.policy.boot)
