"""The embedded broker: kombu's filesystem transport, made safe for several processes.

kombu's `filesystem` transport writes a message file in place while a consumer in another
process may already move and read it: the reader then gets a half-written file and the
worker dies on a JSONDecodeError (seen with `make demo`'s beat + workers). Here a message is
written to a hidden temporary name and renamed into place (atomic on POSIX), and a consumer
claims a file by renaming it into the processed folder on the same filesystem (atomic too,
so two consumers can never both take it) before reading and deleting it.

Used as `r1fs://` (registered in r1lab/celery.py) when REDIS_URL is unset.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads
from queue import Empty


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: `_get` only picks names whose suffix after the first dot is
        # "<queue>.msg", so the temporary file is never taken.
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(tmp, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        suffix = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != suffix:
                continue
            claimed = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another consumer claimed it first
            with open(claimed, "rb") as fh:
                payload = fh.read()
            if not self.store_processed:
                os.remove(claimed)
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel
