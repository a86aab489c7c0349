// data_parallel.h: the trainer's DataParallel (train/data_parallel.h) over a Comm: sums by the
// fixed-order ring (comm.h), broadcasts from rank 0 (to each rank in turn: start-up only).
#pragma once
#include <memory>

#include "dist/comm.h"
#include "train/data_parallel.h"

namespace loftq {

std::shared_ptr<DataParallel> make_data_parallel(Comm& comm);

// Rank 0's `bytes` to every rank (in place).
void broadcast(Comm& comm, void* data, size_t bytes);

}  // namespace loftq
