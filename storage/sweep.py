"""Going through every message on a queue once, from outside its consumers.

Azure queues can only be read in order by claiming: a peek shows at most 32 messages and
cannot delete, and deleting needs the pop receipt of a claim. So an operator's tool that must
find and remove some messages (a cancelled run's jobs, poison being requeued or purged) claims
everything, keeps what it wants to remove, and gives the rest back at once so that workers
are held up no longer than the sweep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from rolecall.schemas.errors import RolecallError
from rolecall.storage.clients import Message, Storage

#: Azure's most per receive
BATCH = 32


def sweep(
    storage: Storage, queue: str, act: Callable[[Message], bool], *, visibility_s: int
) -> int:
    """Claim every message on ``queue`` once and call ``act`` on it; delete those it returns
    True for and release the rest. Returns how many were deleted.

    ``visibility_s`` must outlast the sweep: a message whose claim lapses comes round again
    and is recognised by its id (its new pop receipt is kept for the release), but a worker
    may claim it in between. Whatever ``act`` raises ends the sweep after everything still
    held is released, the message it was acting on and the rest of its batch too.
    """
    deleted = 0
    held: dict[str, Message] = {}  # claimed and not deleted: released at the end
    gone: set[str] = set()
    try:
        while True:
            msgs = storage.receive(queue, max_messages=BATCH, visibility_s=visibility_s)
            fresh = [m for m in msgs if m.id not in held and m.id not in gone]
            for m in msgs:
                if m.id in held:
                    held[m.id] = m  # came round again: only the newest pop receipt is live
            if not fresh:
                return deleted
            held.update((m.id, m) for m in fresh)
            for m in fresh:
                if act(m):
                    storage.delete(m)
                    del held[m.id]
                    gone.add(m.id)
                    deleted += 1
    finally:
        for m in held.values():
            with contextlib.suppress(RolecallError):  # not ours any more: it reappears anyway
                storage.release(m)
