"""The chunk queue of a parallel `tocsin batch` run: the pool holds each worker's next chunk while many are left,
only the one it grades near the end, every chunk is taken once in index order, and nothing is taken after a stop
or a failed chunk."""

from __future__ import annotations

from concurrent.futures import Future

from tocsin.adapters import batch


class _Pool:
    """A stand-in for the process pool: records each submission and leaves its future for the test to finish."""

    def __init__(self) -> None:
        self.futures: list[tuple[int, Future]] = []

    def submit(self, function, *arguments):
        assert function is batch._grade_and_write
        future: Future = Future()
        self.futures.append((arguments[0], future))
        return future

    def running(self) -> list[int]:
        return [index for index, future in self.futures if not future.done()]

    def finish(self, index: int, failed: bool = False) -> None:
        future = dict(self.futures)[index]
        if failed:
            future.set_exception(RuntimeError("chunk failed"))
        else:
            future.set_result(index)


def _queue(chunks: int, workers: int) -> tuple[batch._ChunkQueue, _Pool]:
    queue, pool = batch._ChunkQueue(chunks, workers), _Pool()
    queue.fill(pool, lambda index: (index,))
    return queue, pool


def test_the_pool_holds_two_chunks_a_worker_while_many_are_left() -> None:
    queue, pool = _queue(chunks=20, workers=2)
    assert pool.running() == [0, 1, 2, 3]
    pool.finish(1)
    assert pool.running() == [0, 2, 3, 4]  # refilled at once, the next chunk in index order
    assert queue.take() == 5  # the starting process takes the next one


def test_near_the_end_a_worker_holds_only_the_chunk_it_grades() -> None:
    queue, pool = _queue(chunks=7, workers=1)
    assert pool.running() == [0, 1]  # 7 left: at least _PREFETCH_LEFT a worker
    assert queue.take() == 2
    pool.finish(0)
    assert pool.running() == [1, 3]  # 4 left before the refill
    pool.finish(1)
    assert pool.running() == [3]  # 3 left: no chunk waits in the worker's queue
    assert queue.take() == 4
    pool.finish(3)
    assert pool.running() == [5]
    assert queue.take() == 6
    assert queue.take() is None


def test_every_chunk_is_taken_once_in_index_order() -> None:
    queue, pool = _queue(chunks=30, workers=3)
    taken = []
    while pool.running() or (index := queue.take()) is not None:
        if pool.running():
            pool.finish(pool.running()[0])
        else:
            taken.append(index)
    submitted = [index for index, _ in pool.futures]
    assert sorted(submitted + taken) == list(range(30))
    assert submitted == sorted(submitted)
    assert len(queue.submitted()) == len(submitted)


def test_nothing_is_submitted_after_a_stop_or_a_failed_chunk() -> None:
    queue, pool = _queue(chunks=20, workers=1)
    pool.finish(0, failed=True)
    assert pool.running() == [1]  # a failed chunk is not replaced
    assert [index for index, _ in pool.futures] == [0, 1]
    assert len(queue.stop()) == 2
    pool.finish(1)
    assert queue.take() is None
    assert [index for index, _ in pool.futures] == [0, 1]
