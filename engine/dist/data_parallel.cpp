// data_parallel.cpp: see data_parallel.h.
#include "dist/data_parallel.h"

namespace loftq {

void broadcast(Comm& comm, void* data, size_t bytes) {
    if (comm.size() <= 1 || bytes == 0) return;
    if (comm.root()) {
        for (int q = 1; q < comm.size(); ++q) comm.send(q, CommTag::Value, data, bytes);
    } else {
        comm.recv(0, CommTag::Value, data, bytes);
    }
}

namespace {
class CommDataParallel final : public DataParallel {
public:
    explicit CommDataParallel(Comm& c) : comm_(c) {}
    int rank() const override { return comm_.rank(); }
    int ranks() const override { return comm_.size(); }
    void sum(float* data, size_t n) override { allreduce_sum(comm_, data, n); }
    void sum(double* data, size_t n) override { allreduce_sum(comm_, data, n); }
    void broadcast(float* data, size_t n) override { loftq::broadcast(comm_, data, n * sizeof(float)); }
    void broadcast(double* data, size_t n) override { loftq::broadcast(comm_, data, n * sizeof(double)); }

private:
    Comm& comm_;
};
}  // namespace

std::shared_ptr<DataParallel> make_data_parallel(Comm& comm) { return std::make_shared<CommDataParallel>(comm); }

}  // namespace loftq
