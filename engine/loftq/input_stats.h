// input_stats.h: what a projection's input activations contribute to the error a weight change
// makes in its output, so that LoftQ can report ||X (W - Q - B A)^T||_F / ||X W^T||_F (the
// "output error") beside the weight error ||W - Q - B A||_F / ||W||_F.
//
// X (N tokens x in) are the inputs the original model feeds the projection on calibration text
// (mixed/calibration.h collects them). For any E (out x in): ||X E^T||_F^2 = tr(E G E^T) with the
// Gram G = X^T X (in x in), so G is all we keep, factored once as G = R^T R:
//   full:  R (k x in) = diag(sqrt(lambda)) V^T from G's eigendecomposition (float64), eigenvalues
//          below 1e-12 of the largest dropped (they carry no output energy); k <= min(N, in).
//          Exact. One error costs 2 out in k flops (an E R^T product).
//   diag:  R = sqrt(diag(G)) (in values): the features taken as uncorrelated. Not exact (the
//          correlations of real activations are ignored), but O(out in) and in floats of memory:
//          used for inputs wider than CalibOptions::max_full_dim, where a full Gram (in^2 x 8 bytes
//          while collecting) and the E R^T product would cost too much.
// Leaves out: collecting X (mixed/calibration.cpp runs the model), the model's gradients (a
// Fisher-weighted error would need backward passes; this is the data-aware, label-free part).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace loftq {

struct InputStats {
    int64_t in = 0;             // input features
    int64_t tokens = 0;         // N: calibration tokens the Gram summed
    bool full = true;           // false: diagonal only (see above)
    int64_t k = 0;              // full: rows of R
    std::vector<float> R;       // full: k x in, R^T R = G; diag: in values sqrt(G_jj)
};

// Factors a Gram (in x in, float64, row-major, symmetric; only its values are read) into
// InputStats. full = false keeps the diagonal only. Throws loftq::Error when LAPACK fails.
InputStats input_stats_from_gram(const std::vector<double>& gram, int64_t in, int64_t tokens, bool full);

// ||X E^T||_F^2 for E (m x in, row-major), in float64 over float32 products; `threads` for the
// E R^T product's rows (bit-identical for any count: fixed per-row order).
double output_error_sq(const InputStats& st, const float* E, int64_t m, int threads = 1);

// Calibration statistics of a model: per target weight name, the stats of its input (weights that
// share an input, q/k/v or gate/up, share one InputStats).
struct CalibStats {
    std::map<std::string, std::shared_ptr<const InputStats>> by_weight;
    int64_t tokens = 0;          // calibration tokens run through the model
    std::string source;          // the calibration file
    std::string key;             // content hash of the file + options (sweep cache keys include it)
    std::vector<std::string> notes;  // e.g. which inputs kept only a diagonal, and why
    const InputStats* find(const std::string& weight) const {
        auto it = by_weight.find(weight);
        return it == by_weight.end() ? nullptr : it->second.get();
    }
};

}  // namespace loftq
