// ops.cpp: see ops.h. Plain loops written so the compiler vectorizes the inner ones (axpy over a
// contiguous row, never a float reduction it would have to reorder), OpenBLAS for the products.
#include "model/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/parallel.h"
#include "linalg/blas.h"
#include "linalg/small_gemm.h"
#include "linalg/tile_gemm.h"
#include "model/llama.h"

namespace loftq::ops {

namespace {
// Rows per thread so that each task has at least ~32K elements: below that, starting a thread
// costs more than the work.
int64_t rows_per_task(int64_t row_len) { return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(row_len, 1)); }
}  // namespace

// ---------------------------------------------------------------------------------------------
// embedding

void embedding_forward(float* out, const int* tokens, const float* table, int64_t N, int C, int V) {
    for (int64_t n = 0; n < N; ++n) {
        const int tok = tokens[n];
        if (tok < 0 || tok >= V)
            throw Error("", "", "token id " + std::to_string(tok) + " at position " + std::to_string(n) +
                                    " is outside the vocabulary [0, " + std::to_string(V) + ")");
        std::memcpy(out + n * C, table + int64_t(tok) * C, size_t(C) * sizeof(float));
    }
}

void embedding_backward(float* dtable, const float* dout, const int* tokens, int64_t N, int C) {
    for (int64_t n = 0; n < N; ++n) {
        float* row = dtable + int64_t(tokens[n]) * C;
        const float* g = dout + n * C;
        for (int c = 0; c < C; ++c) row[c] += g[c];
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int64_t N, int C, float eps, int threads) {
    parallel_for(N, threads, rows_per_task(C), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            const float* xr = x + n * C;
            double ss = 0;
            for (int c = 0; c < C; ++c) ss += double(xr[c]) * double(xr[c]);
            const float rs = float(1.0 / std::sqrt(ss / C + double(eps)));
            rstd[n] = rs;
            float* o = out + n * C;
            for (int c = 0; c < C; ++c) o[c] = (xr[c] * rs) * w[c];
        }
    });
}

// y = x r w, r = (mean x^2 + eps)^(-1/2): dL/dx_j = r (g_j - xhat_j mean_c(g_c xhat_c)),
// g = dout * w, xhat = x r.
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                      int64_t N, int C, int threads) {
    parallel_for(N, threads, rows_per_task(C), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            const float* xr = x + n * C;
            const float* gr = dout + n * C;
            const float rs = rstd[n];
            double m = 0;
            for (int c = 0; c < C; ++c) m += double(gr[c] * w[c]) * double(xr[c] * rs);
            const float mean = float(m / C);
            float* d = dx + n * C;
            for (int c = 0; c < C; ++c) d[c] += rs * (gr[c] * w[c] - xr[c] * rs * mean);
        }
    });
    if (dw)
        for (int64_t n = 0; n < N; ++n)
            for (int c = 0; c < C; ++c) dw[c] += dout[n * C + c] * x[n * C + c] * rstd[n];
}

// ---------------------------------------------------------------------------------------------
// RoPE

void rope_forward(float* x, int B, int T, int heads, int d, const float* cos, const float* sin, int threads) {
    const int half = d / 2;
    parallel_for(int64_t(B) * T, threads, rows_per_task(int64_t(heads) * d), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            const int64_t t = n % T;
            const float* cr = cos + t * half;
            const float* sr = sin + t * half;
            for (int h = 0; h < heads; ++h) {
                float* p = x + (n * heads + h) * d;
                for (int i = 0; i < half; ++i) {
                    const float a = p[i], b = p[i + half];
                    p[i] = a * cr[i] - b * sr[i];
                    p[i + half] = b * cr[i] + a * sr[i];
                }
            }
        }
    });
}

void rope_backward(float* dx, int B, int T, int heads, int d, const float* cos, const float* sin, int threads) {
    const int half = d / 2;
    parallel_for(int64_t(B) * T, threads, rows_per_task(int64_t(heads) * d), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            const int64_t t = n % T;
            const float* cr = cos + t * half;
            const float* sr = sin + t * half;
            for (int h = 0; h < heads; ++h) {
                float* p = dx + (n * heads + h) * d;
                for (int i = 0; i < half; ++i) {
                    const float a = p[i], b = p[i + half];
                    p[i] = a * cr[i] + b * sr[i];
                    p[i + half] = b * cr[i] - a * sr[i];
                }
            }
        }
    });
}

