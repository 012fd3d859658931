"""Running a model for concurrent requests: each request's rows are queued, and a worker runs one
onnxruntime call over all requests waiting at that moment (up to the maximum batch size).

Under load this turns many small calls into few large ones; with one request waiting it adds no
delay (the worker never waits for a batch to fill). onnxruntime releases the GIL, so the call
runs in a thread while the event loop keeps receiving requests.
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
    hand-off) for models that take well under a millisecond, but it blocks the loop meanwhile.
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

    def run_sync(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.artifact.session.run(self._output_names, inputs)
        return dict(zip(self._output_names, results))

    def start(self) -> None:
        if self.batching and not self._tasks:
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
        loop = asyncio.get_running_loop()
        if not self.batching:
            self._on_batch(next(iter(inputs.values())).shape[0])
            return await self._run(inputs)
        rows = next(iter(inputs.values())).shape[0]
        key = tuple((name, a.shape[1:]) for name, a in sorted(inputs.items()))
        pending = _Pending(inputs, rows, key, loop.create_future())
        self._queue.append(pending)
        self._on_queue_length(len(self._queue))
        assert self._wakeup is not None, "start() the runner before infer()"
        self._wakeup.set()
        return await pending.future

    def _take_batch(self) -> list[_Pending]:
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
            self._on_batch(sum(p.rows for p in batch))
            if len(batch) == 1:
                inputs = batch[0].inputs
            else:
                inputs = {
                    name: np.concatenate([p.inputs[name] for p in batch])
                    for name in batch[0].inputs
                }
            try:
                outputs = await self._run(inputs)
            except Exception as e:  # A failed run fails every request in the batch.
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            start = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result({n: a[start : start + p.rows] for n, a in outputs.items()})
                start += p.rows
