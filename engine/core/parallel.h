// parallel.h: fork-join over an index range, for the hot loops inside one weight
// (quantizing blocks, residual updates). Work is split into contiguous chunks, so results are
// identical for any thread count as long as each index is processed independently.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace loftq {

// The hardware thread count (at least 1): what "all threads" (threads = 0) means.
inline int hardware_threads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

// Calls fn(begin, end) on [0, n) split into at most `threads` contiguous chunks of at least
// `min_chunk` indices; runs inline when one chunk suffices.
template <class Fn>
void parallel_for(int64_t n, int threads, int64_t min_chunk, Fn&& fn) {
    if (n <= 0) return;
    int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, n / std::max<int64_t>(1, min_chunk)));
    if (chunks <= 1) { fn(int64_t(0), n); return; }
    std::vector<std::thread> pool;
    pool.reserve(size_t(chunks - 1));
    int64_t step = (n + chunks - 1) / chunks;
    for (int64_t c = 1; c < chunks; ++c) {
        int64_t b = c * step, e = std::min(n, b + step);
        if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
    }
    fn(int64_t(0), std::min(n, step));
    for (auto& t : pool) t.join();
}

}  // namespace loftq