std::vector<double> rope_inv_freq(const LlamaConfig& c) {
    const int d = c.head_dim(), half = d / 2;
    std::vector<double> f(size_t(std::max(half, 0)));
    for (int i = 0; i < half; ++i) f[size_t(i)] = 1.0 / std::pow(double(c.rope_theta), double(2 * i) / double(d));
    if (c.rope_scaling == "linear") {
        for (auto& v : f) v /= c.rope_factor;
    } else if (c.rope_scaling == "llama3") {
        // transformers' _compute_llama3_parameters: long wavelengths slowed by `factor`, short ones
        // kept, a linear blend (in 1/wavelength) between.
        const double pi = 3.14159265358979323846;
        const double low_wavelen = c.rope_original_max / c.rope_low_freq_factor;
        const double high_wavelen = c.rope_original_max / c.rope_high_freq_factor;
        for (auto& v : f) {
            const double wavelen = 2 * pi / v;
            if (wavelen < high_wavelen) continue;
            if (wavelen > low_wavelen) { v /= c.rope_factor; continue; }
            const double smooth = (c.rope_original_max / wavelen - c.rope_low_freq_factor) /
                                  (c.rope_high_freq_factor - c.rope_low_freq_factor);
            v = (1 - smooth) * v / c.rope_factor + smooth * v;
        }
    }
    return f;
}

void rope_table(float* cos, float* sin, int T, const std::vector<double>& inv_freq) {
    const size_t half = inv_freq.size();
    for (int t = 0; t < T; ++t)
        for (size_t i = 0; i < half; ++i) {
            const double a = double(t) * inv_freq[i];
            cos[size_t(t) * half + i] = float(std::cos(a));
            sin[size_t(t) * half + i] = float(std::sin(a));
        }
}

// ---------------------------------------------------------------------------------------------
// attention. One task per (batch, kv head): the query heads of its group write disjoint rows of
// q/y, and the task owns its kv head's dk/dv columns, so tasks never share an output.

// Per (batch row, kv head), for each of its query heads, in blocks of 16 query rows: the scores
// S = Q K^T as small GEMMs (only the columns up to the block's last row, the rest is masked), the
// softmax row by row, then Y = P V over the keys up to the block's last row (P is 0 above the
// diagonal). small_gemm's chains do not depend on the blocking or the thread split.
constexpr int kAttRows = 16;

void attention_forward(float* y, float* att, const float* q, const float* k, const float* v, int B, int T, int H,
                       int KVH, int d, int threads) {
    const int G = H / KVH;
    const int64_t C = int64_t(H) * d, KC = int64_t(KVH) * d;
    const float scale = 1.f / std::sqrt(float(d));
    parallel_for(int64_t(B) * KVH, threads, 1, [&](int64_t a0, int64_t a1) {
        std::vector<float> kT(size_t(d) * size_t(T));  // d x T: row i holds feature i of every key
        for (int64_t task = a0; task < a1; ++task) {
            const int64_t b = task / KVH, kh = task % KVH;
            for (int j = 0; j < T; ++j)
                for (int i = 0; i < d; ++i) kT[size_t(i) * T + size_t(j)] = k[(b * T + j) * KC + kh * d + i];
            for (int g = 0; g < G; ++g) {
                const int64_t h = kh * G + g;
                float* P = att + (b * H + h) * int64_t(T) * T;
                for (int t0 = 0; t0 < T; t0 += kAttRows) {
                    const int t1 = std::min(T, t0 + kAttRows);
                    const int64_t cols = std::min<int64_t>(T, (t1 + 15) / 16 * 16);
                    small_gemm(t1 - t0, cols, d, q + (b * T + t0) * C + h * d, C, kT.data(), T, P + int64_t(t0) * T, T,
                               false);
                    for (int t = t0; t < t1; ++t) {
                        float* s = P + int64_t(t) * T;
                        float mx = -std::numeric_limits<float>::infinity();
                        for (int j = 0; j <= t; ++j) { s[j] *= scale; mx = std::max(mx, s[j]); }
                        double sum = 0;
                        for (int j = 0; j <= t; ++j) { s[j] = std::exp(s[j] - mx); sum += s[j]; }
                        const float inv = float(1.0 / sum);
                        for (int j = 0; j <= t; ++j) s[j] *= inv;
                        for (int j = t + 1; j < T; ++j) s[j] = 0.f;
                    }
                    small_gemm(t1 - t0, d, t1, P + int64_t(t0) * T, T, v + b * T * KC + kh * d, KC,
                               y + (b * T + t0) * C + h * d, C, false);
                }
            }
        }
    });
}

