// codebook.cpp: the code tables of every quantization format (NF4/NF3/NF2 normal-float and
// uniform int2/int3/int4/int8), their fp32 decision thresholds, the one QuantFormat table that
// callers look up, and the QLoRA normal-float construction with its inverse normal CDF.
// Leaves out the quantize/dequantize loops and bit packing (quantizer.cpp).
//
// NF4 and NF2 are hard-coded exactly as docs/ALGORITHM.md lists them (bitsandbytes / PEFT NFQuantizer
// tables); NF3 has no published table and is built by nf_codebook_construct(3), the same recipe
// that reproduces NF4 and NF2 bit for bit (tested in tests/test_quant.cpp).
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>

#include "quant/quantizer.h"

namespace loftq {

namespace {

// ---- hard-coded tables (float32 literals, ascending) ----
constexpr float kNF4[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};
constexpr float kNF2[4] = {-1.0f, 0.0f, 0.33791524171829224f, 1.0f};  // a subset of NF4

// The offset of the asymmetric normal float: Phi^-1(offset) becomes the table's +1.
constexpr float kNFOffset = 0.9677083f;

// ---- inverse standard normal CDF, accurate to about 1e-16 relative ----
// A rational first guess (Acklam-style coefficients, ~1e-9 relative), then Halley steps on
// f(x) = Phi(x) - p with Phi from erfc (glibc erfc is accurate to ~1 ulp). Halley converges
// cubically, so two steps take 1e-9 to the rounding level of double.
double normal_cdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752440); }

