// test_model.cpp: the CPU LLaMA decoder (engine/model) against independent float64 references
// written here: each op's fp32 backward vs float64 central differences of a float64
// re-implementation; every LoRA gradient of a tiny two-layer model (untied llama, and tied qwen2
// with q/k/v bias) vs float64 finite differences of a float64 whole-model forward; the real
// stories260K forward vs a float64 forward that reads the llama2.c .bin directly (interleaved
// RoPE, so the checkpoint's q/k row permutation is checked too); greedy generation reproducing
// the model author's published sample; loading errors; and the LoftQ / QLoRA / export starts.
// Tolerances (stated per check): per-op gradients 2e-4 and whole-model gradients 1e-3 of the
// tensor's largest |gradient| (fp32 analytic vs float64 FD, whose own error is ~1e-9); forward
// outputs 1e-5 (ops) and 1e-4 (stories260K) of the largest |value|.
// Leaves out: the optimizer and training loop (test_train), speed (printed, not asserted).
#include <QtTest>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "io/peft_adapter.h"
#include "io/safetensors.h"
#include "linalg/blas.h"
#include "loftq/decompose.h"
#include "export/quantize.h"
#include "model/llama.h"
#include "model/llama_cpu.h"
#include "model/ops.h"
#include "quant/quantizer.h"
#include "expect_error.h"
#include "test_support.h"
#include "train_fixtures.h"

using namespace loftq;
using loftq::test::read_file;
using loftq::test::write_file;
namespace fs = std::filesystem;

namespace {

using dvec = std::vector<double>;

std::vector<float> normal_floats(size_t n, Rng& rng, double sigma) {
    std::vector<float> v(n);
    for (auto& x : v) x = float(sigma * rng.normal());
    return v;
}
dvec to_d(const float* p, size_t n) { return dvec(p, p + n); }
dvec to_d(const std::vector<float>& v) { return dvec(v.begin(), v.end()); }

// Passes when max |got - ref| <= tol * max |ref| + floor; prints one line either way.
bool check_close(const std::string& what, const float* got, const dvec& ref, double tol, double floor = 1e-9) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        md = std::max(md, std::abs(double(got[i]) - ref[i]));
        mr = std::max(mr, std::abs(ref[i]));
    }
    if (std::isnan(md)) md = std::numeric_limits<double>::infinity();
    const bool ok = md <= tol * mr + floor;
    qInfo("  %-62s max|diff| %.3e  max|ref| %.3e  rel %.2e %s", what.c_str(), md, mr, mr > 0 ? md / mr : 0.0,
          ok ? "" : "  <-- FAIL");
    return ok;
}

// d loss / d x_i by central differences in float64 (x perturbed in place and restored).
dvec central_diff(dvec& x, const std::function<double()>& loss, double h = 1e-6) {
    dvec g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const double lp = loss();
        x[i] = x0 - h;
        const double lm = loss();
        x[i] = x0;
        g[i] = (lp - lm) / (2 * h);
    }
    return g;
}

double dot(const dvec& a, const dvec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

// ---------------------------------------------------------------------------------------------
// float64 reference ops, written from the definitions (not from engine/model)

dvec ref_rmsnorm(const dvec& x, const dvec& w, int64_t N, int C, double eps) {
    dvec out(x.size());
    for (int64_t n = 0; n < N; ++n) {
        double ms = 0;
        for (int c = 0; c < C; ++c) ms += x[size_t(n * C + c)] * x[size_t(n * C + c)];
        const double r = 1.0 / std::sqrt(ms / C + eps);
        for (int c = 0; c < C; ++c) out[size_t(n * C + c)] = x[size_t(n * C + c)] * r * w[size_t(c)];
    }
    return out;
}

// Rotates one token's heads at position pos. HF: pairs (i, i + d/2); llama2.c: pairs (2i, 2i+1);
// both with angle pos * theta^(-2i/d).
void ref_rope_row(double* x, int heads, int d, int pos, double theta, bool interleaved) {
    for (int h = 0; h < heads; ++h) {
        double* p = x + h * d;
        for (int i = 0; i < d / 2; ++i) {
            const double ang = pos * std::pow(theta, -2.0 * i / d);
            const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + d / 2;
            const double x0 = p[a], x1 = p[b];
            p[a] = x0 * std::cos(ang) - x1 * std::sin(ang);
            p[b] = x0 * std::sin(ang) + x1 * std::cos(ang);
        }
    }
}

dvec ref_rope(dvec x, int B, int T, int heads, int d, double theta) {
    for (int n = 0; n < B * T; ++n) ref_rope_row(x.data() + size_t(n) * heads * d, heads, d, n % T, theta, false);
    return x;
}

dvec ref_attention(const dvec& q, const dvec& k, const dvec& v, int B, int T, int H, int KVH, int d) {
    dvec y(size_t(B) * T * H * d, 0.0);
    for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h) {
            const int kh = h / (H / KVH);
            for (int t = 0; t < T; ++t) {
                dvec s(size_t(t) + 1);
                double mx = -1e300;
                for (int j = 0; j <= t; ++j) {
                    double a = 0;
                    for (int i = 0; i < d; ++i)
                        a += q[size_t(((b * T + t) * H + h) * d + i)] * k[size_t(((b * T + j) * KVH + kh) * d + i)];
                    s[size_t(j)] = a / std::sqrt(double(d));
                    mx = std::max(mx, s[size_t(j)]);
                }
                double z = 0;
                for (auto& e : s) { e = std::exp(e - mx); z += e; }
                for (int j = 0; j <= t; ++j)
                    for (int i = 0; i < d; ++i)
                        y[size_t(((b * T + t) * H + h) * d + i)] +=
                            s[size_t(j)] / z * v[size_t(((b * T + j) * KVH + kh) * d + i)];
            }
        }
    return y;
}

double silu(double g) { return g / (1 + std::exp(-g)); }

dvec ref_swiglu(const dvec& g, const dvec& u) {
    dvec h(g.size());
    for (size_t i = 0; i < g.size(); ++i) h[i] = silu(g[i]) * u[i];
    return h;
}

// y = x W^T + bias + scale (x A^T) B^T
dvec ref_lora_linear(const dvec& x, const dvec& W, const dvec& bias, const dvec& A, const dvec& Bm, int64_t N,
                     int64_t in, int64_t out, int r, double scale) {
    dvec y(size_t(N * out));
    for (int64_t n = 0; n < N; ++n) {
        dvec xa(size_t(r), 0.0);
        for (int j = 0; j < r; ++j)
            for (int64_t i = 0; i < in; ++i) xa[size_t(j)] += A[size_t(j * in + i)] * x[size_t(n * in + i)];
        for (int64_t o = 0; o < out; ++o) {
            double s = bias.empty() ? 0.0 : bias[size_t(o)];
            for (int64_t i = 0; i < in; ++i) s += W[size_t(o * in + i)] * x[size_t(n * in + i)];
            for (int j = 0; j < r; ++j) s += scale * Bm[size_t(o * r + j)] * xa[size_t(j)];
            y[size_t(n * out + o)] = s;
        }
    }
    return y;
}

