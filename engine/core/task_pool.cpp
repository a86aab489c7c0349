// task_pool.cpp: see task_pool.h.
#include "core/task_pool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace loftq {

void run_tasks(size_t n, int workers, const CancelToken* cancel,
               const std::function<void(int worker, size_t task)>& task) {
    std::atomic<size_t> next{0};
    std::atomic<bool> stop{false}, task_cancelled{false};
    std::exception_ptr first_error;
    std::mutex mu;
    auto worker = [&](int w) {
        for (;;) {
            if (stop.load() || (cancel && cancel->cancelled())) return;
            const size_t i = next.fetch_add(1);
            if (i >= n) return;
            try {
                task(w, i);
            } catch (const Cancelled&) {
                task_cancelled.store(true);
                stop.store(true);
                return;
            } catch (...) {
                std::lock_guard<std::mutex> lock(mu);
                if (!first_error) first_error = std::current_exception();
                stop.store(true);
                return;
            }
        }
    };
    const int count = int(std::max<size_t>(1, std::min<size_t>(size_t(std::max(1, workers)), n)));
    std::vector<std::thread> pool;
    for (int w = 1; w < count; ++w) pool.emplace_back(worker, w);
    worker(0);
    for (auto& t : pool) t.join();
    if (first_error) std::rethrow_exception(first_error);
    if (task_cancelled.load()) throw Cancelled();
}

}  // namespace loftq