double inv_normal_cdf(double p) {
    if (!(p > 0.0)) return -std::numeric_limits<double>::infinity();
    if (!(p < 1.0)) return std::numeric_limits<double>::infinity();
    static constexpr double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                    1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static constexpr double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                    6.680131188771972e+01,  -1.328068155288572e+01};
    static constexpr double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                    -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static constexpr double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                    3.754408661907416e+00};
    const double plow = 0.02425;
    double x;
    if (p < plow) {  // lower tail
        double q = std::sqrt(-2.0 * std::log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else if (p <= 1.0 - plow) {  // central region
        double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    } else {  // upper tail, by symmetry
        double q = std::sqrt(-2.0 * std::log1p(-p));
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    // Halley refinement: e = Phi(x) - p, u = e / phi(x), x -= u / (1 + x u / 2).
    for (int it = 0; it < 3; ++it) {
        double e = normal_cdf(x) - p;
        double u = e * 2.50662827463100050242 * std::exp(0.5 * x * x);  // e / phi(x)
        x -= u / (1.0 + 0.5 * x * u);
    }
    return x;
}

// torch.linspace(start, end, steps) for float32 on CPU: step = (end - start) / (steps - 1) in
// float; the first half counts up from start, the second half down from end (all float ops).
std::vector<float> linspace_f32(float start, float end, int steps) {
    std::vector<float> v(size_t(std::max(steps, 0)));
    if (steps == 1) v[0] = start;
    if (steps < 2) return v;
    const float step = (end - start) / float(steps - 1);
    const int halfway = steps / 2;
    for (int i = 0; i < steps; ++i) {
        if (i < halfway) {
            float t = step * float(i);
            v[size_t(i)] = start + t;
        } else {
            float t = step * float(steps - i - 1);
            v[size_t(i)] = end - t;
        }
    }
    return v;
}

// thresh[i] = the largest float <= the exact midpoint of t[i], t[i+1]. The double sum of two
// floats of similar magnitude is exact, and halving is exact, so `m` is the true midpoint.
void make_thresholds(const float* t, int levels, float* thresh) {
    for (int i = 0; i + 1 < levels; ++i) {
        double m = (double(t[i]) + double(t[i + 1])) * 0.5;
        float f = float(m);
        if (double(f) > m) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
        thresh[i] = f;
    }
}

// Storage of all tables: 256 entries is enough for int8; each format uses its first `levels`.
struct Tables {
    std::array<std::array<float, 256>, 7> table{};
    std::array<std::array<float, 255>, 7> thresh{};
    std::array<QuantFormat, 7> formats{};
};

const Tables& tables() {
    static const Tables T = [] {
        Tables t;
        struct Spec { QuantKind kind; const char* name; int bits; };
        const Spec specs[7] = {{QuantKind::NF4, "nf4", 4},   {QuantKind::NF3, "nf3", 3},
                               {QuantKind::NF2, "nf2", 2},   {QuantKind::INT2, "int2", 2},
                               {QuantKind::INT3, "int3", 3}, {QuantKind::INT4, "int4", 4},
                               {QuantKind::INT8, "int8", 8}};
        for (const Spec& s : specs) {
            const size_t k = size_t(s.kind);
            const int levels = 1 << s.bits;
            float* tab = t.table[k].data();
            switch (s.kind) {
            case QuantKind::NF4: std::copy(kNF4, kNF4 + 16, tab); break;
            case QuantKind::NF2: std::copy(kNF2, kNF2 + 4, tab); break;
            case QuantKind::NF3: {
                std::vector<float> v = nf_codebook_construct(3);
                std::copy(v.begin(), v.end(), tab);
                break;
            }
            default:  // uniform symmetric absmax: t_i = -1 + 2 i / (L - 1), in double, rounded
                for (int i = 0; i < levels; ++i) tab[i] = float(-1.0 + 2.0 * double(i) / double(levels - 1));
                break;
            }
            make_thresholds(tab, levels, t.thresh[k].data());
            t.formats[k] = QuantFormat{s.kind, s.name, s.bits, levels, tab, t.thresh[k].data()};
        }
        return t;
    }();
    return T;
}

}  // namespace

std::vector<float> nf_codebook_construct(int bits) {
    if (bits < 1 || bits > 8) return {};
    const int half = 1 << (bits - 1);
    // Positive part: Phi^-1 of linspace(offset, 0.5, half + 1) without its last point (0.5);
    // negative part: -Phi^-1 of linspace(offset, 0.5, half) without its last point; one 0.
    // As in the Python reference, Phi^-1 is evaluated in double and each value rounded to
    // float32 (torch.Tensor(list)); the division by the max is a float32 division.
    std::vector<float> v;
    v.reserve(size_t(2 * half));
    std::vector<float> pos = linspace_f32(kNFOffset, 0.5f, half + 1);
    for (int i = 0; i < half; ++i) v.push_back(float(inv_normal_cdf(double(pos[size_t(i)]))));
    v.push_back(0.0f);
    std::vector<float> neg = linspace_f32(kNFOffset, 0.5f, half);
    for (int i = 0; i + 1 < half; ++i) v.push_back(float(-inv_normal_cdf(double(neg[size_t(i)]))));
    std::sort(v.begin(), v.end());
    const float mx = v.back();
    for (float& x : v) x = x / mx;
    return v;
}

const QuantFormat& quant_format(QuantKind k) { return tables().formats[size_t(k)]; }

std::optional<QuantKind> quant_kind_from_name(std::string_view name) {
    for (const QuantFormat& f : tables().formats) {
        std::string_view n = f.name;
        if (n.size() != name.size()) continue;
        bool eq = true;
        for (size_t i = 0; i < n.size() && eq; ++i)
            eq = std::tolower(static_cast<unsigned char>(name[i])) == static_cast<unsigned char>(n[i]);
        if (eq) return f.kind;
    }
    return std::nullopt;
}

const std::vector<QuantKind>& all_quant_kinds() {
    static const std::vector<QuantKind> kinds = {QuantKind::NF4,  QuantKind::NF3,  QuantKind::NF2, QuantKind::INT2,
                                                 QuantKind::INT3, QuantKind::INT4, QuantKind::INT8};
    return kinds;
}

}  // namespace loftq