double ref_cross_entropy(const dvec& logits, const std::vector<int>& targets, int64_t N, int V) {
    double sum = 0;
    int count = 0;
    for (int64_t n = 0; n < N; ++n) {
        if (targets[size_t(n)] < 0) continue;
        double mx = -1e300;
        for (int j = 0; j < V; ++j) mx = std::max(mx, logits[size_t(n * V + j)]);
        double z = 0;
        for (int j = 0; j < V; ++j) z += std::exp(logits[size_t(n * V + j)] - mx);
        sum += mx + std::log(z) - logits[size_t(n * V + targets[size_t(n)])];
        ++count;
    }
    return count ? sum / count : 0.0;
}

// ---------------------------------------------------------------------------------------------
// float64 reference of the whole decoder (one token row at a time)

struct RefLayer {
    dvec attn_norm, ffn_norm;
    dvec W[kLoraSites], bias[3], A[kLoraSites], B[kLoraSites];
    int r[kLoraSites] = {};
    double scale[kLoraSites] = {};
};

struct RefModel {
    int C = 0, F = 0, L = 0, H = 0, KVH = 0, V = 0;
    double eps = 1e-5, theta = 10000;
    bool interleaved = false;
    dvec embed, final_norm, lm_head;  // lm_head empty: tied to embed
    std::vector<RefLayer> layers;

    dvec norm(const dvec& x, const dvec& w) const { return ref_rmsnorm(x, w, 1, int(x.size()), eps); }
    dvec lin(const dvec& x, const RefLayer& ly, int s) const {
        const int64_t in = int64_t(x.size()), out = int64_t(ly.W[s].size()) / in;
        return ref_lora_linear(x, ly.W[s], s < 3 ? ly.bias[s] : dvec{}, ly.A[s], ly.B[s], 1, in, out, ly.r[s],
                               ly.scale[s]);
    }
    // logits, (B*T) x V
    dvec logits(const std::vector<int>& tokens, int B, int T) const {
        const int d = C / H;
        dvec out(size_t(B) * T * V);
        for (int b = 0; b < B; ++b) {
            std::vector<dvec> x(static_cast<size_t>(T));
            for (int t = 0; t < T; ++t) {
                const int tok = tokens[size_t(b * T + t)];
                x[size_t(t)].assign(embed.begin() + tok * C, embed.begin() + (tok + 1) * C);
            }
            for (const RefLayer& ly : layers) {
                std::vector<dvec> q(static_cast<size_t>(T)), k(static_cast<size_t>(T)), v(static_cast<size_t>(T));
                for (int t = 0; t < T; ++t) {
                    const dvec xn = norm(x[size_t(t)], ly.attn_norm);
                    q[size_t(t)] = lin(xn, ly, 0);
                    k[size_t(t)] = lin(xn, ly, 1);
                    v[size_t(t)] = lin(xn, ly, 2);
                    ref_rope_row(q[size_t(t)].data(), H, d, t, theta, interleaved);
                    ref_rope_row(k[size_t(t)].data(), KVH, d, t, theta, interleaved);
                }
                for (int t = 0; t < T; ++t) {
                    dvec att(size_t(C), 0.0);
                    for (int h = 0; h < H; ++h) {
                        const int kh = h / (H / KVH);
                        dvec s(size_t(t) + 1);
                        double mx = -1e300, z = 0;
                        for (int j = 0; j <= t; ++j) {
                            double a = 0;
                            for (int i = 0; i < d; ++i) a += q[size_t(t)][size_t(h * d + i)] * k[size_t(j)][size_t(kh * d + i)];
                            s[size_t(j)] = a / std::sqrt(double(d));
                            mx = std::max(mx, s[size_t(j)]);
                        }
                        for (auto& e : s) { e = std::exp(e - mx); z += e; }
                        for (int j = 0; j <= t; ++j)
                            for (int i = 0; i < d; ++i) att[size_t(h * d + i)] += s[size_t(j)] / z * v[size_t(j)][size_t(kh * d + i)];
                    }
                    const dvec o = lin(att, ly, 3);
                    for (int c = 0; c < C; ++c) x[size_t(t)][size_t(c)] += o[size_t(c)];
                }
                for (int t = 0; t < T; ++t) {
                    const dvec xn = norm(x[size_t(t)], ly.ffn_norm);
                    const dvec g = lin(xn, ly, 4), u = lin(xn, ly, 5);
                    const dvec dn = lin(ref_swiglu(g, u), ly, 6);
                    for (int c = 0; c < C; ++c) x[size_t(t)][size_t(c)] += dn[size_t(c)];
                }
            }
            const dvec& head = lm_head.empty() ? embed : lm_head;
            for (int t = 0; t < T; ++t) {
                const dvec xf = norm(x[size_t(t)], final_norm);
                for (int j = 0; j < V; ++j) {
                    double s = 0;
                    for (int c = 0; c < C; ++c) s += head[size_t(j * C + c)] * xf[size_t(c)];
                    out[size_t((b * T + t) * V + j)] = s;
                }
            }
        }
        return out;
    }
};

// ---------------------------------------------------------------------------------------------
// tiny checkpoints written here (F32, so the loaded weights equal the reference's exactly)

struct NamedTensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> data;
};

struct TinySpec {
    std::string model_type = "llama";
    bool bias = false, tied = false;
    int C = 16, F = 40, L = 2, H = 4, KVH = 2, V = 32;
};

std::vector<NamedTensor> tiny_tensors(const TinySpec& s, uint64_t seed) {
    Rng rng(seed);
    const int64_t C = s.C, F = s.F, KV = C / s.H * s.KVH, V = s.V;
    std::vector<NamedTensor> ts;
    auto add = [&](const std::string& n, std::vector<int64_t> shape, double sigma, double mean = 0) {
        int64_t numel = 1;
        for (auto d : shape) numel *= d;
        auto v = normal_floats(size_t(numel), rng, sigma);
        for (auto& x : v) x += float(mean);
        ts.push_back({n, std::move(shape), std::move(v)});
    };
    add("model.embed_tokens.weight", {V, C}, 0.7);
    for (int l = 0; l < s.L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {C}, 0.1, 1.0);
        add(p + "self_attn.q_proj.weight", {C, C}, 0.4);
        add(p + "self_attn.k_proj.weight", {KV, C}, 0.4);
        add(p + "self_attn.v_proj.weight", {KV, C}, 0.4);
        if (s.bias) {
            add(p + "self_attn.q_proj.bias", {C}, 0.2);
            add(p + "self_attn.k_proj.bias", {KV}, 0.2);
            add(p + "self_attn.v_proj.bias", {KV}, 0.2);
        }
        add(p + "self_attn.o_proj.weight", {C, C}, 0.25);
        add(p + "post_attention_layernorm.weight", {C}, 0.1, 1.0);
        add(p + "mlp.gate_proj.weight", {F, C}, 0.3);
        add(p + "mlp.up_proj.weight", {F, C}, 0.3);
        add(p + "mlp.down_proj.weight", {C, F}, 0.16);
    }
    add("model.norm.weight", {C}, 0.1, 1.0);
    if (!s.tied) add("lm_head.weight", {V, C}, 0.3);
    return ts;
}

