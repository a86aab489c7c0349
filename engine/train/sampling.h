// sampling.h: picking the next token from a row of logits, for generation (generate.h).
// temperature 0 = greedy (the first maximum, deterministic); otherwise softmax(logits / T) over
// the top_k most likely tokens (0 = all), cut to the smallest most-likely set whose probability
// reaches top_p (1 = all; always at least one token), renormalized and sampled with a seeded
// generator: the same seed, options and logits give the same tokens on every machine.
// Leaves out: repetition / frequency penalties, min-p, grammars.
#pragma once
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace loftq {

struct SamplingOptions {
    double temperature = 0;   // 0 = greedy
    int top_k = 0;            // 0 = no limit
    double top_p = 1;         // (0, 1]
    uint64_t seed = 0;
};

// Throws loftq::Error for out-of-range options (negative temperature or top_k, top_p outside (0, 1]).
void check_sampling(const SamplingOptions& o);

// The index of the first maximum of logits (V). NaN logits throw loftq::Error.
int argmax_token(const float* logits, int V);

class TokenSampler {
public:
    explicit TokenSampler(const SamplingOptions& o);
    // The next token from logits (V floats, not changed).
    int next(const float* logits, int V);

private:
    SamplingOptions o_;
    Rng rng_;
    std::vector<int> idx_;
    std::vector<double> p_;
};

}  // namespace loftq
