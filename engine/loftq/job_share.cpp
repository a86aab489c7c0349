// job_share.cpp: see job_share.h.
#include "loftq/job_share.h"

#include <algorithm>
#include <numeric>

namespace loftq {

std::vector<int> split_weights(const ResolvedPlan& plan, int ranks) {
    const size_t K = plan.weights.size();
    std::vector<int> owner(K, 0);
    if (ranks <= 1) return owner;
    auto work = [&](size_t i) {
        const auto& w = plan.weights[i];
        return double(w.rows) * double(w.cols) * double(std::max(1, w.s.iters));
    };
    std::vector<size_t> order(K);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return work(a) > work(b); });
    std::vector<double> load(size_t(ranks), 0.0);
    for (size_t i : order) {
        const int r = int(std::min_element(load.begin(), load.end()) - load.begin());  // first minimum: lowest rank
        owner[i] = r;
        load[size_t(r)] += work(i);
    }
    return owner;
}

}  // namespace loftq
