"""Loading batches in worker processes without ever hanging.

Each batch of keys is one task of a process pool: the workers build the samples and collate them (numpy), the
training process receives the arrays in order, `prefetch` batches per worker ahead. An exception in a worker
(a file that cannot be read, a bug) is raised here with its message; a worker that dies (killed, out of
memory) or a batch that takes longer than `timeout` seconds stops training with a DataLoadingError instead of
the silent wait of a lost queue. Files a dataset replaced by the next one (Sample.problems) are warned about
once each.
"""
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

TIMEOUT = 600        # seconds a batch may take before loading is declared stuck


class DataLoadingError(ValueError):
    """Loading stopped: a worker died or hung. The message says which batch and why."""


_worker = {}


def context():
    """Workers fork from a server process that has imported only the data modules: a fork of the training
    process itself would copy the locks of Paddle's and OpenCV's running thread pools (a child that needs one
    waits forever), and spawning would import Paddle in every worker."""
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload(['training.loader', 'dataset.matting'])
    return ctx


def _init_worker(dataset, collate):
    import cv2
    cv2.setNumThreads(1)            # the workers are the parallelism; OpenCV threads would oversubscribe
    _worker.update(dataset=dataset, collate=collate)


def load_batch(dataset, collate, keys):
    samples = [dataset[k] for k in keys]
    return collate(samples), [p for s in samples for p in s.problems]


def _load(keys):
    return load_batch(_worker['dataset'], _worker['collate'], keys)


class BatchLoader:
    """Iterate the batches of `batches` (an iterable of key lists with a len) as collated arrays, in order."""

    def __init__(self, dataset, batches, collate, workers, prefetch=2, timeout=TIMEOUT):
        self.dataset, self.batches, self.collate = dataset, batches, collate
        self.workers, self.prefetch, self.timeout = workers, prefetch, timeout
        self.warned = set()
        self.pool = None

    def __len__(self):
        return len(self.batches)

    def warn(self, problems):
        for message in problems:
            if message not in self.warned:
                self.warned.add(message)
                tqdm.write(f"warning: skipped {message}; using the next file instead", file=sys.stderr)

    def __iter__(self):
        if self.workers == 0:
            for keys in self.batches:
                arrays, problems = load_batch(self.dataset, self.collate, keys)
                self.warn(problems)
                yield arrays
            return
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, context(), _init_worker, (self.dataset, self.collate))
        pending, batches = [], iter(self.batches)
        try:
            for keys in batches:
                pending.append((keys, self.pool.submit(_load, keys)))
                if len(pending) > self.workers * self.prefetch:
                    yield self._result(*pending.pop(0))
            while pending:
                yield self._result(*pending.pop(0))
        finally:
            for _, future in pending:
                future.cancel()

    def _result(self, keys, future):
        try:
            arrays, problems = future.result(timeout=self.timeout)
        except BrokenProcessPool:
            self.close()
            raise DataLoadingError(f"a data-loading worker died while loading samples {keys} (out of memory? "
                                   f"try fewer --num-workers)") from None
        except FutureTimeout:
            self.close()
            raise DataLoadingError(f"loading samples {keys} took more than {self.timeout} s; a worker is stuck") \
                from None
        self.warn(problems)
        return arrays

    def close(self):
        if self.pool is not None:
            processes = list((getattr(self.pool, '_processes', None) or {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.kill()          # a stuck worker would otherwise keep the interpreter from exiting
            self.pool = None
