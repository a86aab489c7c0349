// data_parallel.h: data-parallel fine-tuning as the trainer (trainer.cpp) sees it: N ranks, each
// with the frozen base and a replica of the adapters, each taking accum / N of every step's
// micro-batches (the global batch stays batch x accum rows, as in one process); the weighted
// gradient sums are summed across ranks every step, so every replica takes the same AdamW step.
// Rank 0 evaluates, checkpoints and writes every file; checkpoints are a single process's, so a
// run resumes with any N that divides accum. The transport is engine/dist (dist/data_parallel.h:
// MPI, or threads in tests); the sums are in a fixed order (the same bits on every rank and on
// every run with the same N).
#pragma once
#include <cstddef>

namespace loftq {

class DataParallel {
public:
    virtual ~DataParallel() = default;
    virtual int rank() const = 0;
    virtual int ranks() const = 0;
    // In place: the sum over ranks, the same bits on every rank.
    virtual void sum(float* data, size_t n) = 0;
    virtual void sum(double* data, size_t n) = 0;
    // In place: rank 0's values on every rank.
    virtual void broadcast(float* data, size_t n) = 0;
    virtual void broadcast(double* data, size_t n) = 0;
};

}  // namespace loftq
