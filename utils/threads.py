"""Overlap of reading, computing and writing: an iterator read ahead in a thread, and a thread that consumes
work items in order. An exception in either thread is raised in the caller's (at the next item, submit or
close), never lost and never a hang: queues are bounded and every wait checks whether the other side is still
there. Decoding, OpenCV, numpy and the inference backends release the GIL, so the threads do run alongside."""
import queue
import threading

POLL = 0.1        # seconds between checks of the other side while waiting on a queue


class ThreadEnded(RuntimeError):
    """The other thread is gone without a result (it was aborted)."""


class ReadAhead:
    """Iterates `iterable` in a daemon thread, up to `depth` items ahead of the consumer."""

    def __init__(self, iterable, depth=2):
        self.queue, self.stop = queue.Queue(depth), threading.Event()
        self.thread = threading.Thread(target=self.fill, args=(iter(iterable),), daemon=True)
        self.thread.start()

    def fill(self, items):
        try:
            for item in items:
                if not self.put(('item', item)):
                    return
            self.put(('end', None))
        except BaseException as e:                   # noqa: B902 (handed to the consumer)
            self.put(('error', e))

    def put(self, entry):
        while not self.stop.is_set():
            try:
                self.queue.put(entry, timeout=POLL)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            try:
                kind, value = self.queue.get(timeout=POLL)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.queue.empty():
                    raise ThreadEnded('the reading thread ended') from None
        if kind == 'error':
            raise value
        if kind == 'end':
            self.put(('end', None))                 # stays exhausted
            raise StopIteration
        return value

    def close(self):
        self.stop.set()
        self.thread.join()


class Worker:
    """Calls `work(item)` in a thread for each submitted item, in order, with up to `depth` items waiting."""

    def __init__(self, work, depth=2):
        self.work, self.queue, self.error = work, queue.Queue(depth), None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.drain, daemon=True)
        self.thread.start()

    def drain(self):
        while not self.stop.is_set():
            try:
                item = self.queue.get(timeout=POLL)
            except queue.Empty:
                continue
            if item is self.queue:                   # the end marker
                return
            try:
                self.work(item)
            except BaseException as e:               # noqa: B902 (raised in the submitter)
                self.error = e
                return

    def check(self):
        if self.error is not None:
            raise self.error

    def submit(self, item):
        while True:
            self.check()
            if not self.thread.is_alive():
                raise ThreadEnded('the writing thread ended')
            try:
                self.queue.put(item, timeout=POLL)
                return
            except queue.Full:
                pass

    def close(self):
        """Waits for every submitted item; raises the first error of the thread."""
        self.submit(self.queue)
        self.thread.join()
        self.check()

    def abort(self):
        self.stop.set()
        self.thread.join()
