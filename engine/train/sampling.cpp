// sampling.cpp: see sampling.h.
#include "train/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "core/error.h"

namespace loftq {

void check_sampling(const SamplingOptions& o) {
    if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
        throw Error("sampling: temperature must be >= 0 (0 = greedy), got " + std::to_string(o.temperature));
    if (o.top_k < 0) throw Error("sampling: top-k must be >= 0 (0 = no limit), got " + std::to_string(o.top_k));
    if (!(o.top_p > 0 && o.top_p <= 1)) throw Error("sampling: top-p must be in (0, 1], got " + std::to_string(o.top_p));
}

int argmax_token(const float* logits, int V) {
    int best = 0;
    for (int i = 0; i < V; ++i) {
        if (std::isnan(logits[i])) throw Error("generation: the model produced NaN logits (token " + std::to_string(i) + ")");
        if (logits[i] > logits[best]) best = i;
    }
    return best;
}

TokenSampler::TokenSampler(const SamplingOptions& o) : o_(o), rng_(o.seed) { check_sampling(o); }

int TokenSampler::next(const float* logits, int V) {
    if (o_.temperature == 0) return argmax_token(logits, V);
    (void)argmax_token(logits, V);   // the NaN check
    // The k most likely, in decreasing order (ties: lower id first, so the order is total).
    const int k = o_.top_k > 0 ? std::min(o_.top_k, V) : V;
    idx_.resize(size_t(V));
    std::iota(idx_.begin(), idx_.end(), 0);
    auto more_likely = [&](int a, int b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
    std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), more_likely);
    // Softmax of logits / T over them, in float64.
    p_.resize(size_t(k));
    const double top = logits[idx_[0]];
    double sum = 0;
    for (int i = 0; i < k; ++i) sum += p_[size_t(i)] = std::exp((double(logits[idx_[size_t(i)]]) - top) / o_.temperature);
    // Nucleus: the smallest prefix holding top_p of the mass.
    int m = k;
    if (o_.top_p < 1) {
        double c = 0;
        for (int i = 0; i < k; ++i) {
            c += p_[size_t(i)];
            if (c >= o_.top_p * sum) { m = i + 1; break; }
        }
    }
    double kept = 0;
    for (int i = 0; i < m; ++i) kept += p_[size_t(i)];
    double u = rng_.uniform() * kept;   // (0, kept]
    for (int i = 0; i < m; ++i) {
        u -= p_[size_t(i)];
        if (u <= 0) return idx_[size_t(i)];
    }
    return idx_[size_t(m - 1)];   // rounding left a sliver: the last kept token
}

}  // namespace loftq
