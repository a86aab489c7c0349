// ring_allreduce.cpp: the sums of comm.h. Floats: a ring all-reduce (reduce-scatter, then
// all-gather), each rank sending and receiving 2 (N-1)/N of the buffer, whatever N: the
// bandwidth-optimal schedule, and the one whose cost docs/PERFORMANCE.md projects. Chunk c is
// summed in the fixed order ((x_c + x_c+1) + x_c+2) + ... (ranks mod N), so a run's bits depend
// on N but never on timing; the all-gather copies the finished chunks, so every rank ends with the
// same bits. Doubles (a handful of scalars: losses, token counts): gathered to rank 0, summed in
// rank order, sent back.
#include <algorithm>
#include <vector>

#include "dist/comm.h"

namespace loftq {

namespace {
// Chunk c of N over n values: [begin, end).
size_t chunk_begin(size_t n, int N, int c) { return n * size_t(c) / size_t(N); }
}  // namespace

void allreduce_sum(Comm& comm, float* data, size_t n) {
    const int N = comm.size(), r = comm.rank();
    if (N <= 1 || n == 0) return;
    const int next = (r + 1) % N, prev = (r + N - 1) % N;
    auto mod = [N](int x) { return ((x % N) + N) % N; };
    // Kept between calls: a fresh buffer costs its first touch (page faults) on every step.
    thread_local std::vector<float> in;
    in.resize(std::max(in.size(), n / size_t(N) + 1));
    // Reduce-scatter: after step s, rank r holds the sum of s + 2 ranks' chunk (r - s - 1).
    for (int s = 0; s < N - 1; ++s) {
        const int sc = mod(r - s), rc = mod(r - s - 1);
        const size_t sb = chunk_begin(n, N, sc), se = chunk_begin(n, N, sc + 1);
        const size_t rb = chunk_begin(n, N, rc), re = chunk_begin(n, N, rc + 1);
        comm.sendrecv(next, data + sb, (se - sb) * sizeof(float), prev, in.data(), (re - rb) * sizeof(float));
        for (size_t i = rb; i < re; ++i) data[i] = in[i - rb] + data[i];  // (sum so far) + own: the fixed order
    }
    // All-gather: rank r starts with the finished chunk (r + 1) and passes chunks on round the ring.
    for (int s = 0; s < N - 1; ++s) {
        const int sc = mod(r + 1 - s), rc = mod(r - s);
        const size_t sb = chunk_begin(n, N, sc), se = chunk_begin(n, N, sc + 1);
        const size_t rb = chunk_begin(n, N, rc), re = chunk_begin(n, N, rc + 1);
        comm.sendrecv(next, data + sb, (se - sb) * sizeof(float), prev, data + rb, (re - rb) * sizeof(float));
    }
}

void allreduce_sum(Comm& comm, double* data, size_t n) {
    const int N = comm.size();
    if (N <= 1 || n == 0) return;
    const size_t bytes = n * sizeof(double);
    if (comm.root()) {
        std::vector<double> sum(data, data + n), part(n);
        for (int q = 1; q < N; ++q) {  // rank order: 0 + 1 + ... + N-1
            comm.recv(q, CommTag::Value, part.data(), bytes);
            for (size_t i = 0; i < n; ++i) sum[i] += part[i];
        }
        for (int q = 1; q < N; ++q) comm.send(q, CommTag::Value, sum.data(), bytes);
        std::copy(sum.begin(), sum.end(), data);
    } else {
        comm.send(0, CommTag::Value, data, bytes);
        comm.recv(0, CommTag::Value, data, bytes);
    }
}

}  // namespace loftq