void attention_decode(float* y, const float* q, const float* kc, const float* vc, int n, int pos, int H, int KVH,
                      int d, int threads) {
    const int G = H / KVH;
    const int64_t C = int64_t(H) * d, KC = int64_t(KVH) * d;
    const float scale = 1.f / std::sqrt(float(d));
    parallel_for(int64_t(n) * H, threads, 1, [&](int64_t a0, int64_t a1) {
        std::vector<float> s(size_t(pos + n));
        for (int64_t task = a0; task < a1; ++task) {
            const int64_t t = task / H, h = task % H, kh = h / G;
            const int64_t last = pos + t;   // absolute position of this query
            const float* qr = q + t * C + h * d;
            // the same sums as attention_forward: over features i (outer), per key j
            for (int64_t j = 0; j <= last; ++j) s[size_t(j)] = 0.f;
            for (int i = 0; i < d; ++i) {
                const float qi = qr[i];
                for (int64_t j = 0; j <= last; ++j) s[size_t(j)] += qi * kc[j * KC + kh * d + i];
            }
            float mx = -std::numeric_limits<float>::infinity();
            for (int64_t j = 0; j <= last; ++j) { s[size_t(j)] *= scale; mx = std::max(mx, s[size_t(j)]); }
            double sum = 0;
            for (int64_t j = 0; j <= last; ++j) { s[size_t(j)] = std::exp(s[size_t(j)] - mx); sum += s[size_t(j)]; }
            const float inv = float(1.0 / sum);
            for (int64_t j = 0; j <= last; ++j) s[size_t(j)] *= inv;
            float* yr = y + t * C + h * d;
            for (int i = 0; i < d; ++i) yr[i] = 0.f;
            for (int64_t j = 0; j <= last; ++j) {
                const float p = s[size_t(j)];
                const float* vr = vc + j * KC + kh * d;
                for (int i = 0; i < d; ++i) yr[i] += p * vr[i];
            }
        }
    });
}

