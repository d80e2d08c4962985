"""The read-ahead and writer threads of predict.py's video path: order kept, errors raised in the caller, no hang."""
import threading
import time

import pytest

from utils.threads import ReadAhead, Worker


def test_read_ahead_keeps_order_and_raises_the_readers_error_in_place():
    def items():
        yield from range(5)
        raise OSError('frame 5: truncated')
    seen = []
    with pytest.raises(OSError, match='frame 5: truncated'):
        for item in ReadAhead(items(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_read_ahead_stops_reading_when_closed_early():
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]
    reader = ReadAhead(endless(), depth=2)
    assert next(reader) == 0
    reader.close()                                   # returns: the thread is not stuck on the full queue
    assert not reader.thread.is_alive() and len(produced) <= 5


def test_worker_runs_in_order_and_its_error_reaches_the_submitter():
    done = []
    worker = Worker(done.append)
    for i in range(6):
        worker.submit(i)
    worker.close()
    assert done == list(range(6))

    def fail(item):
        if item == 2:
            raise ValueError('out.mp4: disk full')
        time.sleep(0.01)
    worker = Worker(fail, depth=1)
    with pytest.raises(ValueError, match='disk full'):
        for i in range(100):                         # the error surfaces at a later submit, or at close
            worker.submit(i)
        worker.close()


def test_worker_abort_does_not_wait_for_the_queue():
    gate = threading.Event()
    worker = Worker(lambda item: gate.wait(5), depth=1)
    worker.submit(1)
    start = time.perf_counter()
    gate.set()
    worker.abort()
    assert time.perf_counter() - start < 5
