"""Worker threads for handlers. A handler that hangs keeps its thread (Python cannot stop a thread),
so the pool starts a replacement for each one declared hung: a few stuck handlers never starve
the other sessions. A replaced worker ends once its handler finally returns."""

from __future__ import annotations

import queue
import threading


class WorkerPool:
    def __init__(self, size: int, name: str = "handler"):
        self.size = size
        self.name = name
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._serial = 0
        self._retire = 0  # workers to end, one per hung handler that came back
        self.hung = 0
        for _ in range(size):
            self._start()

    def _start(self):
        with self._lock:
            self._threads += 1
            self._serial += 1
            serial = self._serial
        threading.Thread(target=self._work, name=f"{self.name}-{serial}", daemon=True).start()

    def submit(self, task) -> None:
        self._tasks.put(task)

    def declare_hung(self) -> None:
        """The calling code's task is stuck in a handler: another worker takes its place."""
        with self._lock:
            self.hung += 1
        self._start()

    def returned_from_hang(self) -> None:
        with self._lock:
            self.hung -= 1
            self._retire += 1

    def close(self) -> None:
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._tasks.put(None)

    def _work(self):
        while True:
            task = self._tasks.get()
            if task is None:
                break
            task()
            with self._lock:
                if self._retire > 0:
                    self._retire -= 1
                    self._threads -= 1
                    return
        with self._lock:
            self._threads -= 1