const NamedTensor& tensor(const std::vector<NamedTensor>& ts, const std::string& name) {
    for (const auto& t : ts)
        if (t.name == name) return t;
    throw std::runtime_error("test: no tensor " + name);
}
NamedTensor& tensor(std::vector<NamedTensor>& ts, const std::string& name) {
    return const_cast<NamedTensor&>(tensor(static_cast<const std::vector<NamedTensor>&>(ts), name));
}

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& ts) {
    std::vector<OutTensor> layout;
    for (const auto& t : ts) layout.push_back({t.name, DType::F32, "", t.shape, uint64_t(t.data.size()) * 4});
    SafetensorsWriter w(path, layout, {{"format", "pt"}});
    for (const auto& t : ts) w.write(t.name, t.data.data(), t.data.size() * 4);
    w.finish();
    w.commit();
}

void write_tiny(const std::string& dir, const TinySpec& s, const std::vector<NamedTensor>& ts) {
    fs::create_directories(dir);
    write_safetensors(dir + "/model.safetensors", ts);
    const nlohmann::json cfg = test::llama_config_json(s.model_type, s.C, s.F, s.L, s.H, s.KVH, s.V, s.tied, 64);
    write_file(dir + "/config.json", cfg.dump(2));
}

const char* kSiteNames[kLoraSites] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                      "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};

RefModel ref_from_tiny(const TinySpec& s, const std::vector<NamedTensor>& ts) {
    RefModel m;
    m.C = s.C; m.F = s.F; m.L = s.L; m.H = s.H; m.KVH = s.KVH; m.V = s.V;
    m.embed = to_d(tensor(ts, "model.embed_tokens.weight").data);
    m.final_norm = to_d(tensor(ts, "model.norm.weight").data);
    if (!s.tied) m.lm_head = to_d(tensor(ts, "lm_head.weight").data);
    for (int l = 0; l < s.L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        RefLayer ly;
        ly.attn_norm = to_d(tensor(ts, p + "input_layernorm.weight").data);
        ly.ffn_norm = to_d(tensor(ts, p + "post_attention_layernorm.weight").data);
        for (int i = 0; i < kLoraSites; ++i) ly.W[i] = to_d(tensor(ts, p + kSiteNames[i] + ".weight").data);
        if (s.bias)
            for (int i = 0; i < 3; ++i) ly.bias[i] = to_d(tensor(ts, p + kSiteNames[i] + ".bias").data);
        m.layers.push_back(std::move(ly));
    }
    return m;
}

LoadOptions load_opts(const std::string& model, InitKind init, int rank = 4, double alpha = 0, uint64_t seed = 0) {
    LoadOptions o;
    o.model = model;
    o.init = init;
    o.rank = rank;
    o.lora_alpha = alpha;
    o.seed = seed;
    o.threads = 2;
    return o;
}

LlamaCpu& cpu(LlamaModel& m) { return dynamic_cast<LlamaCpu&>(m); }

// Effective weight W + scale * B A of a site, float64.
dvec effective_weight(LlamaCpu& m, int l, LoraSite s) {
    const LoraSlot& sl = m.slot(l, s);
    const float* W = m.site_weight(l, s);
    dvec w(W, W + sl.out * sl.in);
    for (int64_t o = 0; o < sl.out; ++o)
        for (int64_t i = 0; i < sl.in; ++i) {
            double acc = 0;
            for (int j = 0; j < sl.rank; ++j) acc += double(sl.B[o * sl.rank + j]) * double(sl.A[j * sl.in + i]);
            w[size_t(o * sl.in + i)] += double(sl.scale) * acc;
        }
    return w;
}

// ---------------------------------------------------------------------------------------------
// llama2.c files read directly

struct Llama2cFile {
    int dim = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0, seq = 0;
    std::vector<float> f;  // every float after the header
};

Llama2cFile read_llama2c(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    Llama2cFile r;
    int32_t h[7];
    in.read(reinterpret_cast<char*>(h), sizeof h);
    r.dim = h[0]; r.hidden = h[1]; r.layers = h[2]; r.heads = h[3]; r.kv_heads = h[4]; r.vocab = h[5]; r.seq = h[6];
    std::string rest((std::istreambuf_iterator<char>(in)), {});
    r.f.resize(rest.size() / 4);
    std::memcpy(r.f.data(), rest.data(), r.f.size() * 4);
    return r;
}

// The llama2.c arrays in file order, raw (interleaved RoPE rows, no permutation).
RefModel ref_from_llama2c(const Llama2cFile& m) {
    RefModel r;
    r.C = m.dim; r.F = m.hidden; r.L = m.layers; r.H = m.heads; r.KVH = m.kv_heads; r.V = std::abs(m.vocab);
    r.interleaved = true;
    const size_t C = size_t(m.dim), F = size_t(m.hidden), L = size_t(m.layers), KV = C / size_t(m.heads) * size_t(m.kv_heads),
                 V = size_t(r.V);
    size_t off = 0;
    auto take = [&](size_t n) { dvec v(m.f.begin() + long(off), m.f.begin() + long(off + n)); off += n; return v; };
    r.embed = take(V * C);
    r.layers.resize(L);
    for (auto& ly : r.layers) ly.attn_norm = take(C);
    for (auto& ly : r.layers) ly.W[0] = take(C * C);
    for (auto& ly : r.layers) ly.W[1] = take(KV * C);
    for (auto& ly : r.layers) ly.W[2] = take(KV * C);
    for (auto& ly : r.layers) ly.W[3] = take(C * C);
    for (auto& ly : r.layers) ly.ffn_norm = take(C);
    for (auto& ly : r.layers) ly.W[4] = take(F * C);  // w1 = gate
    for (auto& ly : r.layers) ly.W[6] = take(C * F);  // w2 = down
    for (auto& ly : r.layers) ly.W[5] = take(F * C);  // w3 = up
    r.final_norm = take(C);
    off += size_t(m.seq) * (C / size_t(m.heads));  // legacy RoPE tables
    if (m.vocab < 0) r.lm_head = take(V * C);
    return r;
}

// tok512.bin: int32 max_len, then per token: float score, int32 length, bytes.
std::vector<std::string> read_vocab(const std::string& path, int n) {
    std::ifstream in(path, std::ios::binary);
    int32_t max_len = 0;
    in.read(reinterpret_cast<char*>(&max_len), 4);
    std::vector<std::string> v(static_cast<size_t>(n));
    for (auto& s : v) {
        float score;
        int32_t len;
        in.read(reinterpret_cast<char*>(&score), 4);
        in.read(reinterpret_cast<char*>(&len), 4);
        s.resize(static_cast<size_t>(len));
        in.read(s.data(), len);
    }
    return v;
}

// As llama2.c's decode: the piece after BOS loses its leading space; "<0xNN>" is a raw byte.
std::string decode(const std::vector<std::string>& vocab, const std::vector<int>& ids) {
    std::string out;
    for (size_t i = 1; i < ids.size(); ++i) {
        std::string piece = vocab[size_t(ids[i])];
        if (ids[i - 1] == 1 && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
        unsigned byte = 0;
        if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%02X>", &byte) == 1) piece = std::string(1, char(byte));
        out += piece;
    }
    return out;
}

std::string stories_dir() {
    const std::string s = test::shared_dir();
    return s.empty() ? s : s + "/models/stories260K";
}

}  // namespace

