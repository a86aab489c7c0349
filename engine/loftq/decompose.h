// decompose.h: the LoftQ alternating decomposition of one weight (docs/ALGORITHM.md).
//
//   W: m x n fp32 (row-major, out x in).  L_0 = 0.
//   for t = 1..T:  Q_t = deq(q(W - L_{t-1}));  L_t = B_t A_t = rank-r SVD of (W - Q_t)
//   error_t = ||W - Q_t - L_t||_F / ||W||_F;   QLoRA baseline = ||W - deq(q(W))||_F / ||W||_F.
// The result is the last step's (Q_T, B_T, A_T), as PEFT's loftq_init returns. T = 0 is the QLoRA
// baseline: Q = deq(q(W)), no low-rank factors (rank-0 B and A).
// Memory: two m x n fp32 buffers besides W (Q and the residual; a third with input statistics),
// the codes (one byte per element) and the factors. Per step: one fused pass quantizes the
// residual and writes Q_t and W - Q_t, the randomized SVD streams W - Q_t (2 + 2q passes), and one
// pass writes W - B A while summing the error against Q_t.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/cancel.h"
#include "core/matrix.h"
#include "linalg/svd.h"
#include "loftq/input_stats.h"
#include "loftq/plan.h"

namespace loftq {

struct StepReport {
    int step = 0;           // 1..T
    double error = 0;       // ||W - Q_t - B_t A_t||_F / ||W||_F
    double seconds = 0;     // wall time of this step
    double baseline = 0;    // QLoRA baseline of the weight (same for every step)
    // With input statistics (input_stats.h): ||X (W - Q_t - B_t A_t)^T||_F / ||X W^T||_F and the
    // QLoRA one ||X (W - q(W))^T||_F / ||X W^T||_F; -1 without.
    double out_error = -1, out_baseline = -1;
};

struct Decomposition {
    Matrix Q;                    // m x n dequantized backbone Q_T
    BigVector<uint8_t> codes;    // m*n codes of Q_T (one byte each; pack with pack_codes)
    std::vector<float> scales;   // num_blocks(m*n, block) absmax scales
    LowRank lr;                  // B (m x r), A (r x n), S; r = 0 when T = 0
    double baseline = 0;         // QLoRA relative error
    double final_error = 0;      // error of the returned (Q, B A); == baseline when T = 0
    double w_norm = 0;           // ||W||_F
    double out_baseline = -1;    // output errors (input_stats.h): QLoRA's and the returned one's;
    double out_final = -1;       //   -1 without input statistics
    double out_norm = 0;         // ||X W^T||_F (0 without)
    std::vector<StepReport> steps;
    double seconds = 0;
};

// The large buffers one worker reuses from weight to weight: the residual, the output-error
// scratch, and a consumed result's Q / codes / scales (recycle), so that a whole-model job
// allocates and first-touches them once per worker, not once per weight.
struct DecomposeScratch {
    Matrix R, E;
    Decomposition spare;
    void recycle(Decomposition&& d) { spare = std::move(d); }
};

// `threads` is used by the quantizer's loops (BLAS threads are set by the caller). on_step is
// called after every step from the calling thread. The token is polled before each step.
// `input` (n features): also the output errors of the baseline and every step (one m x n
// scratch more, and an E R^T product per step for a full Gram). `scratch` (null: local buffers)
// keeps the buffers for the next call; the result is the same with or without it.
Decomposition loftq_decompose(const float* W, int64_t m, int64_t n, const WeightSettings& s, const SvdOptions& svd,
                              int threads = 1, const std::function<void(const StepReport&)>& on_step = {},
                              const CancelToken* cancel = nullptr, const InputStats* input = nullptr,
                              DecomposeScratch* scratch = nullptr);

// Seed of weight `name` at step t for the randomized SVD: independent of scheduling and threads.
uint64_t weight_seed(uint64_t plan_seed, const std::string& name, int step);

}  // namespace loftq
