"""Owned background tasks: kept until done, a failure logged (never lost), all cancelled at close.

Used by the live adapters (:mod:`venues.tracking`) and the live engine runtime
(:class:`router.engine_live.LiveRuntime`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator
from typing import Any


class OwnedTasks:
    """A set of tasks its owner started. ``label`` names the owner in the error logged when one
    fails (``"<label>: task <name> failed"``), through ``logger``."""

    def __init__(self, logger: logging.Logger, label: str) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = logger
        self._label = label

    def spawn(self, coro: Awaitable[Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        if name is not None:
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("%s: task %s failed", self._label, task.get_name(), exc_info=task.exception())

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