class TestModel : public QObject {
    Q_OBJECT
private slots:
    // ---- 1. per-op gradients: loss = sum(out * G) for a fixed random G; fp32 analytic backward
    // vs float64 central differences (h = 1e-6) of the float64 reference op. Tolerance 2e-4 of
    // the largest |gradient| of each tensor.

    void rmsnormGradients() {
        const int64_t N = 3;
        const int C = 8;
        const float eps = 1e-5f;
        Rng rng(1);
        auto x = normal_floats(size_t(N * C), rng, 1.0), w = normal_floats(size_t(C), rng, 0.3);
        for (auto& e : w) e += 1.f;
        auto G = normal_floats(x.size(), rng, 1.0);
        std::vector<float> out(x.size()), rstd(static_cast<size_t>(N)), dx(x.size(), 0.5f), dw(size_t(C), 0.f);
        ops::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps, 2);
        ops::rmsnorm_backward(dx.data(), dw.data(), G.data(), x.data(), w.data(), rstd.data(), N, C, 2);
        for (auto& e : dx) e -= 0.5f;  // dx accumulates (residual path): it was pre-filled with 0.5
        dvec xd = to_d(x), wd = to_d(w), Gd = to_d(G);
        auto loss = [&] { return dot(ref_rmsnorm(xd, wd, N, C, eps), Gd); };
        QVERIFY(check_close("rmsnorm out", out.data(), ref_rmsnorm(xd, wd, N, C, eps), 1e-5));
        QVERIFY(check_close("rmsnorm dx (accumulated onto 0.5)", dx.data(), central_diff(xd, loss), 2e-4));
        QVERIFY(check_close("rmsnorm dw", dw.data(), central_diff(wd, loss), 2e-4));
    }

    void ropeGradients() {
        const int B = 2, T = 5, heads = 3, d = 8;
        LlamaConfig c;
        c.dim = heads * d;
        c.n_heads = heads;
        c.rope_theta = 10000.f;
        auto inv = ops::rope_inv_freq(c);
        std::vector<float> cs(size_t(T * d / 2)), sn(cs.size());
        ops::rope_table(cs.data(), sn.data(), T, inv);
        Rng rng(2);
        auto x = normal_floats(size_t(B * T * heads * d), rng, 1.0), G = normal_floats(x.size(), rng, 1.0);
        std::vector<float> y = x, dx = G;
        ops::rope_forward(y.data(), B, T, heads, d, cs.data(), sn.data(), 2);
        ops::rope_backward(dx.data(), B, T, heads, d, cs.data(), sn.data(), 2);
        dvec xd = to_d(x), Gd = to_d(G);
        auto loss = [&] { return dot(ref_rope(xd, B, T, heads, d, 10000.0), Gd); };
        QVERIFY(check_close("rope out (HF rotate-half)", y.data(), ref_rope(xd, B, T, heads, d, 10000.0), 1e-5));
        QVERIFY(check_close("rope dx", dx.data(), central_diff(xd, loss), 2e-4));
    }

    // rope_scaling from config.json: "llama3" keeps short wavelengths (< original / high_freq_factor),
    // divides long ones (> original / low_freq_factor) by factor, and blends monotonically between;
    // "linear" divides every frequency by factor. Checked as properties against plain theta^(-2i/d).
    void ropeScaling() {
        ModelConfig mc;
        mc.model_type = "llama";
        mc.hidden = 2048;
        mc.n_heads = 32;
        mc.rope_theta = 500000.0;
        mc.raw = nlohmann::json::parse(R"({"rope_scaling": {"rope_type": "llama3", "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})");
        const LlamaConfig c = llama_config_from(mc);
        QCOMPARE(QString::fromStdString(c.rope_scaling), QString("llama3"));
        const auto f = ops::rope_inv_freq(c);
        QCOMPARE(int(f.size()), 32);
        const double pi = 3.14159265358979323846;
        int kept = 0, divided = 0, blended = 0;
        for (int i = 0; i < 32; ++i) {
            const double f0 = std::pow(500000.0, -2.0 * i / 64), wl = 2 * pi / f0;
            if (wl < 8192.0 / 4) { QCOMPARE(f[size_t(i)], f0); ++kept; }
            else if (wl > 8192.0) { QVERIFY(std::abs(f[size_t(i)] - f0 / 32) <= 1e-15 * f0); ++divided; }
            else { QVERIFY(f[size_t(i)] <= f0 && f[size_t(i)] >= f0 / 32); ++blended; }
            if (i > 0) QVERIFY(f[size_t(i)] < f[size_t(i - 1)]);
        }
        qInfo("  llama3 rope scaling: %d frequencies kept, %d divided by 32, %d blended", kept, divided, blended);
        QVERIFY(kept > 0 && divided > 0 && blended > 0);
        mc.raw = nlohmann::json::parse(R"({"rope_scaling": {"type": "linear", "factor": 4.0}})");
        const auto fl = ops::rope_inv_freq(llama_config_from(mc));
        for (int i = 0; i < 32; ++i) QVERIFY(std::abs(fl[size_t(i)] - std::pow(500000.0, -2.0 * i / 64) / 4) <= 1e-15);
    }

    void attentionGradients() {
        const int B = 2, T = 5, H = 4, KVH = 2, d = 4;
        Rng rng(3);
        auto q = normal_floats(size_t(B * T * H * d), rng, 1.0), k = normal_floats(size_t(B * T * KVH * d), rng, 1.0),
             v = normal_floats(k.size(), rng, 1.0), G = normal_floats(q.size(), rng, 1.0);
        std::vector<float> y(q.size()), att(size_t(B * H * T * T), -1.f), dq(q.size()), dk(k.size(), 9.f), dv(v.size(), 9.f);
        ops::attention_forward(y.data(), att.data(), q.data(), k.data(), v.data(), B, T, H, KVH, d, 2);
        ops::attention_backward(dq.data(), dk.data(), dv.data(), G.data(), att.data(), q.data(), k.data(), v.data(), B, T,
                                H, KVH, d, 2);
        bool masked = true;
        for (int bh = 0; bh < B * H; ++bh)
            for (int t = 0; t < T; ++t)
                for (int j = t + 1; j < T; ++j) masked &= att[size_t((bh * T + t) * T + j)] == 0.f;
        QVERIFY2(masked, "attention probabilities above the diagonal must be 0 (causal)");
        dvec qd = to_d(q), kd = to_d(k), vd = to_d(v), Gd = to_d(G);
        auto loss = [&] { return dot(ref_attention(qd, kd, vd, B, T, H, KVH, d), Gd); };
        QVERIFY(check_close("attention out (GQA 4/2, causal)", y.data(), ref_attention(qd, kd, vd, B, T, H, KVH, d), 1e-5));
        QVERIFY(check_close("attention dq", dq.data(), central_diff(qd, loss), 2e-4));
        QVERIFY(check_close("attention dk (overwritten)", dk.data(), central_diff(kd, loss), 2e-4));
        QVERIFY(check_close("attention dv (overwritten)", dv.data(), central_diff(vd, loss), 2e-4));
    }

    void swigluGradients() {
        const int64_t n = 24;
        Rng rng(4);
        auto g = normal_floats(size_t(n), rng, 2.0), u = normal_floats(size_t(n), rng, 1.0), G = normal_floats(size_t(n), rng, 1.0);
        std::vector<float> h(static_cast<size_t>(n)), dg(static_cast<size_t>(n)), du(static_cast<size_t>(n));
        ops::swiglu_forward(h.data(), g.data(), u.data(), n, 2);
        ops::swiglu_backward(dg.data(), du.data(), G.data(), g.data(), u.data(), n, 2);
        dvec gd = to_d(g), ud = to_d(u), Gd = to_d(G);
        auto loss = [&] { return dot(ref_swiglu(gd, ud), Gd); };
        QVERIFY(check_close("swiglu out", h.data(), ref_swiglu(gd, ud), 1e-5));
        QVERIFY(check_close("swiglu dg", dg.data(), central_diff(gd, loss), 2e-4));
        QVERIFY(check_close("swiglu du", du.data(), central_diff(ud, loss), 2e-4));
    }

    void loraLinearGradients() {
        const int64_t N = 3, in = 6, out = 5;
        const int r = 2;
        const float scale = 1.5f;
        Rng rng(5);
        auto x = normal_floats(size_t(N * in), rng, 1.0), W = normal_floats(size_t(out * in), rng, 0.5),
             bias = normal_floats(size_t(out), rng, 0.5), A = normal_floats(size_t(r * in), rng, 0.5),
             Bm = normal_floats(size_t(out * r), rng, 0.5), G = normal_floats(size_t(N * out), rng, 1.0);
        ops::LoraLinear L{W.data(), bias.data(), A.data(), Bm.data(), in, out, r, scale};
        std::vector<float> y(size_t(N * out)), xa(size_t(N * r)), dxa(size_t(N * r));
        std::vector<float> dx(x.size(), 7.f), dx_acc(x.size(), 0.25f), dA(A.size(), 0.f), dB(Bm.size(), 0.f),
            db(bias.size(), 0.f);
        ops::lora_linear_forward(y.data(), xa.data(), x.data(), N, L);
        ops::lora_linear_backward(dx.data(), false, dA.data(), dB.data(), db.data(), G.data(), x.data(), xa.data(),
                                  dxa.data(), N, L);
        ops::lora_linear_backward(dx_acc.data(), true, dA.data(), dB.data(), db.data(), G.data(), x.data(), xa.data(),
                                  dxa.data(), N, L);
        // Parameters accumulate: two backward calls give twice the gradient.
        for (auto* v : {&dA, &dB, &db})
            for (auto& e : *v) e *= 0.5f;
        for (auto& e : dx_acc) e -= 0.25f;
        dvec xd = to_d(x), Wd = to_d(W), bd = to_d(bias), Ad = to_d(A), Bd = to_d(Bm), Gd = to_d(G);
        auto fwd = [&] { return ref_lora_linear(xd, Wd, bd, Ad, Bd, N, in, out, r, scale); };
        auto loss = [&] { return dot(fwd(), Gd); };
        QVERIFY(check_close("lora linear out (bias, scale 1.5)", y.data(), fwd(), 1e-5));
        const dvec gx = central_diff(xd, loss);
        QVERIFY(check_close("lora linear dx (overwrite)", dx.data(), gx, 2e-4));
        QVERIFY(check_close("lora linear dx (accumulate onto 0.25)", dx_acc.data(), gx, 2e-4));
        QVERIFY(check_close("lora linear dA (x2 accumulated / 2)", dA.data(), central_diff(Ad, loss), 2e-4));
        QVERIFY(check_close("lora linear dB (x2 accumulated / 2)", dB.data(), central_diff(Bd, loss), 2e-4));
        QVERIFY(check_close("lora linear dbias", db.data(), central_diff(bd, loss), 2e-4));
    }

    void crossEntropyGradients() {
        const int64_t N = 5;
        const int V = 7;
        const std::vector<int> targets = {3, -1, 0, 6, -1};
        Rng rng(6);
        auto logits = normal_floats(size_t(N * V), rng, 2.0);
        std::vector<float> lse(static_cast<size_t>(N)), dl(logits.size(), 5.f);
        int64_t scored = 0;
        const double loss32 = ops::cross_entropy_forward(lse.data(), logits.data(), targets.data(), N, V, &scored, 2);
        QCOMPARE(scored, int64_t(3));
        ops::cross_entropy_backward(dl.data(), logits.data(), lse.data(), targets.data(), N, V, 1.f / float(scored), 2);
        dvec ld = to_d(logits);
        auto loss = [&] { return ref_cross_entropy(ld, targets, N, V); };
        const double ref = loss();
        qInfo("  cross-entropy loss %.9f  ref %.9f  diff %.2e", loss32, ref, std::abs(loss32 - ref));
        QVERIFY(std::abs(loss32 - ref) <= 1e-6 * std::abs(ref));
        QVERIFY(check_close("cross-entropy dlogits (2 of 5 rows ignored)", dl.data(), central_diff(ld, loss), 2e-4));
        for (int j = 0; j < V; ++j) QCOMPARE(dl[size_t(1 * V + j)], 0.f);
        std::vector<int> none(size_t(N), -1);
        QCOMPARE(ops::cross_entropy_forward(lse.data(), logits.data(), none.data(), N, V, &scored, 1), 0.0);
        QCOMPARE(scored, int64_t(0));
    }

    void embeddingGradients() {
        const int64_t N = 6;
        const int C = 3, V = 5;
        const std::vector<int> tokens = {4, 0, 4, 2, 2, 4};
        Rng rng(7);
        auto table = normal_floats(size_t(V * C), rng, 1.0), G = normal_floats(size_t(N * C), rng, 1.0);
        std::vector<float> out(size_t(N * C)), dt(table.size(), 0.f);
        ops::embedding_forward(out.data(), tokens.data(), table.data(), N, C, V);
        ops::embedding_backward(dt.data(), G.data(), tokens.data(), N, C);
        dvec td = to_d(table), Gd = to_d(G);
        auto fwd = [&] {
            dvec o(size_t(N * C));
            for (int64_t n = 0; n < N; ++n)
                for (int c = 0; c < C; ++c) o[size_t(n * C + c)] = td[size_t(tokens[size_t(n)] * C + c)];
            return o;
        };
        auto loss = [&] { return dot(fwd(), Gd); };
        QVERIFY(check_close("embedding out", out.data(), fwd(), 0.0));
        QVERIFY(check_close("embedding dtable (repeated ids)", dt.data(), central_diff(td, loss), 2e-4));
        std::vector<int> bad = {0, 5};
        EXPECT_ERROR(ops::embedding_forward(out.data(), bad.data(), table.data(), 2, C, V), "token id 5", "position 1");
    }

    // ---- 2. whole-model LoRA gradients: tiny model (2 layers, dim 16, 4 heads / 2 kv heads,
    // hidden 40, vocab 32, B 2 x T 6), every site adapted at rank 4 with alpha 8 (scale 2) and
    // nonzero A and B; loss and logits vs the float64 reference forward (1e-5), every LoRA
    // gradient vs float64 central differences of that reference (1e-3 of the tensor's largest
    // |gradient|).
    void wholeModelGradients_data() {
        QTest::addColumn<QString>("type");
        QTest::addColumn<bool>("bias");
        QTest::addColumn<bool>("tied");
        QTest::newRow("llama untied") << "llama" << false << false;
        QTest::newRow("qwen2 tied, qkv bias") << "qwen2" << true << true;
    }
    void wholeModelGradients() {
        QFETCH(QString, type);
        QFETCH(bool, bias);
        QFETCH(bool, tied);
        TinySpec spec;
        spec.model_type = type.toStdString();
        spec.bias = bias;
        spec.tied = tied;
        const auto ts = tiny_tensors(spec, 11);
        const std::string dir = test::make_temp_dir("model_grad");
        write_tiny(dir, spec, ts);
        auto model = load_llama(load_opts(dir, InitKind::Lora16, 4, 8.0));
        const LlamaConfig& c = model->config();
        QCOMPARE(c.qkv_bias, bias);
        QCOMPARE(c.tied_embeddings, tied);
        RefModel ref = ref_from_tiny(spec, ts);

        // Nonzero LoRA factors, mirrored into the reference.
        Rng rng(12);
        std::map<std::string, TrainableTensor> byname;
        auto tt = model->trainable();
        QCOMPARE(int(tt.size()), 2 * kLoraSites * spec.L);
        QCOMPARE(QString::fromStdString(tt[0].name),
                 QString("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
        for (auto& t : tt) {
            for (int64_t i = 0; i < t.numel(); ++i) t.value[i] = float(0.3 * rng.normal());
            byname[t.name] = t;
        }
        for (int l = 0; l < spec.L; ++l)
            for (int s = 0; s < kLoraSites; ++s) {
                const std::string mp = lora_module_path(l, LoraSite(s));
                const auto& A = byname.at(peft_lora_key(mp, 'A'));
                const auto& Bt = byname.at(peft_lora_key(mp, 'B'));
                QCOMPARE(model->lora_rank(l, LoraSite(s)), 4);
                QCOMPARE(model->lora_scale(l, LoraSite(s)), 2.f);
                RefLayer& ly = ref.layers[size_t(l)];
                ly.r[s] = 4;
                ly.scale[s] = 2.0;
                ly.A[s] = to_d(A.value, size_t(A.numel()));
                ly.B[s] = to_d(Bt.value, size_t(Bt.numel()));
            }

        const int B = 2, T = 6;
        std::vector<int> tokens(size_t(B * T)), targets(size_t(B * T));
        for (auto& t : tokens) t = int(rng.next() % 32);
        for (auto& t : targets) t = int(rng.next() % 32);
        targets[2] = -1;
        targets[7] = -1;
        const float loss = model->forward(tokens.data(), targets.data(), B, T);
        QCOMPARE(model->scored_tokens(), int64_t(10));
        model->zero_grad();
        model->backward();
        const dvec ref_logits = ref.logits(tokens, B, T);
        const double ref_loss = ref_cross_entropy(ref_logits, targets, B * T, 32);
        qInfo("  loss %.7f  ref %.7f", double(loss), ref_loss);
        QVERIFY(std::abs(double(loss) - ref_loss) <= 1e-5 * std::abs(ref_loss));
        QVERIFY(check_close("logits", model->logits(), ref_logits, 1e-5));

        bool all_ok = true;
        for (int l = 0; l < spec.L; ++l)
            for (int s = 0; s < kLoraSites; ++s) {
                RefLayer& ly = ref.layers[size_t(l)];
                auto loss_fn = [&] { return ref_cross_entropy(ref.logits(tokens, B, T), targets, B * T, 32); };
                const std::string mp = lora_module_path(l, LoraSite(s));
                const auto& A = byname.at(peft_lora_key(mp, 'A'));
                const auto& Bt = byname.at(peft_lora_key(mp, 'B'));
                all_ok &= check_close(mp + " dA", A.grad, central_diff(ly.A[s], loss_fn), 1e-3);
                all_ok &= check_close(mp + " dB", Bt.grad, central_diff(ly.B[s], loss_fn), 1e-3);
            }
        QVERIFY(all_ok);

        // Gradients accumulate across backward calls; zero_grad clears them.
        const float g0 = tt[0].grad[0];
        model->forward(tokens.data(), targets.data(), B, T);
        model->backward();
        QCOMPARE(tt[0].grad[0], 2 * g0);
        model->zero_grad();
        QCOMPARE(tt[0].grad[0], 0.f);
    }

    // The training step is bit-identical for any thread count: logits, loss and every LoRA
    // gradient with 1, 2 and 3 threads (tile_gemm splits 32-column panels, attention (batch, kv
    // head) pairs, the elementwise ops rows; each element's arithmetic is fixed). Shapes with
    // several 32-column panels, a 16-wide one and tails.
    void trainingStepThreadCountInvariant() {
        TinySpec spec;
        spec.C = 64;
        spec.F = 136;
        spec.H = 4;
        spec.KVH = 2;
        spec.V = 120;
        const auto ts = tiny_tensors(spec, 21);
        const std::string dir = test::make_temp_dir("model_threads");
        write_tiny(dir, spec, ts);
        auto model = load_llama(load_opts(dir, InitKind::Lora16, 8, 16.0));
        Rng rng(22);
        auto tt = model->trainable();
        for (auto& t : tt)
            for (int64_t i = 0; i < t.numel(); ++i) t.value[i] = float(0.2 * rng.normal());
        const int B = 3, T = 37;
        std::vector<int> tokens(size_t(B * T)), targets(size_t(B * T));
        for (auto& t : tokens) t = int(rng.next() % uint64_t(spec.V));
        for (auto& t : targets) t = int(rng.next() % uint64_t(spec.V));
        std::vector<float> logits1;
        std::vector<std::vector<float>> grads1;
        float loss1 = 0;
        for (int threads : {1, 2, 3}) {
            model->set_threads(threads);
            const float loss = model->forward(tokens.data(), targets.data(), B, T);
            model->zero_grad();
            model->backward();
            std::vector<float> logits(model->logits(), model->logits() + size_t(B * T) * size_t(spec.V));
            std::vector<std::vector<float>> grads;
            for (auto& t : tt) grads.emplace_back(t.grad, t.grad + t.numel());
            if (threads == 1) {
                loss1 = loss;
                logits1 = logits;
                grads1 = grads;
                continue;
            }
            QCOMPARE(loss, loss1);
            QVERIFY2(std::memcmp(logits.data(), logits1.data(), logits.size() * sizeof(float)) == 0, "logits");
            for (size_t i = 0; i < tt.size(); ++i)
                QVERIFY2(std::memcmp(grads[i].data(), grads1[i].data(), grads[i].size() * sizeof(float)) == 0,
                         tt[i].name.c_str());
        }
    }

    // ---- 3. stories260K: logits of two sequences vs a float64 forward that reads the llama2.c
    // file directly with interleaved RoPE pairs. Tolerance 1e-4 of the largest |logit|.
    void stories260KForward() {
        const std::string d = stories_dir();
        if (d.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): stories260K test skipped");
        const Llama2cFile raw = read_llama2c(d + "/stories260K.bin");
        const RefModel ref = ref_from_llama2c(raw);
        auto model = load_llama(load_opts(d + "/stories260K.bin", InitKind::Lora16, 8));
        const LlamaConfig& c = model->config();
        QCOMPARE(c.dim, 64);
        QCOMPARE(c.n_kv_heads, 4);
        QVERIFY(c.tied_embeddings);
        const int B = 2, T = 20;
        Rng rng(21);
        std::vector<int> tokens(size_t(B * T));
        for (auto& t : tokens) t = int(rng.next() % 512);
        tokens[0] = tokens[size_t(T)] = 1;
        model->forward(tokens.data(), nullptr, B, T);
        QVERIFY(check_close("stories260K logits vs llama2.c float64 (B 2 x T 20)", model->logits(),
                            ref.logits(tokens, B, T), 1e-4));
    }

    // ---- 4. greedy sampling from BOS reproduces the author's published sample (SOURCE.txt).
    // Also prints forward+backward speed at B 4 x T 128.
    void stories260KGreedySample() {
        const std::string d = stories_dir();
        if (d.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): stories260K test skipped");
        auto model = load_llama(load_opts(d + "/stories260K.bin", InitKind::Lora16, 8));
        const auto vocab = read_vocab(d + "/tok512.bin", 512);
        std::vector<int> ids = {1};
        for (int step = 0; step < 100; ++step) {
            model->forward(ids.data(), nullptr, 1, int(ids.size()));
            const float* row = model->logits() + (ids.size() - 1) * 512;
            ids.push_back(int(std::max_element(row, row + 512) - row));
        }
        const std::string text = decode(vocab, ids);
        qInfo("  greedy sample: %s", text.c_str());
        const std::string expect =
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
        QCOMPARE(QString::fromStdString(text.substr(0, expect.size())), QString::fromStdString(expect));
        const std::string longer = expect + " One day, she saw a big, red ball. She wanted to play with it, but it was too high.";
        qInfo("  matches the longer published sample too: %s", text.compare(0, longer.size(), longer) == 0 ? "yes" : "no");

        const int B = 4, T = 128;
        std::vector<int> tok(size_t(B * T)), tgt(size_t(B * T));
        Rng rng(31);
        for (auto& t : tok) t = int(rng.next() % 512);
        for (size_t i = 0; i < tok.size(); ++i) tgt[i] = i + 1 < tok.size() ? tok[i + 1] : -1;
        model->forward(tok.data(), tgt.data(), B, T);
        model->backward();
        const int reps = 5;
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) {
            model->forward(tok.data(), tgt.data(), B, T);
            model->zero_grad();
            model->backward();
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
        qInfo("  stories260K forward+backward B %d x T %d, %d threads: %.1f ms/step", B, T, cpu(*model).threads(), ms);
    }

    // ---- 5. loading errors name the file and tensor.
    void loadErrors() {
        TinySpec spec;
        const auto good = tiny_tensors(spec, 41);
        {
            auto ts = good;
            ts.erase(std::remove_if(ts.begin(), ts.end(), [](const NamedTensor& t) { return t.name == "model.layers.1.mlp.up_proj.weight"; }),
                     ts.end());
            const std::string dir = test::make_temp_dir("model_missing");
            write_tiny(dir, spec, ts);
            EXPECT_ERROR(load_llama(load_opts(dir, InitKind::Lora16)), "model.layers.1.mlp.up_proj.weight", "missing");
        }
        {
            auto ts = good;
            auto& k = tensor(ts, "model.layers.0.self_attn.k_proj.weight");
            k.shape = {16, 16};
            k.data.resize(256, 0.1f);
            const std::string dir = test::make_temp_dir("model_shape");
            write_tiny(dir, spec, ts);
            EXPECT_ERROR(load_llama(load_opts(dir, InitKind::Lora16)), "model.safetensors",
                         "model.layers.0.self_attn.k_proj.weight", "shape [16, 16]", "[8, 16]");
        }
        // The config against the tensors, before anything is sized from it: num_hidden_layers
        // 2^31 - 1 allocated until the OOM killer came; rope_theta <= 0 failed later as "diverged".
        // (The vocabulary's error names the tensor that disagrees with the config.)
        for (const auto& [key, value, file, needle] : std::vector<std::tuple<const char*, nlohmann::json, const char*, const char*>>{
                 {"num_hidden_layers", 2147483647, "/config.json", "holds tensors of 2 layers"},
                 {"num_hidden_layers", 3, "/config.json", "holds tensors of 2 layers"},
                 {"vocab_size", 2147483647, "/model.safetensors", "'model.embed_tokens.weight': shape [32, 16] differs"},
                 {"rope_theta", 0.0, "/config.json", "rope_theta"},
                 {"rope_theta", -10000.0, "/config.json", "rope_theta"},
                 {"rms_norm_eps", -1e-6, "/config.json", "rms_norm_eps"}}) {
            const std::string dir = test::make_temp_dir("model_config");
            write_tiny(dir, spec, good);
            nlohmann::json cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
            cfg[key] = value;
            write_file(dir + "/config.json", cfg.dump());
            QElapsedTimer t;
            t.start();
            EXPECT_ERROR(load_llama(load_opts(dir, InitKind::Lora16)), dir + file, needle);
            QVERIFY2(t.elapsed() < 1000, qPrintable(QString("%1: %2 ms").arg(key).arg(t.elapsed())));
        }
        {
            auto ts = good;
            tensor(ts, "model.layers.1.self_attn.v_proj.weight").data[5] = std::numeric_limits<float>::quiet_NaN();
            const std::string dir = test::make_temp_dir("model_nan");
            write_tiny(dir, spec, ts);
            EXPECT_ERROR(load_llama(load_opts(dir, InitKind::Lora16)), "model.layers.1.self_attn.v_proj.weight", "NaN");
        }
        {
            auto ts = good;
            ts.push_back({"model.layers.0.self_attn.o_proj.bias", {16}, std::vector<float>(16, 0.f)});
            const std::string dir = test::make_temp_dir("model_extra");
            write_tiny(dir, spec, ts);
            EXPECT_ERROR(load_llama(load_opts(dir, InitKind::Lora16)), "model.layers.0.self_attn.o_proj.bias", "not supported");
        }
        {
            // An export whose loftq_init has a rank-3 lora_A where adapter_config.json says r = 4.
            const std::string dir = test::make_temp_dir("model_rank");
            write_tiny(dir, spec, good);
            fs::create_directories(dir + "/loftq_init");
            std::vector<NamedTensor> ad;
            for (int l = 0; l < 2; ++l) {
                const int r = l == 1 ? 3 : 4;
                const std::string mp = lora_module_path(l, LoraSite::Q);
                ad.push_back({peft_lora_key(mp, 'A'), {r, 16}, std::vector<float>(size_t(r * 16), 0.01f)});
                ad.push_back({peft_lora_key(mp, 'B'), {16, r}, std::vector<float>(size_t(r * 16), 0.01f)});
            }
            write_safetensors(dir + "/loftq_init/adapter_model.safetensors", ad);
            write_file(dir + "/loftq_init/adapter_config.json", R"({"r": 4, "lora_alpha": 8, "rank_pattern": {}, "alpha_pattern": {}})");
            EXPECT_ERROR(load_llama(load_opts(dir, InitKind::Export)), "adapter_model.safetensors",
                         "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", "rank 3");
        }
        {
            const std::string dir = test::make_temp_dir("model_ok");
            write_tiny(dir, spec, good);
            auto m = load_llama(load_opts(dir, InitKind::Lora16));
            std::vector<int> tok = {1, 2, 3};
            m->forward(tok.data(), nullptr, 1, 3);
            EXPECT_ERROR(m->backward(), "no targets");
            tok[1] = 32;
            EXPECT_ERROR(m->forward(tok.data(), nullptr, 1, 3), "token id 32");
            LoadOptions o = load_opts(dir, InitKind::Qlora);
            o.quant = "nf5";
            EXPECT_ERROR(load_llama(o), "unknown quantizer 'nf5'");
        }
    }

    // ---- 5b. the starts: LoftQ (base + (alpha/r) B A == the decomposition's Q + B A), an export
    // written by run_quantize loaded back (rank_pattern honoured, identical to the in-memory LoftQ
    // start), QLoRA (base = q(W), B = 0, A within the kaiming bound), 16-bit LoRA and an export
    // without loftq_init (QLoRA-style adapters on the stored weights).
    void initKinds() {
        set_blas_threads(1);  // the decompositions below must equal the loader's (which runs at 1)
        TinySpec spec;
        const auto ts = tiny_tensors(spec, 51);
        const std::string dir = test::make_temp_dir("model_init");
        write_tiny(dir, spec, ts);
        const uint64_t seed = 5;

        LoadOptions lo = load_opts(dir, InitKind::Loftq, 4, 8.0, seed);
        lo.quant = "nf4";
        lo.block = 64;
        lo.iters = 2;
        auto loftq = load_llama(lo);
        double max_q = 0, max_eff = 0, max_ref = 0;
        for (int l = 0; l < spec.L; ++l)
            for (int s = 0; s < kLoraSites; ++s) {
                const std::string name = lora_module_path(l, LoraSite(s)) + ".weight";
                const auto& W = tensor(ts, name);
                WeightSettings ws;
                ws.quant = QuantKind::NF4;
                ws.block = 64;
                ws.rank = 4;
                ws.iters = 2;
                SvdOptions so;
                so.seed = weight_seed(seed, name, 0);
                Decomposition d = loftq_decompose(W.data.data(), W.shape[0], W.shape[1], ws, so, 1);
                LlamaCpu& m = cpu(*loftq);
                QCOMPARE(m.slot(l, LoraSite(s)).scale, 2.f);
                const float* base = m.site_weight(l, LoraSite(s));
                const dvec eff = effective_weight(m, l, LoraSite(s));
                for (size_t i = 0; i < d.Q.size(); ++i) {
                    double qba = d.Q.buf[i];
                    const int64_t o = int64_t(i) / W.shape[1], in = int64_t(i) % W.shape[1];
                    for (int j = 0; j < 4; ++j) qba += double(d.lr.B.at(o, j)) * double(d.lr.A.at(j, in));
                    max_q = std::max(max_q, std::abs(double(base[i]) - double(d.Q.buf[i])));
                    max_eff = std::max(max_eff, std::abs(eff[i] - qba));
                    max_ref = std::max(max_ref, std::abs(qba));
                }
            }
        qInfo("  LoftQ start: max|base - Q| %.3e, max|base + 2 B'A' - (Q + B A)| %.3e (max %.3f)", max_q, max_eff, max_ref);
        QCOMPARE(max_q, 0.0);
        QVERIFY(max_eff <= 1e-6 * max_ref);

        // An export of the same settings (one weight at rank 2 via an override) loads back to the
        // same start.
        QuantizeOptions qo;
        qo.model = dir;
        qo.out_dir = test::make_temp_dir("model_export") + "/out";
        qo.threads = 2;
        qo.checksums = false;
        qo.plan.defaults.quant = QuantKind::NF4;
        qo.plan.defaults.block = 64;
        qo.plan.defaults.rank = 4;
        qo.plan.defaults.iters = 2;
        qo.plan.seed = seed;
        qo.plan.lora_alpha = 8.0;
        SettingsPatch p;
        p.rank = 2;
        qo.plan.overrides["model.layers.1.mlp.down_proj.weight"] = p;
        CancelToken cancel;
        run_quantize(qo, {}, cancel);
        auto exp = load_llama(load_opts(qo.out_dir, InitKind::Export));
        QCOMPARE(exp->lora_rank(1, LoraSite::Down), 2);
        QCOMPARE(exp->lora_scale(1, LoraSite::Down), 4.f);
        double max_diff = 0;
        for (int l = 0; l < spec.L; ++l)
            for (int s = 0; s < kLoraSites; ++s) {
                if (l == 1 && s == int(LoraSite::Down)) continue;
                QCOMPARE(exp->lora_rank(l, LoraSite(s)), 4);
                QCOMPARE(exp->lora_scale(l, LoraSite(s)), 2.f);
                const dvec a = effective_weight(cpu(*exp), l, LoraSite(s)), b = effective_weight(cpu(*loftq), l, LoraSite(s));
                for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
            }
        qInfo("  export (loftq_init) vs in-memory LoftQ start: max|diff| of W + s B A %.3e", max_diff);
        QVERIFY(max_diff <= 1e-6);

        // QLoRA: base = deq(q(W)) exactly, B = 0, A in the kaiming-uniform bound.
        LoadOptions qlo = load_opts(dir, InitKind::Qlora, 4, 0, 3);
        auto qlora = load_llama(qlo);
        auto lora16 = load_llama(load_opts(dir, InitKind::Lora16, 4, 0, 3));
        auto plain_export = load_llama(load_opts(dir, InitKind::Export, 4, 0, 3));
        for (int l = 0; l < spec.L; ++l)
            for (int s = 0; s < kLoraSites; ++s) {
                const std::string name = lora_module_path(l, LoraSite(s)) + ".weight";
                const auto& W = tensor(ts, name);
                std::vector<float> qd(W.data.size());
                quantize_dequantize(quant_format(QuantKind::NF4), W.data.data(), W.data.size(), 64, qd.data(), nullptr, nullptr);
                LlamaCpu& q = cpu(*qlora);
                const LoraSlot& sl = q.slot(l, LoraSite(s));
                QCOMPARE(sl.scale, 1.f);
                QVERIFY(std::memcmp(q.site_weight(l, LoraSite(s)), qd.data(), qd.size() * 4) == 0);
                QVERIFY(std::all_of(sl.B, sl.B + sl.out * sl.rank, [](float x) { return x == 0.f; }));
                const float bound = 1.f / std::sqrt(float(sl.in));
                QVERIFY(std::all_of(sl.A, sl.A + sl.rank * sl.in, [&](float x) { return std::abs(x) <= bound; }));
                QVERIFY(std::any_of(sl.A, sl.A + sl.rank * sl.in, [](float x) { return x != 0.f; }));
                // 16-bit LoRA and a plain folder opened as an export: base = W, same A draw, B = 0.
                for (LlamaModel* mm : {lora16.get(), plain_export.get()}) {
                    LlamaCpu& m = cpu(*mm);
                    const LoraSlot& s2 = m.slot(l, LoraSite(s));
                    QVERIFY(std::memcmp(m.site_weight(l, LoraSite(s)), W.data.data(), W.data.size() * 4) == 0);
                    QVERIFY(std::memcmp(s2.A, sl.A, size_t(sl.rank * sl.in) * 4) == 0);
                    QVERIFY(std::all_of(s2.B, s2.B + s2.out * s2.rank, [](float x) { return x == 0.f; }));
                }
            }
        set_blas_threads(2);
    }
};

QTEST_MAIN(TestModel)
#include "test_model.moc"
