"""Running a client's asynchronous requests from synchronous code: :func:`fan_out` spreads the
requests over a few workers, :func:`run_sync` runs a coroutine to completion with its callbacks
in the caller's thread (also inside a running event loop, as in a notebook), and
:func:`fan_out_sync` is the two together, closing the client's connections after — what every
OpenAI-compatible judge, oracle and generator does with its :class:`~.chat_client.ChatClient`."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Awaitable, Callable, Sequence, TypeVar

T = TypeVar("T")
K = TypeVar("K")
R = TypeVar("R")


def run_sync(make: Callable[[Callable[[T], None] | None], Awaitable[Any]], on_item: Callable[[T], None] | None) -> Any:
    """Run ``make(emit)`` to completion from synchronous code and return its result.

    ``emit(x)`` calls ``on_item(x)`` in the caller's thread (so callbacks may use thread-bound
    resources such as a SQLite connection). With no event loop running in this thread this is
    plain :func:`asyncio.run` (Ctrl-C cancels the work and raises KeyboardInterrupt). Inside a
    running loop (a notebook), the work runs on a private loop in a helper thread while this
    thread relays the callbacks.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make(on_item))

    events: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}
    holder: dict[str, Any] = {}

    def emit(x: T) -> None:
        events.put(("item", x))

    def worker() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        try:
            task = loop.create_task(make(emit if on_item is not None else None))
            holder["task"] = task
            outcome["value"] = loop.run_until_complete(task)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc
        finally:
            loop.close()
            events.put(("done", None))

    thread = threading.Thread(target=worker, name="realign-async", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, x = events.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "done":
                break
            assert on_item is not None
            on_item(x)
    except BaseException:
        loop, task = holder.get("loop"), holder.get("task")
        if loop is not None and task is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        thread.join(timeout=10)
        raise
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


async def fan_out(keys: Sequence[K], work: Callable[[K], Awaitable[R]], workers: int,
                  on_result: Callable[[int, R], None] | None = None) -> list[R]:
    """``work(key)`` once for each distinct key, by ``min(distinct keys, workers)`` tasks that
    take keys from one shared iterator (so a task backing off from a rate limit holds no queue
    of its own). Returns the results in the order of ``keys`` (repeated keys share one result);
    ``on_result(i, result)`` is called for every position ``i`` as its key completes. The first
    exception cancels the other tasks and is raised; the caller closes its connections."""
    positions: dict[K, list[int]] = {}
    for i, key in enumerate(keys):
        positions.setdefault(key, []).append(i)
    results: list[R | None] = [None] * len(keys)
    todo = iter(positions)

    async def worker() -> None:
        for key in todo:
            result = await work(key)
            for i in positions[key]:
                results[i] = result
                if on_result is not None:
                    on_result(i, result)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(len(positions), workers))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION) if tasks else (set(), set())
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results  # type: ignore[return-value]


def fan_out_sync(keys: Sequence[K], work: Callable[[K], Awaitable[R]], workers: int,
                 on_result: Callable[[int, R], None] | None, client: Any) -> list[R]:
    """:func:`fan_out` run from synchronous code (:func:`run_sync`: ``on_result(i, result)`` is
    called in the caller's thread; Ctrl-C cancels the requests in flight and raises
    KeyboardInterrupt), then ``client``'s connections closed (its ``aclose``, where it has one: a
    test's stand-in client may not). ``[]`` for no keys, without starting a loop."""
    keys = list(keys)
    if not keys:
        return []

    async def run(emit: Callable[[tuple[int, R]], None] | None) -> list[R]:
        try:
            return await fan_out(keys, work, workers, None if emit is None else (lambda i, result: emit((i, result))))
        finally:
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()

    return run_sync(run, None if on_result is None else (lambda pair: on_result(*pair)))
