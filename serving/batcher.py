"""Running a model for concurrent requests: each request's rows are queued, and one onnxruntime
call runs over all requests waiting at that moment (up to the maximum batch size).

Under load this turns many small calls into few large ones; with one request waiting it adds no
delay (nothing waits for a batch to fill). Two ways to run the call:

- inline (the default): the requests that arrived in one turn of the event loop are run together
  at the end of that turn, on the loop's thread. No thread hand-off, so the least CPU per request;
  one server process then uses one core, and `--workers` adds cores.
- thread: a worker task hands each batch to a thread (onnxruntime releases the GIL), so the event
  loop keeps receiving requests during a long call, at the cost of a thread hand-off per batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from serving.artifact import Artifact


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    key: tuple
    future: asyncio.Future = field(repr=False)


class ModelRunner:
    """Runs one artifact's session; `batching=False` runs each request on its own.

    `inline=True` runs onnxruntime on the event loop's thread: cheaper per call (no thread
    hand-off), but it blocks the loop meanwhile.
    """

    def __init__(
        self,
        artifact: Artifact,
        *,
        max_batch_size: int,
        batching: bool = True,
        inline: bool = False,
        workers: int = 1,
        on_queue_length: Callable[[int], None] = lambda n: None,
        on_batch: Callable[[int], None] = lambda rows: None,
    ) -> None:
        self.artifact = artifact
        self.max_batch_size = max_batch_size
        self.batching = batching
        self.inline = inline
        self._output_names = [spec.name for spec in artifact.outputs]
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="onnxruntime")
        self._workers = workers
        self._queue: deque[_Pending] = deque()
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._on_queue_length = on_queue_length
        self._on_batch = on_batch
        self._flush_scheduled = False

    def run_sync(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.artifact.session.run(self._output_names, inputs)
        return dict(zip(self._output_names, results))

    def start(self) -> None:
        if self.batching and not self.inline and not self._tasks:
            self._wakeup = asyncio.Event()
            self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._executor.shutdown(wait=True)

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    async def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.inline:
            return self.run_sync(inputs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run_sync, inputs)

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.batching:
            self._on_batch(next(iter(inputs.values())).shape[0])
            return await self._run(inputs)
        loop = asyncio.get_running_loop()
        if len(inputs) == 1:
            ((name, array),) = inputs.items()
            rows, key = array.shape[0], (name, array.shape[1:])
        else:
            rows = next(iter(inputs.values())).shape[0]
            key = tuple((name, a.shape[1:]) for name, a in sorted(inputs.items()))
        pending = _Pending(inputs, rows, key, loop.create_future())
        self._queue.append(pending)
        if self.inline:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
        else:
            self._on_queue_length(len(self._queue))
            assert self._wakeup is not None, "start() the runner before infer()"
            self._wakeup.set()
        return await pending.future

    def _flush(self) -> None:
        """Inline mode: runs everything queued during this turn of the loop, batch by batch."""
        self._flush_scheduled = False
        self._on_queue_length(len(self._queue))
        while self._queue:
            batch = [p for p in self._take_batch(report=False) if not p.future.cancelled()]
            if not batch:
                continue
            try:
                outputs = self.run_sync(self._merge(batch))
            except Exception as e:  # A failed run fails every request in the batch.
                self._fail(batch, e)
                continue
            self._answer(batch, outputs)
        self._on_queue_length(0)

    def _merge(self, batch: list[_Pending]) -> dict[str, np.ndarray]:
        self._on_batch(sum(p.rows for p in batch))
        if len(batch) == 1:
            return batch[0].inputs
        return {name: np.concatenate([p.inputs[name] for p in batch]) for name in batch[0].inputs}

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(error)

    @staticmethod
    def _answer(batch: list[_Pending], outputs: dict[str, np.ndarray]) -> None:
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(outputs)
            return
        start = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result({n: a[start : start + p.rows] for n, a in outputs.items()})
            start += p.rows

    def _take_batch(self, report: bool = True) -> list[_Pending]:
        """The oldest request and those behind it of the same shape, up to the batch limit."""
        first = self._queue.popleft()
        batch, rows = [first], first.rows
        while (
            self._queue
            and self._queue[0].key == first.key
            and rows + self._queue[0].rows <= self.max_batch_size
        ):
            item = self._queue.popleft()
            batch.append(item)
            rows += item.rows
        if report:
            self._on_queue_length(len(self._queue))
        return batch

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [p for p in self._take_batch() if not p.future.cancelled()]
            if not batch:
                continue
            try:
                outputs = await self._run(self._merge(batch))
            except Exception as e:  # A failed run fails every request in the batch.
                self._fail(batch, e)
                continue
            self._answer(batch, outputs)
