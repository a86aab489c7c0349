// bench_allreduce.cpp: the cost of the data-parallel gradient sum (dist/comm.h allreduce_sum,
// the fixed-order ring), a plain main. Under a launcher: `mpirun -np N bench_allreduce`; alone:
// `bench_allreduce --threads N` (ranks as threads of this process: the ring's own cost without
// MPI's). For sizes from 1 K to 64 M floats it prints the mean time of one sum (after a warm-up),
// the algorithm bandwidth (bytes / time) and the bus bandwidth (2 (N-1)/N bytes / time: what each
// rank sends, the figure that compares across N). docs/PERFORMANCE.md has results.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "dist/comm.h"
#include "dist/comm_mpi.h"
#include "dist/comm_threads.h"

using namespace loftq;

namespace {

// Rank 0 prints; every rank takes part. Returns seconds per sum.
double time_sum(Comm& c, size_t n, int reps) {
    std::vector<float> v(n, 1.0f);
    allreduce_sum(c, v.data(), n);  // warm-up (connections, pages)
    double sync = 0;
    allreduce_sum(c, &sync, 1);     // start together
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) allreduce_sum(c, v.data(), n);
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    allreduce_sum(c, &dt, 1);       // the mean over ranks
    return dt / c.size();
}

void run(Comm& c, size_t max_floats) {
    if (c.root())
        std::printf("%d ranks\n%12s %12s %14s %14s\n", c.size(), "floats", "ms/sum", "algo GB/s", "bus GB/s");
    for (size_t n = 1024; n <= max_floats; n *= 4) {
        const int reps = n <= (size_t(1) << 20) ? 50 : 5;
        const double s = time_sum(c, n, reps);
        const double bytes = 4.0 * double(n);
        if (c.root())
            std::printf("%12zu %12.3f %14.3f %14.3f\n", n, s * 1e3, bytes / s / 1e9, 2.0 * (c.size() - 1) / c.size() * bytes / s / 1e9);
    }
}

}  // namespace

int main(int argc, char** argv) {
    int threads = 2;
    size_t max_floats = size_t(64) << 20;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
        else if (!std::strcmp(argv[i], "--max-floats") && i + 1 < argc) max_floats = size_t(std::atoll(argv[++i]));
    }
    if (mpi_launched_size() > 0) {
        auto c = mpi_comm();
        run(*c, max_floats);
        c->finish(60);
        return 0;
    }
    auto world = make_thread_world(threads);
    std::vector<std::thread> ts;
    for (int r = 0; r < threads; ++r)
        ts.emplace_back([&, r] {
            auto c = thread_comm(world, r);
            run(*c, max_floats);
            c->finish(60);
        });
    for (auto& t : ts) t.join();
    return 0;
}
