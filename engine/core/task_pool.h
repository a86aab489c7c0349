// task_pool.h: the engine's one scheduler for work split by tensor (the quantize job's weights
// and copies, the in-memory LoftQ init's sites, the sweep's points): `workers` threads, the
// calling thread among them, take task indices 0, 1, 2, ... from one shared counter, so the
// caller's order (e.g. largest weight first) is the order work starts in.
//
// Errors: the first exception a task throws is kept; the other workers finish the task they are
// in and take no new one; run_tasks rethrows it after every worker has stopped. loftq::Cancelled
// from a task stops every worker the same way and is rethrown (after any real error). `cancel`
// set stops the workers before their next task, quietly: the caller decides what that means
// (usually cancel->throw_if_cancelled()). A task's own per-worker state is indexed by `worker`, 0..workers-1
// (e.g. one decomposer per worker), so tasks of one worker never run at once.
#pragma once
#include <cstddef>
#include <functional>

#include "core/cancel.h"

namespace loftq {

void run_tasks(size_t n, int workers, const CancelToken* cancel,
               const std::function<void(int worker, size_t task)>& task);

}  // namespace loftq
