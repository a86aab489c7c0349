// comm_threads.h: N ranks as threads of one process (comm.h), for tests and for checking the
// distributed code paths where no MPI launcher is at hand. Messages are buffered (a send never
// waits for its receiver), matched by (sender, tag) in order, as MPI matches them.
#pragma once
#include <memory>

#include "dist/comm.h"

namespace loftq {

class ThreadWorld;

// The shared state of `n` thread ranks; comm(r) is rank r's view (each used by one rank's threads).
std::shared_ptr<ThreadWorld> make_thread_world(int n);
std::unique_ptr<Comm> thread_comm(const std::shared_ptr<ThreadWorld>& world, int rank);

}  // namespace loftq