// Per head: dP = dY V^T, dS = P o (dP - rowsum(P o dP)), dQ = scale dS K, dK = scale dS^T Q,
// dV = P^T dY (summed over the group's query heads), each product a small GEMM in blocks of 16
// rows; dK and dV chains continue across the group's heads (accumulate) and start at the block's
// first key row (the skipped dS^T, P^T entries are zero: causal).
void attention_backward(float* dq, float* dk, float* dv, const float* dy, const float* att, const float* q,
                        const float* k, const float* v, int B, int T, int H, int KVH, int d, int threads) {
    const int G = H / KVH;
    const int64_t C = int64_t(H) * d, KC = int64_t(KVH) * d;
    const size_t TT = size_t(T) * size_t(T);
    const float scale = 1.f / std::sqrt(float(d));
    parallel_for(int64_t(B) * KVH, threads, 1, [&](int64_t a0, int64_t a1) {
        std::vector<float> vT(size_t(d) * size_t(T)), dS(TT);
        for (int64_t task = a0; task < a1; ++task) {
            const int64_t b = task / KVH, kh = task % KVH;
            for (int j = 0; j < T; ++j)
                for (int i = 0; i < d; ++i) vT[size_t(i) * T + size_t(j)] = v[(b * T + j) * KC + kh * d + i];
            for (int g = 0; g < G; ++g) {
                const int64_t h = kh * G + g;
                const float* P = att + (b * H + h) * int64_t(T) * T;
                const float* dyh = dy + b * T * C + h * d;
                for (int t0 = 0; t0 < T; t0 += kAttRows) {
                    const int t1 = std::min(T, t0 + kAttRows);
                    const int64_t cols = std::min<int64_t>(T, (t1 + 15) / 16 * 16);
                    float* dP = dS.data() + size_t(t0) * T;  // dP, then dS in place, row by row
                    small_gemm(t1 - t0, cols, d, dyh + int64_t(t0) * C, C, vT.data(), T, dP, T, false);
                    for (int t = t0; t < t1; ++t) {
                        const float* p = P + int64_t(t) * T;
                        float* ds = dS.data() + size_t(t) * T;
                        double dot = 0;
                        for (int j = 0; j <= t; ++j) dot += double(p[j]) * double(ds[j]);
                        const float fdot = float(dot);
                        for (int j = 0; j <= t; ++j) ds[j] = p[j] * (ds[j] - fdot) * scale;
                        for (int j = t + 1; j < T; ++j) ds[j] = 0.f;
                    }
                    small_gemm(t1 - t0, d, t1, dS.data() + size_t(t0) * T, T, k + b * T * KC + kh * d, KC,
                               dq + (b * T + t0) * C + h * d, C, false);
                }
                // dK (+)= dS^T Q and dV (+)= P^T dY, reading dS and P down their columns.
                const float* qh = q + b * T * C + h * d;
                for (int j0 = 0; j0 < T; j0 += kAttRows) {
                    const int j1 = std::min(T, j0 + kAttRows);
                    small_gemm_at(j1 - j0, d, T - j0, dS.data() + size_t(j0) * T + j0, T, qh + int64_t(j0) * C, C,
                                  dk + (b * T + j0) * KC + kh * d, KC, g > 0);
                    small_gemm_at(j1 - j0, d, T - j0, P + int64_t(j0) * T + j0, T, dyh + int64_t(j0) * C, C,
                                  dv + (b * T + j0) * KC + kh * d, KC, g > 0);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

void swiglu_forward(float* h, const float* g, const float* u, int64_t n, int threads) {
    parallel_for(n, threads, 1 << 14, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) h[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
    });
}

// d silu(g)/dg = s (1 + g (1 - s)), s = sigmoid(g).
void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n, int threads) {
    parallel_for(n, threads, 1 << 14, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float s = 1.f / (1.f + std::exp(-g[i]));
            du[i] = dh[i] * g[i] * s;
            dg[i] = dh[i] * u[i] * s * (1.f + g[i] * (1.f - s));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// adapted linear

void lora_linear_forward(float* y, float* xa, const float* x, int64_t N, const LoraLinear& L) {
    tile_gemm(true, N, L.out, L.in, x, L.in, L.W, L.in, y, L.out, false, L.threads);  // y = x W^T
    if (L.bias)
        for (int64_t n = 0; n < N; ++n) {
            float* yr = y + n * L.out;
            for (int64_t o = 0; o < L.out; ++o) yr[o] += L.bias[o];
        }
    if (L.r > 0) {
        const int th = L.threads;
        tile_gemm(false, true, N, L.r, L.in, 1.f, x, L.in, L.A, L.in, xa, L.r, false, th);         // xa = x A^T
        tile_gemm(false, true, N, L.out, L.r, L.scale, xa, L.r, L.B, L.r, y, L.out, true, th);    // y += xa (s B)^T
    }
}

void lora_linear_backward(float* dx, bool accumulate_dx, float* dA, float* dB, float* dbias, const float* dy,
                          const float* x, const float* xa, float* dxa, int64_t N, const LoraLinear& L) {
    if (L.r > 0) {
        const int th = L.threads;
        tile_gemm(true, false, L.out, L.r, N, L.scale, dy, L.out, xa, L.r, dB, L.r, true, th);    // dB += dy^T (s xa)
        tile_gemm(false, false, N, L.r, L.out, L.scale, dy, L.out, L.B, L.r, dxa, L.r, false, th); // dxa = dy (s B)
        tile_gemm(true, false, L.r, L.in, N, 1.f, dxa, L.r, x, L.in, dA, L.in, true, th);         // dA += dxa^T x
    }
    if (dx) {
        tile_gemm(false, N, L.in, L.out, dy, L.out, L.W, L.in, dx, L.in, accumulate_dx, L.threads);  // dx (+)= dy W
        if (L.r > 0) tile_gemm(false, false, N, L.in, L.r, 1.f, dxa, L.r, L.A, L.in, dx, L.in, true, L.threads);  // dx += dxa A
    }
    if (dbias)
        for (int64_t n = 0; n < N; ++n)
            for (int64_t o = 0; o < L.out; ++o) dbias[o] += dy[n * L.out + o];
}

// ---------------------------------------------------------------------------------------------
// cross-entropy

double cross_entropy_forward(float* lse, const float* logits, const int* targets, int64_t N, int V, int64_t* scored,
                             int threads) {
    int64_t count = 0;
    for (int64_t n = 0; n < N; ++n) {
        if (targets[n] >= V)
            throw Error("", "", "target id " + std::to_string(targets[n]) + " at position " + std::to_string(n) +
                                    " is outside the vocabulary [0, " + std::to_string(V) + ")");
        if (targets[n] >= 0) ++count;
    }
    std::vector<double> row_loss(size_t(N), 0.0);
    parallel_for(N, threads, rows_per_task(V), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            if (targets[n] < 0) { lse[n] = 0.f; continue; }
            const float* l = logits + n * V;
            float mx = l[0];
            for (int j = 1; j < V; ++j) mx = std::max(mx, l[j]);
            double s = 0;
            for (int j = 0; j < V; ++j) s += double(std::exp(l[j] - mx));  // fp32 exp, fp64 sum
            const double z = double(mx) + std::log(s);
            lse[n] = float(z);
            row_loss[size_t(n)] = z - double(l[targets[n]]);
        }
    });
    double sum = 0;
    for (double v : row_loss) sum += v;
    if (scored) *scored = count;
    return count ? sum / double(count) : 0.0;
}

void cross_entropy_backward(float* dlogits, const float* logits, const float* lse, const int* targets, int64_t N,
                            int V, float dloss, int threads) {
    parallel_for(N, threads, rows_per_task(V), [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) {
            float* d = dlogits + n * V;
            if (targets[n] < 0) { std::memset(d, 0, size_t(V) * sizeof(float)); continue; }
            const float* l = logits + n * V;
            const float z = lse[n];
            for (int j = 0; j < V; ++j) d[j] = std::exp(l[j] - z) * dloss;
            d[targets[n]] -= dloss;
        }
    });
}

}  // namespace loftq::ops
