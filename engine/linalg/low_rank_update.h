// low_rank_update.h: out = W - B A, the LoftQ residual after a rank-r factorization, with the
// squared distance of out to a second matrix Q summed in the same pass (the step's error
// ||W - B A - Q||^2 without another sweep over three m x n buffers).
//   W, out, Q: m x n row-major (out must not alias W or Q); B: m x r; A: r x n, row-major.
// Every element is the chain acc = W_ij; acc = fma(-B_ik, A_kj, acc) for k = 0..r-1 in order,
// one rounding per term, whatever the instruction set (AVX-512 or AVX2 + FMA register tiles of
// linalg/thin_kernels.h, or the portable std::fma loop), tiling or thread split: bit-identical for
// any thread count and across machines. The error is summed in float64: per row in 8 lanes by
// column mod 8, the lanes added 0..7, then the rows in order.
#pragma once
#include <cstdint>

namespace loftq {

// Returns sum (out - Q)^2 (0 when Q is null).
double sub_low_rank(const float* W, const float* B, const float* A, int64_t m, int64_t n, int64_t r, float* out,
                    const float* Q, int threads);

// Reference: the same chains and sums in plain scalar loops (std::fma), one thread.
double sub_low_rank_ref(const float* W, const float* B, const float* A, int64_t m, int64_t n, int64_t r, float* out,
                        const float* Q);

}  // namespace loftq
