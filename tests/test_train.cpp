// test_train.cpp: LoRA fine-tuning (engine/train): AdamW, the LR schedule and clipping against a
// float64 reference written here; run_finetune on a small synthetic LLaMA with the demo corpus
// and tokenizer (loss goes down, events and metrics.jsonl, the PEFT adapter folder, resume
// bit-identical to an uninterrupted run, cancel keeping the last checkpoint with no partial files,
// settings checks); and, with ../shared, run_eval of the real stories260K (llama2.c) against an
// independent float64 llama2.c forward (interleaved RoPE, raw .bin floats), its published greedy
// sample, and `loftq convert` to an HF folder giving the same logits and loss. Device choice
// (CPU-only checks, every build): the CUDA device without a usable GPU is a clear error, auto
// falls back to the CPU and says so, bf16 GEMMs on the CPU are refused in words the GUI can show
// (no CLI flags), and `loftq bench-finetune` runs on the CPU. The device itself is tested in
// test_cuda_train.
#include <QtTest>

#include <csignal>

#include <sys/resource.h>

#include <tuple>

#include <cmath>
#include <thread>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fsutil.h"
#include "expect_error.h"
#include "io/safetensors.h"
#include "io/synthetic_model.h"
#include "device/compute_device.h"
#include "linalg/blas.h"
#include "export/quantize.h"
#include "model/llama.h"
#include "train/adamw.h"
#include "train/adapter_writer.h"
#include "train/dataset.h"
#include "train/demo_data.h"
#include "train/generate.h"
#include "train/tokenizer.h"
#include "train/train_checkpoint.h"
#include "train/trainer.h"
#include "test_support.h"
#include "train_fixtures.h"

using namespace loftq;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// ---- float64 AdamW reference (PyTorch AdamW, decoupled weight decay) ----
struct RefAdam {
    std::vector<double> w, m, v;
    int t = 0;
    void step(const std::vector<double>& g, double lr, double b1, double b2, double eps, double wd) {
        ++t;
        for (size_t i = 0; i < w.size(); ++i) {
            w[i] -= lr * wd * w[i];
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
            w[i] -= lr * mh / (std::sqrt(vh) + eps);
        }
    }
};

std::vector<std::string> files_under(const std::string& dir) {
    std::vector<std::string> v;
    std::error_code ec;
    if (!fs::exists(dir, ec)) return v;
    for (auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) v.push_back(e.path().string());
    return v;
}
int count_partials(const std::string& dir) {
    int n = 0;
    for (auto& f : files_under(dir)) n += f.find(".partial") != std::string::npos;
    return n;
}
std::string file_text(const std::string& p) { return read_text_file(p); }

// name -> raw bytes of every tensor in a safetensors file.
std::map<std::string, std::string> tensor_bytes(const std::string& path) {
    auto f = SafetensorsFile::open(path);
    std::map<std::string, std::string> m;
    for (auto& t : f->tensors()) m[t.name] = std::string(reinterpret_cast<const char*>(f->data(t)), t.nbytes());
    return m;
}


TrainOptions synth_opts(const test::Synth& s, const std::string& out) {
    TrainOptions o;
    o.load.model = s.model;
    o.load.init = InitKind::Loftq;
    o.load.quant = "nf4";
    o.load.rank = 4;
    o.load.iters = 2;
    o.load.seed = 1;
    o.data = s.data;
    o.eval_data = s.eval;
    o.out_dir = out;
    o.steps = 12;
    o.batch = 4;
    o.seq = 32;
    o.accum = 1;
    o.lr = 5e-3;
    o.warmup = 2;
    o.eval_every = 4;
    o.eval_batches = 4;
    o.sample_tokens = 6;
    o.seed = 3;
    o.threads = 2;
    return o;
}

QString cli_path() {
    QString p = QString::fromLocal8Bit(qgetenv("LOFTQ_CLI"));
    if (p.isEmpty()) p = QCoreApplication::applicationDirPath() + "/loftq";
    return QFile::exists(p) ? p : QString();
}
struct Run { int code; QString out, err; };
Run run_cli(const QStringList& args, int timeout_ms = 120000) {
    QProcess p;
    p.start(cli_path(), args);
    if (!p.waitForFinished(timeout_ms)) { p.kill(); p.waitForFinished(); return {-1, "", "timeout"}; }
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, QString::fromUtf8(p.readAllStandardOutput()),
            QString::fromUtf8(p.readAllStandardError())};
}

// ---- independent float64 llama2.c forward (run.c's maths, interleaved RoPE) ----
struct L2cModel {
    int dim = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0, seq_len = 0;
    bool shared = true;
    std::vector<double> emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
};
L2cModel read_l2c(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    int32_t h[7];
    in.read(reinterpret_cast<char*>(h), sizeof h);
    L2cModel m;
    m.dim = h[0]; m.hidden = h[1]; m.layers = h[2]; m.heads = h[3]; m.kv_heads = h[4];
    m.shared = h[5] > 0; m.vocab = std::abs(h[5]); m.seq_len = h[6];
    const int64_t D = m.dim, F = m.hidden, L = m.layers, hs = D / m.heads, KV = hs * m.kv_heads, V = m.vocab;
    auto rd = [&](std::vector<double>& v, int64_t n) {
        std::vector<float> f(static_cast<size_t>(n));
        in.read(reinterpret_cast<char*>(f.data()), std::streamsize(n * 4));
        v.assign(f.begin(), f.end());
    };
    rd(m.emb, V * D); rd(m.rms_att, L * D); rd(m.wq, L * D * D); rd(m.wk, L * KV * D); rd(m.wv, L * KV * D);
    rd(m.wo, L * D * D); rd(m.rms_ffn, L * D); rd(m.w1, L * F * D); rd(m.w2, L * D * F); rd(m.w3, L * F * D);
    rd(m.rms_final, D);
    std::vector<double> skip;
    rd(skip, int64_t(m.seq_len) * hs);  // legacy freq_cis_real, freq_cis_imag
    if (!m.shared) rd(m.wcls, V * D);
    if (!in) throw std::runtime_error("short llama2.c file");
    return m;
}
void matvec(const double* W, const double* x, double* y, int64_t out, int64_t inn) {
    for (int64_t i = 0; i < out; ++i) {
        double s = 0;
        for (int64_t j = 0; j < inn; ++j) s += W[i * inn + j] * x[j];
        y[i] = s;
    }
}
void rmsnorm(const double* x, const double* w, double* o, int64_t n) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
    double r = 1.0 / std::sqrt(ss / double(n) + 1e-5);
    for (int64_t i = 0; i < n; ++i) o[i] = x[i] * r * w[i];
}
// Logits (T x V) of one sequence.
std::vector<double> l2c_logits(const L2cModel& m, const std::vector<int>& tokens) {
    const int64_t D = m.dim, F = m.hidden, hs = D / m.heads, KV = hs * m.kv_heads, V = m.vocab, T = int64_t(tokens.size());
    const int64_t grp = m.heads / m.kv_heads;
    std::vector<double> x(size_t(T * D));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < D; ++i) x[size_t(t * D + i)] = m.emb[size_t(tokens[size_t(t)] * D + i)];
    auto vec = [](int64_t n) { return std::vector<double>(static_cast<size_t>(n)); };
    std::vector<double> xn = vec(D), q = vec(T * D), k = vec(T * KV), v = vec(T * KV), att = vec(T * D), o = vec(D),
                        h1 = vec(F), h3 = vec(F), sc = vec(T);
    for (int64_t l = 0; l < m.layers; ++l) {
        const double* wq = &m.wq[size_t(l * D * D)];
        const double* wk = &m.wk[size_t(l * KV * D)];
        const double* wv = &m.wv[size_t(l * KV * D)];
        const double* wo = &m.wo[size_t(l * D * D)];
        for (int64_t t = 0; t < T; ++t) {
            rmsnorm(&x[size_t(t * D)], &m.rms_att[size_t(l * D)], xn.data(), D);
            matvec(wq, xn.data(), &q[size_t(t * D)], D, D);
            matvec(wk, xn.data(), &k[size_t(t * KV)], KV, D);
            matvec(wv, xn.data(), &v[size_t(t * KV)], KV, D);
            for (int64_t i = 0; i < D; i += 2) {  // llama2.c: rotate pairs (i, i+1)
                const int64_t hd = i % hs;
                const double freq = 1.0 / std::pow(10000.0, double(hd) / double(hs));
                const double val = double(t) * freq, c = std::cos(val), s = std::sin(val);
                double* qv = &q[size_t(t * D + i)];
                double a = qv[0], b = qv[1];
                qv[0] = a * c - b * s; qv[1] = a * s + b * c;
                if (i < KV) {
                    double* kv = &k[size_t(t * KV + i)];
                    a = kv[0]; b = kv[1];
                    kv[0] = a * c - b * s; kv[1] = a * s + b * c;
                }
            }
        }
        for (int64_t t = 0; t < T; ++t)
            for (int64_t hh = 0; hh < m.heads; ++hh) {
                const int64_t kh = hh / grp;
                double mx = -1e300;
                for (int64_t u = 0; u <= t; ++u) {
                    double s = 0;
                    for (int64_t i = 0; i < hs; ++i) s += q[size_t(t * D + hh * hs + i)] * k[size_t(u * KV + kh * hs + i)];
                    sc[size_t(u)] = s / std::sqrt(double(hs));
                    mx = std::max(mx, sc[size_t(u)]);
                }
                double z = 0;
                for (int64_t u = 0; u <= t; ++u) z += (sc[size_t(u)] = std::exp(sc[size_t(u)] - mx));
                for (int64_t i = 0; i < hs; ++i) {
                    double s = 0;
                    for (int64_t u = 0; u <= t; ++u) s += sc[size_t(u)] / z * v[size_t(u * KV + kh * hs + i)];
                    att[size_t(t * D + hh * hs + i)] = s;
                }
            }
        for (int64_t t = 0; t < T; ++t) {
            matvec(wo, &att[size_t(t * D)], o.data(), D, D);
            for (int64_t i = 0; i < D; ++i) x[size_t(t * D + i)] += o[size_t(i)];
            rmsnorm(&x[size_t(t * D)], &m.rms_ffn[size_t(l * D)], xn.data(), D);
            matvec(&m.w1[size_t(l * F * D)], xn.data(), h1.data(), F, D);
            matvec(&m.w3[size_t(l * F * D)], xn.data(), h3.data(), F, D);
            for (int64_t i = 0; i < F; ++i) h1[size_t(i)] = h1[size_t(i)] / (1 + std::exp(-h1[size_t(i)])) * h3[size_t(i)];
            matvec(&m.w2[size_t(l * D * F)], h1.data(), o.data(), D, F);
            for (int64_t i = 0; i < D; ++i) x[size_t(t * D + i)] += o[size_t(i)];
        }
    }
    std::vector<double> logits(size_t(T * V));
    const double* wcls = m.shared ? m.emb.data() : m.wcls.data();
    for (int64_t t = 0; t < T; ++t) {
        rmsnorm(&x[size_t(t * D)], m.rms_final.data(), xn.data(), D);
        matvec(wcls, xn.data(), &logits[size_t(t * V)], V, D);
    }
    return logits;
}

}  // namespace

class TestTrain : public QObject {
    Q_OBJECT
    test::Synth synth;
    bool have_model_ = false;

    static std::string shared(const std::string& rel) {
        std::string d = test::shared_dir();
        return d.empty() ? "" : d + "/" + rel;
    }

private slots:
    void initTestCase() {
        synth = test::make_synth("train-synth", 64, 160);
        have_model_ = true;
    }

    // ---------------------------------------------------------------- optimizer
    void adamwMatchesFloat64Reference() {
        // Two tensors, several steps with changing gradients, weight decay, bias correction.
        std::vector<float> w1 = test::gaussian(24, 1), w2 = test::gaussian(10, 2), g1(24), g2(10);
        std::vector<TrainableTensor> ps = {{"a", w1.data(), g1.data(), 4, 6}, {"b", w2.data(), g2.data(), 10, 1}};
        AdamWParams p;
        p.beta1 = 0.9; p.beta2 = 0.95; p.eps = 1e-8; p.weight_decay = 0.1;
        AdamW opt(ps, p);
        RefAdam r1, r2;
        r1.w.assign(w1.begin(), w1.end()); r1.m.assign(24, 0); r1.v.assign(24, 0);
        r2.w.assign(w2.begin(), w2.end()); r2.m.assign(10, 0); r2.v.assign(10, 0);
        for (int s = 0; s < 6; ++s) {
            auto ga = test::gaussian(24, 100 + s, 0.5 + s), gb = test::gaussian(10, 200 + s, 1e-3);
            std::copy(ga.begin(), ga.end(), g1.begin());
            std::copy(gb.begin(), gb.end(), g2.begin());
            const double lr = 1e-2 * (s + 1);
            opt.step(ps, lr);
            r1.step(std::vector<double>(ga.begin(), ga.end()), lr, p.beta1, p.beta2, p.eps, p.weight_decay);
            r2.step(std::vector<double>(gb.begin(), gb.end()), lr, p.beta1, p.beta2, p.eps, p.weight_decay);
        }
        QCOMPARE(opt.t(), int64_t(6));
        double worst = 0;
        for (size_t i = 0; i < 24; ++i) worst = std::max(worst, std::abs(w1[i] - r1.w[i]) / (1e-6 + std::abs(r1.w[i])));
        for (size_t i = 0; i < 10; ++i) worst = std::max(worst, std::abs(w2[i] - r2.w[i]) / (1e-6 + std::abs(r2.w[i])));
        for (size_t i = 0; i < 24; ++i) worst = std::max(worst, std::abs(opt.m()[0][i] - r1.m[i]) / (1e-9 + std::abs(r1.m[i])));
        qInfo("AdamW vs float64: max relative difference %.3g", worst);
        QVERIFY(worst < 1e-5);
        // Bias correction matters: after one step from zero moments |update| == lr (no decay).
        std::vector<float> w = {1.f, -2.f}, g = {3.f, -1e-4f};
        std::vector<TrainableTensor> one = {{"c", w.data(), g.data(), 1, 2}};
        AdamW o1(one);
        o1.step(one, 0.1);
        QVERIFY(std::abs(w[0] - 0.9f) < 1e-6);
        QVERIFY(std::abs(w[1] - (-1.9f)) < 1e-4);
    }

    // A path that is not UTF-8 cannot go into the run's JSON files: refused before anything runs.
    void nonUtf8PathsRefusedAtStart() {
        const std::string root = test::make_temp_dir("train-utf8");
        TrainOptions o;
        o.load.model = root + "/model";
        o.data = root + "/data.txt";
        o.out_dir = root + "/run\xfe";
        EXPECT_ERROR(run_finetune(o, {}, CancelToken{}), "output folder's path is not valid UTF-8", "run\\xFE");
        o.out_dir = root + "/run";
        o.data = root + "/d\xc0\xaf" "ata.txt";   // an overlong '/'
        EXPECT_ERROR(run_finetune(o, {}, CancelToken{}), "data's path is not valid UTF-8");
        QVERIFY(!fs::exists(root + "/run"));
    }

    void scheduleValues() {
        LrSchedule s;
        s.lr = 1.0; s.min_lr_ratio = 0.1; s.warmup = 10; s.steps = 110;
        QCOMPARE(s.at(0), 0.1);
        QCOMPARE(s.at(4), 0.5);
        QCOMPARE(s.at(9), 1.0);
        QCOMPARE(s.at(10), 1.0);                       // cosine starts at the peak
        QVERIFY(std::abs(s.at(60) - 0.55) < 1e-12);    // halfway: (max + min) / 2
        QVERIFY(std::abs(s.at(110) - 0.1) < 1e-12);    // the floor
        QVERIFY(s.at(109) > 0.1 && s.at(109) < 0.101);
        for (int i = 11; i < 110; ++i) QVERIFY(s.at(i) <= s.at(i - 1));
        LrSchedule c;
        c.lr = 3e-4; c.warmup = 0; c.steps = 5; c.min_lr_ratio = 1.0;
        for (int i = 0; i < 5; ++i) QVERIFY(std::abs(c.at(i) - 3e-4) < 1e-18);
    }

    void clipping() {
        std::vector<float> v(3), g = {3.f, 4.f, 12.f}, v2(1), g2 = {0.f};
        std::vector<TrainableTensor> ps = {{"a", v.data(), g.data(), 1, 3}, {"b", v2.data(), g2.data(), 1, 1}};
        QCOMPARE(clip_grad_norm(ps, 100.0), 13.0);      // below the limit: untouched
        QCOMPARE(g[2], 12.f);
        QCOMPARE(clip_grad_norm(ps, 1.0), 13.0);        // returns the norm before clipping
        double n = std::sqrt(double(g[0]) * g[0] + double(g[1]) * g[1] + double(g[2]) * g[2]);
        QVERIFY(std::abs(n - 1.0) < 1e-6);
        QVERIFY(std::abs(g[0] / g[1] - 0.75f) < 1e-6);  // direction kept
        // 0 = off: a norm far above any limit is returned and the gradients are left alone.
        std::vector<float> big = {300.f, -400.f}, vb(2);
        std::vector<TrainableTensor> pb = {{"c", vb.data(), big.data(), 1, 2}};
        QCOMPARE(clip_grad_norm(pb, 0.0), 500.0);
        QCOMPARE(big[0], 300.f);
        QCOMPARE(big[1], -400.f);
    }

    void gradientAccumulationEqualsOneBigBatch() {
        // One optimizer step over accum 2 x batch 2 must equal one over accum 1 x batch 4 on the
        // same four examples: micro-batch gradients summed (+=) and weighted by their share of the
        // step's scored tokens (n_i / N, not 1 / accum). The QA examples have answers of different
        // lengths, so the two micro-batches score different token counts. Clipping off, so the
        // reported gradient norm is the accumulated gradient's; two steps so the update uses it.
        const std::string root = test::make_temp_dir("train-accum");
        std::string jsonl;
        const char* answers[] = {"Yes.", "The fox ran to the big green tree and hid there all day long.", "No, he did not.",
                                 "She gave the little dog a red ball, and the dog was very happy with it.",
                                 "Tom.", "They played in the park until the sun went down and then went home.",
                                 "A cat.", "The bird sang a song."};
        for (int i = 0; i < 8; ++i)
            jsonl += "{\"question\": \"Story " + std::to_string(i) + "?\", \"answer\": \"" + answers[i] + "\"}\n";
        write_file_atomic(root + "/qa.jsonl", jsonl);
        auto run = [&](int batch, int accum, const std::string& tag) {
            TrainOptions o = synth_opts(synth, root + "/" + tag);
            o.data = root + "/qa.jsonl";
            o.eval_data = root + "/qa.jsonl";
            o.steps = 2;
            o.seq = 96;
            o.batch = batch;
            o.accum = accum;
            o.warmup = 0;
            o.clip = 0;
            o.eval_every = 1000;
            o.eval_batches = 1;
            o.sample_tokens = 1;
            std::vector<double> norms, losses;
            run_finetune(o, [&](const TrainEvent& e) {
                if (e.kind == TrainEventKind::Step) norms.push_back(e.grad_norm), losses.push_back(e.train_loss);
            }, CancelToken{});
            return std::make_tuple(norms, losses, SafetensorsFile::open(o.out_dir + "/adapter/adapter_model.safetensors"));
        };
        auto [n4, l4, a4] = run(4, 1, "b4");
        auto [n2, l2, a2] = run(2, 2, "b2x2");
        QCOMPARE(n4.size(), size_t(2));
        QCOMPARE(n2.size(), size_t(2));
        for (size_t i = 0; i < 2; ++i) {
            qInfo("step %zu: grad norm %.9g vs %.9g, loss %.9g vs %.9g", i + 1, n4[i], n2[i], l4[i], l2[i]);
            QVERIFY(std::abs(n4[i] - n2[i]) <= 1e-6 * n4[i]);
            QVERIFY(std::abs(l4[i] - l2[i]) <= 1e-6 * l4[i]);
        }
        double worst = 0, scale = 0;
        for (const auto& t : a4->tensors()) {
            const TensorInfo* u = a2->find(t.name);
            QVERIFY(u);
            const float* x = reinterpret_cast<const float*>(a4->data(t));
            const float* y = reinterpret_cast<const float*>(a2->data(*u));
            for (int64_t i = 0; i < t.numel(); ++i) {
                worst = std::max(worst, double(std::abs(x[i] - y[i])));
                scale = std::max(scale, double(std::abs(x[i])));
            }
        }
        qInfo("adapters after 2 steps: max difference %.3g (max value %.3g)", worst, scale);
        QVERIFY(worst <= 1e-5 * scale);   // each step moves a value by about lr = 5e-3
    }

    // ---------------------------------------------------------------- synthetic fine-tuning
    void trainingLowersEvalLossAndWritesPeftAdapter() {
        const std::string out = test::make_temp_dir("train-run") + "/out";
        TrainOptions o = synth_opts(synth, out);
        o.steps = 24;
        o.eval_every = 8;
        o.lr = 3e-2;
        std::vector<TrainEvent> ev;
        TrainResult r = run_finetune(o, [&](const TrainEvent& e) { ev.push_back(e); }, CancelToken{});
        qInfo("synthetic: eval loss %.4f -> %.4f, train %.4f, %.0f tok/s", r.first_eval_loss, r.final_eval_loss,
              r.final_train_loss, r.tokens_per_s);
        QCOMPARE(r.steps_done, 24);
        QVERIFY(std::isfinite(r.first_eval_loss) && std::isfinite(r.final_eval_loss));
        // The synthetic model's LM head is small, so its logits stay near uniform (log 512 = 6.24)
        // whatever the LoRA does: about 0.12 nats is what 24 steps can win here.
        QVERIFY2(r.final_eval_loss < r.first_eval_loss - 0.05, "fine-tuning did not lower the eval loss");
        QVERIFY(r.tokens_per_s > 0);
        // Events: started, 24 steps, evals at 0/8/16/24, checkpoints, a sample, done last.
        int steps = 0, evals = 0, ckpts = 0, samples = 0;
        for (auto& e : ev) {
            steps += e.kind == TrainEventKind::Step;
            evals += e.kind == TrainEventKind::Eval;
            ckpts += e.kind == TrainEventKind::Checkpoint;
            samples += e.kind == TrainEventKind::Sample;
            if (e.kind == TrainEventKind::Step) {
                QVERIFY(e.lr > 0 && e.grad_norm > 0 && e.tokens_per_s > 0 && e.eta >= 0);
                QCOMPARE(e.steps, 24);
            }
        }
        QCOMPARE(ev.front().kind, TrainEventKind::Started);
        QCOMPARE(ev.back().kind, TrainEventKind::Done);
        QCOMPARE(steps, 24);
        QCOMPARE(evals, 4);
        QCOMPARE(ckpts, 3);  // at the evals of steps 8, 16 and the end
        QCOMPARE(samples, 1);
        QVERIFY(!r.sample.empty());

        // metrics.jsonl: one parseable object per line, train steps 1..24 and evals 0, 8, 16, 24.
        std::istringstream in(file_text(out + "/metrics.jsonl"));
        std::string line;
        std::vector<int> train_steps, eval_steps;
        while (std::getline(in, line)) {
            json j = json::parse(line);
            if (j["kind"] == "train") {
                train_steps.push_back(j["step"].get<int>());
                QVERIFY(j["train_loss"].is_number() && j["lr"].is_number() && j["tokens_per_s"].is_number());
            } else {
                QCOMPARE(j["kind"].get<std::string>(), std::string("eval"));
                eval_steps.push_back(j["step"].get<int>());
                QVERIFY(std::abs(std::exp(j["eval_loss"].get<double>()) - j["eval_ppl"].get<double>()) < 1e-6 * j["eval_ppl"].get<double>());
            }
        }
        QCOMPARE(train_steps.size(), size_t(24));
        for (int i = 0; i < 24; ++i) QCOMPARE(train_steps[size_t(i)], i + 1);
        QCOMPARE(eval_steps, (std::vector<int>{0, 8, 16, 24}));

        // PEFT adapter folder: keys, shapes, config.
        auto st = SafetensorsFile::open(out + "/adapter/adapter_model.safetensors");
        QCOMPARE(st->tensors().size(), size_t(2 * 7 * 2));
        auto shape = [&](const std::string& k) { auto* t = st->find("base_model.model.model.layers.1." + k); return t ? t->shape : std::vector<int64_t>{}; };
        QCOMPARE(shape("self_attn.q_proj.lora_A.weight"), (std::vector<int64_t>{4, 64}));
        QCOMPARE(shape("self_attn.q_proj.lora_B.weight"), (std::vector<int64_t>{64, 4}));
        QCOMPARE(shape("self_attn.k_proj.lora_B.weight"), (std::vector<int64_t>{32, 4}));
        QCOMPARE(shape("mlp.gate_proj.lora_B.weight"), (std::vector<int64_t>{160, 4}));
        QCOMPARE(shape("mlp.down_proj.lora_A.weight"), (std::vector<int64_t>{4, 160}));
        for (auto& t : st->tensors()) QCOMPARE(t.dtype, DType::F32);
        json cfg = json::parse(file_text(out + "/adapter/adapter_config.json"));
        QCOMPARE(cfg["r"].get<int>(), 4);
        QCOMPARE(cfg["lora_alpha"].get<double>(), 4.0);
        QCOMPARE(cfg["task_type"].get<std::string>(), std::string("CAUSAL_LM"));
        QCOMPARE(cfg["peft_type"].get<std::string>(), std::string("LORA"));
        QCOMPARE(cfg["base_model_name_or_path"].get<std::string>(), fs::absolute(synth.model).lexically_normal().string());
        QCOMPARE(cfg["target_modules"].size(), size_t(7));
        for (const char* k : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
            QVERIFY(std::find(cfg["target_modules"].begin(), cfg["target_modules"].end(), k) != cfg["target_modules"].end());
        QVERIFY(fs::exists(out + "/checkpoint/state.safetensors"));
        QVERIFY(fs::exists(out + "/sample.txt"));
        QCOMPARE(count_partials(out), 0);

        // The adapter applied by run_eval reproduces the run's final eval loss (same base, same
        // examples: the eval file's first eval_batches x batch examples).
        EvalOptions eo;
        eo.load = o.load;
        eo.data = synth.eval;
        eo.batch = o.batch;
        eo.seq = o.seq;
        eo.max_examples = int64_t(o.eval_batches) * o.batch;
        eo.adapter = out + "/adapter";
        eo.threads = 2;
        EvalResult er = run_eval(eo, CancelToken{});
        qInfo("run_eval with the adapter: %.6f (run's final eval %.6f)", er.loss, r.final_eval_loss);
        QVERIFY(std::abs(er.loss - r.final_eval_loss) < 1e-5 * std::abs(r.final_eval_loss));
        QVERIFY(std::abs(er.ppl - std::exp(er.loss)) < 1e-9 * er.ppl);
        eo.adapter.clear();
        QVERIFY(std::abs(run_eval(eo, CancelToken{}).loss - r.first_eval_loss) < 1e-5 * r.first_eval_loss);

        // An adapter of another rank names the file and the tensor.
        LoadOptions lo = o.load;
        lo.rank = 8;
        auto m8 = load_llama(lo);
        try {
            apply_peft_adapter(out + "/adapter", *m8);
            QFAIL("rank mismatch not detected");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("adapter_model.safetensors") != std::string::npos, e.what());
            QVERIFY2(std::string(e.what()).find("lora_A.weight") != std::string::npos, e.what());
        }
    }

    void resumeIsBitIdenticalAndCancelKeepsCheckpoint() {
        const std::string base = test::make_temp_dir("train-resume");
        TrainOptions o = synth_opts(synth, base + "/a");
        o.accum = 2;  // exercises the n_i / N weighting across micro-batches
        o.sample_tokens = 0;
        TrainResult ra = run_finetune(o, nullptr, CancelToken{});
        QCOMPARE(ra.steps_done, 12);

        // Same run, cancelled right after the checkpoint at step 8 (taken with the eval).
        TrainOptions ob = o;
        ob.out_dir = base + "/b";
        CancelToken cancel;
        int last_step = 0;
        bool cancelled = false;
        try {
            run_finetune(ob, [&](const TrainEvent& e) {
                if (e.kind == TrainEventKind::Step) last_step = e.step;
                if (e.kind == TrainEventKind::Checkpoint && e.step == 8) cancel.cancel();
            }, cancel);
        } catch (const Cancelled&) {
            cancelled = true;
        }
        QVERIFY(cancelled);
        QCOMPARE(last_step, 8);  // stopped at the next micro-batch
        QCOMPARE(count_partials(ob.out_dir), 0);
        const TrainState st8 = read_train_state(ob.out_dir + "/checkpoint");
        QCOMPARE(st8.step, 8);
        // The options as checkpoints have always stored them: names, not enum values.
        QCOMPARE(st8.options["device"].get<std::string>(), std::string("cpu"));
        QCOMPARE(st8.options["gemm"].get<std::string>(), std::string("tf32"));
        QCOMPARE(st8.options["recompute"].get<std::string>(), std::string("auto"));
        auto at8 = tensor_bytes(ob.out_dir + "/checkpoint/state.safetensors");

        // A second start that does not resume refuses to overwrite the checkpoint.
        try {
            run_finetune(ob, nullptr, CancelToken{});
            QFAIL("ran over an existing checkpoint");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("resume to continue it") != std::string::npos, e.what());
        }
        // Resuming with another rank names the checkpoint file.
        TrainOptions bad = ob;
        bad.resume = true;
        bad.load.rank = 8;
        try {
            run_finetune(bad, nullptr, CancelToken{});
            QFAIL("rank change not detected");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("state.safetensors") != std::string::npos, e.what());
            QVERIFY2(std::string(e.what()).find("rank") != std::string::npos, e.what());
        }
        QVERIFY(tensor_bytes(ob.out_dir + "/checkpoint/state.safetensors") == at8);  // untouched

        ob.resume = true;
        std::vector<std::string> notes;
        TrainResult rb = run_finetune(ob, [&](const TrainEvent& e) {
            if (e.kind == TrainEventKind::Message && e.text.rfind("resume: ", 0) == 0) notes.push_back(e.text);
        }, CancelToken{});
        QCOMPARE(rb.steps_done, 12);
        for (const auto& n : notes)   // same settings: device, gemm and recompute read back as they were written
            QVERIFY2(n.find("changed") == std::string::npos, n.c_str());
        QVERIFY(tensor_bytes(o.out_dir + "/adapter/adapter_model.safetensors") ==
                tensor_bytes(ob.out_dir + "/adapter/adapter_model.safetensors"));
        QVERIFY(tensor_bytes(o.out_dir + "/checkpoint/state.safetensors") ==
                tensor_bytes(ob.out_dir + "/checkpoint/state.safetensors"));  // moments too
        QCOMPARE(rb.final_eval_loss, ra.final_eval_loss);
        QCOMPARE(rb.first_eval_loss, ra.first_eval_loss);
        // metrics.jsonl of the resumed run: the steps once each, in order.
        std::istringstream in(file_text(ob.out_dir + "/metrics.jsonl"));
        std::string line;
        int expect = 1;
        while (std::getline(in, line)) {
            json j = json::parse(line);
            if (j["kind"] == "train") QCOMPARE(j["step"].get<int>(), expect++);
        }
        QCOMPARE(expect, 13);

        // K steps, then resume to N: with a constant LR the schedule does not depend on N, so
        // 6 steps + resume to 12 equals 12 steps.
        TrainOptions c = o;
        c.min_lr_ratio = 1.0;
        c.warmup = 0;
        c.out_dir = base + "/c";
        run_finetune(c, nullptr, CancelToken{});
        TrainOptions d = c;
        d.out_dir = base + "/d";
        d.steps = 6;
        run_finetune(d, nullptr, CancelToken{});
        d.steps = 12;
        d.resume = true;
        run_finetune(d, nullptr, CancelToken{});
        QVERIFY(tensor_bytes(c.out_dir + "/adapter/adapter_model.safetensors") ==
                tensor_bytes(d.out_dir + "/adapter/adapter_model.safetensors"));
    }

    void cancelBeforeFirstCheckpointLeavesNone() {
        const std::string out = test::make_temp_dir("train-cancel") + "/out";
        TrainOptions o = synth_opts(synth, out);
        CancelToken cancel;
        bool cancelled = false;
        try {
            run_finetune(o, [&](const TrainEvent& e) { if (e.kind == TrainEventKind::Step && e.step == 2) cancel.cancel(); }, cancel);
        } catch (const Cancelled&) {
            cancelled = true;
        }
        QVERIFY(cancelled);
        QVERIFY(!fs::exists(out + "/checkpoint/state.safetensors"));
        QVERIFY(!fs::exists(out + "/adapter"));
        QCOMPARE(count_partials(out), 0);
        // Nothing else either (issue 14): no metrics.jsonl of two steps, not the folder the run made.
        QVERIFY2(!fs::exists(out), out.c_str());
    }

    // A fine-tune that fails or is cancelled leaves nothing that looks finished (issue 14): with a
    // checkpoint on disk, the checkpoint stays for a resume, metrics.jsonl is cut back to its step
    // and the adapter and sample go; without one, nothing of the run stays. Files the run did not
    // write stay, and the engine says what it kept.
    void stoppedRunLeavesOnlyWhatResumeNeeds() {
        const std::string base = test::make_temp_dir("train-stopped");
        auto steps_in_metrics = [](const std::string& path) {
            std::vector<int> steps;
            std::istringstream in(file_text(path));
            std::string line;
            while (std::getline(in, line)) steps.push_back(json::parse(line).value("step", 0));
            return steps;
        };
        auto run = [](const TrainOptions& o, std::function<void(const TrainEvent&, CancelToken&)> on_event, std::string* error,
                      std::vector<std::string>* notes) {
            CancelToken cancel;
            try {
                run_finetune(o, [&](const TrainEvent& e) {
                    if (e.kind == TrainEventKind::Message && notes) notes->push_back(e.text);
                    if (on_event) on_event(e, cancel);
                }, cancel);
                return false;
            } catch (const Cancelled&) {
                return true;
            } catch (const Error& e) {
                if (error) *error = e.what();
                return false;
            }
        };

        // 1. Cancelled after the checkpoint at step 4, in the middle of step 6.
        TrainOptions o = synth_opts(synth, base + "/cancelled");
        std::vector<std::string> notes;
        QVERIFY(run(o, [](const TrainEvent& e, CancelToken& c) { if (e.kind == TrainEventKind::Step && e.step == 6) c.cancel(); },
                    nullptr, &notes));
        QCOMPARE(read_train_state(o.out_dir + "/checkpoint").step, 4);
        QVERIFY(!fs::exists(o.out_dir + "/adapter"));
        QVERIFY(!fs::exists(o.out_dir + "/sample.txt"));
        QCOMPARE(count_partials(o.out_dir), 0);
        for (int step : steps_in_metrics(o.out_dir + "/metrics.jsonl")) QVERIFY2(step <= 4, std::to_string(step).c_str());
        QVERIFY(!notes.empty());
        QVERIFY2(notes.back().find("kept " + o.out_dir + "/checkpoint (step 4)") != std::string::npos, notes.back().c_str());
        QVERIFY2(notes.back().find("resume") != std::string::npos, notes.back().c_str());
        // Resuming with the checkpoint's own step count writes its adapter (and nothing else runs).
        TrainOptions r = o;
        r.resume = true;
        r.steps = 4;
        r.sample_tokens = 0;
        QCOMPARE(run_finetune(r, nullptr, CancelToken{}).steps_done, 4);
        QVERIFY(fs::exists(o.out_dir + "/adapter/adapter_model.safetensors"));

        // 2. A file in the way of the adapter at the first checkpoint (unwritable mid-run): the
        // error names it, the user's file stays as it was, the checkpoint saved just before stays.
        TrainOptions u = synth_opts(synth, base + "/blocked");
        fs::create_directories(u.out_dir);
        test::write_file(u.out_dir + "/adapter", "not a folder");
        std::string error;
        notes.clear();
        QVERIFY(!run(u, nullptr, &error, &notes));
        QVERIFY2(error.find(u.out_dir + "/adapter") != std::string::npos, error.c_str());
        QCOMPARE(file_text(u.out_dir + "/adapter"), std::string("not a folder"));
        QCOMPARE(read_train_state(u.out_dir + "/checkpoint").step, 4);
        QVERIFY(!fs::exists(u.out_dir + "/sample.txt"));
        QCOMPARE(count_partials(u.out_dir), 0);
        for (int step : steps_in_metrics(u.out_dir + "/metrics.jsonl")) QVERIFY2(step <= 4, std::to_string(step).c_str());

        // 3. Diverged before any checkpoint, in a folder that held a file of the user's: the
        // folder and that file stay, nothing of the run does.
        TrainOptions d = synth_opts(synth, base + "/diverged");
        d.lr = 1e9;
        d.clip = 0;
        d.eval_every = 0;
        fs::create_directories(d.out_dir);
        test::write_file(d.out_dir + "/notes.txt", "mine");
        error.clear();
        notes.clear();
        QVERIFY(!run(d, nullptr, &error, &notes));
        QVERIFY2(error.find("diverged") != std::string::npos, error.c_str());
        QCOMPARE(files_under(d.out_dir).size(), size_t(1));
        QCOMPARE(file_text(d.out_dir + "/notes.txt"), std::string("mine"));
        QVERIFY(!fs::exists(d.out_dir + "/checkpoint"));
        QVERIFY2(!notes.empty() && notes.back().find("no checkpoint had been written") != std::string::npos,
                 notes.empty() ? "" : notes.back().c_str());

        // 4. The same in a folder the run made: the folder goes too.
        d.out_dir = base + "/diverged-new";
        QVERIFY(!run(d, nullptr, &error, nullptr));
        QVERIFY(!fs::exists(d.out_dir));

        // 5. Bad data: refused before anything is written.
        TrainOptions b = synth_opts(synth, base + "/bad-data");
        b.data = base + "/empty.txt";
        test::write_file(b.data, "");
        QVERIFY(!run(b, nullptr, &error, nullptr));
        QVERIFY(!fs::exists(b.out_dir));
    }

    void settingsErrors() {
        TrainOptions o = synth_opts(synth, test::make_temp_dir("train-err") + "/out");
        if (!cuda_status().available) {  // without a usable GPU, the CUDA device is refused with the reason
            o.device = ComputeDevice::Cuda;
            try {
                run_finetune(o, nullptr, CancelToken{});
                QFAIL("cuda accepted");
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find(kCudaNotUsable + cuda_status().why_not) != std::string::npos, e.what());
            }
            EvalOptions eo;
            eo.load = o.load;
            eo.data = synth.eval;
            eo.device = ComputeDevice::Cuda;
            try {
                run_eval(eo, CancelToken{});
                QFAIL("cuda accepted by run_eval");
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find(kCudaNotUsable) != std::string::npos, e.what());
            }
        }
        // bf16 GEMMs with the CPU asked for: refused in the engine's words, which the Fine-tune
        // tab shows as they are (no "--gemm" of a command line the GUI user never typed).
        o.device = ComputeDevice::Cpu;
        o.gemm = GemmMode::Bf16;
        try {
            run_finetune(o, nullptr, CancelToken{});
            QFAIL("bf16 on the CPU accepted");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("GEMM mode bf16 exists on the CUDA device only") != std::string::npos, e.what());
            QVERIFY2(std::string(e.what()).find("--") == std::string::npos, e.what());
        }
        o.gemm = GemmMode::Tf32;
        o.out_dir = synth.root;  // holds the model
        try {
            run_finetune(o, nullptr, CancelToken{});
            QFAIL("output over the input accepted");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("input model") != std::string::npos, e.what());
        }
        o.out_dir = test::make_temp_dir("train-err2") + "/out";
        o.resume = true;
        try {
            run_finetune(o, nullptr, CancelToken{});
            QFAIL("resume without a checkpoint accepted");
        } catch (const Error& e) {
            QVERIFY2(std::string(e.what()).find("no checkpoint") != std::string::npos, e.what());
        }
    }

    // A quantize job and a fine-tune at once (the app allows it): BLAS threads have one owner
    // (linalg/blas.h), so the job's decompositions stay single-threaded whatever the trainer
    // asks for, and both give exactly what they give alone.
    void quantizeJobAndFinetuneAtOnce() {
        const test::Synth big = test::make_synth("train-conc", 256, 688, 3);   // decompositions long enough to overlap
        QuantizeOptions q;
        q.model = big.model;
        q.plan.defaults.quant = QuantKind::NF2;
        q.plan.defaults.rank = 16;
        q.plan.defaults.iters = 12;
        q.plan.defaults.svd = SvdMethod::Exact;
        q.threads = 2;
        TrainOptions o = synth_opts(synth, test::make_temp_dir("train-conc-solo") + "/out");
        o.steps = 6;
        o.eval_every = 0;
        o.sample_tokens = 0;
        prefer_blas_threads(2);
        const QuantizeResult job_solo = run_quantize(q, {}, CancelToken{});
        const TrainResult ft_solo = run_finetune(o, nullptr, CancelToken{});
        QCOMPARE(blas_threads(), 2);
        // Together: the fine-tune starts (and sets its threads) while the job decomposes.
        QuantizeResult job_both;
        std::atomic<bool> started{false};
        std::thread job([&] {
            job_both = run_quantize(q, [&](const JobEvent& e) { if (e.kind == EventKind::WeightStarted) started = true; }, CancelToken{});
        });
        while (!started) std::this_thread::yield();
        o.out_dir = test::make_temp_dir("train-conc-both") + "/out";
        const TrainResult ft_both = run_finetune(o, nullptr, CancelToken{});
        job.join();
        QCOMPARE(job_both.weights.size(), job_solo.weights.size());
        for (size_t i = 0; i < job_solo.weights.size(); ++i) {
            QCOMPARE(job_both.weights[i].final_error, job_solo.weights[i].final_error);
            for (size_t t = 0; t < job_solo.weights[i].steps.size(); ++t)
                QCOMPARE(job_both.weights[i].steps[t].error, job_solo.weights[i].steps[t].error);
        }
        qInfo("fine-tune alone %.9f, beside the job %.9f", ft_solo.final_train_loss, ft_both.final_train_loss);
        QCOMPARE(ft_both.final_train_loss, ft_solo.final_train_loss);
        QCOMPARE(blas_threads(), 2);   // the trainer's preference stands after the job ended
    }

    // eval_original: the original model's loss on the run's own held-out examples, equal to
    // run_eval of the unquantized model (Lora16, rank 0 = W as stored) on the same file.
    void evalOriginalIsTheUnquantizedModelsLoss() {
        TrainOptions o = synth_opts(synth, test::make_temp_dir("train-orig") + "/out");
        o.steps = 1;
        o.eval_every = 0;
        o.eval_batches = 1000;   // every held-out example, as run_eval takes them
        o.sample_tokens = 0;
        o.eval_original = true;
        o.load.quant = "nf2";
        int ref_events = 0;
        TrainResult r = run_finetune(o, [&](const TrainEvent& e) { ref_events += e.kind == TrainEventKind::Eval && e.step < 0; }, CancelToken{});
        QCOMPARE(ref_events, 1);
        EvalOptions eo;
        eo.load.model = synth.model;
        eo.load.init = InitKind::Lora16;
        eo.load.rank = 0;
        eo.data = synth.eval;
        eo.batch = o.batch;
        eo.seq = o.seq;
        eo.threads = 2;
        const EvalResult ref = run_eval(eo, CancelToken{});
        qInfo("original %.6f (run_eval %.6f), nf2 LoftQ start %.6f", r.original_eval_loss, ref.loss, r.first_eval_loss);
        QVERIFY(std::abs(r.original_eval_loss - ref.loss) <= 1e-6 * ref.loss);
        QVERIFY(r.first_eval_loss != r.original_eval_loss);
        // Off by default: NaN.
        o.eval_original = false;
        o.out_dir = test::make_temp_dir("train-orig2") + "/out";
        QVERIFY(std::isnan(run_finetune(o, nullptr, CancelToken{}).original_eval_loss));
    }

    // Out of memory names what it was allocating (issue 14): `loftq finetune` on a model whose
    // embedding alone takes 1.07 GB in fp32 (its file sparse: 512 MiB of bf16 zeros), with the
    // process's address space limited to 1280 MiB (setrlimit in the child), ends with exit code 1
    // and one line naming the file, the tensor and the size; no crash, no output folder.
    void outOfMemoryNamesTheTensor() {
#if defined(LOFTQ_ASAN)
        QSKIP("an address-space limit and AddressSanitizer's shadow memory do not mix");
#endif
        if (cli_path().isEmpty()) QSKIP("the loftq binary was not found (set LOFTQ_CLI)");
        const std::string root = test::make_temp_dir("train-oom");
        const std::string model = root + "/huge";
        fs::create_directories(model);
        constexpr int V = 131072, C = 2048, F = 64;
        test::write_file(model + "/config.json", test::llama_config_json("llama", C, F, 1, 16, 16, V, true, 256).dump());
        const std::vector<std::pair<std::string, std::vector<int64_t>>> tensors = {
            {"model.embed_tokens.weight", {V, C}},
            {"model.layers.0.input_layernorm.weight", {C}},
            {"model.layers.0.post_attention_layernorm.weight", {C}},
            {"model.layers.0.self_attn.q_proj.weight", {C, C}},
            {"model.layers.0.self_attn.k_proj.weight", {C, C}},
            {"model.layers.0.self_attn.v_proj.weight", {C, C}},
            {"model.layers.0.self_attn.o_proj.weight", {C, C}},
            {"model.layers.0.mlp.gate_proj.weight", {F, C}},
            {"model.layers.0.mlp.up_proj.weight", {F, C}},
            {"model.layers.0.mlp.down_proj.weight", {C, F}},
            {"model.norm.weight", {C}},
        };
        json header = {{"__metadata__", {{"format", "pt"}}}};
        uint64_t offset = 0;
        for (const auto& [name, shape] : tensors) {
            uint64_t n = 2;
            for (int64_t d : shape) n *= uint64_t(d);
            header[name] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {offset, offset + n}}};
            offset += n;
        }
        std::string h = header.dump();
        h.append((8 - h.size() % 8) % 8, ' ');
        {
            std::ofstream f(model + "/model.safetensors", std::ios::binary);
            const uint64_t len = h.size();
            f.write(reinterpret_cast<const char*>(&len), 8);   // little-endian (x86-64, aarch64)
            f << h;
        }
        fs::resize_file(model + "/model.safetensors", 8 + h.size() + offset);   // zeros, sparse: no disk used

        const QString out = QString::fromStdString(root + "/out");
        QProcess p;
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("OPENBLAS_NUM_THREADS", "1");   // small, fixed thread buffers under the limit
        env.insert("MALLOC_ARENA_MAX", "2");
        p.setProcessEnvironment(env);
        p.setChildProcessModifier([] {
            const rlim_t limit = rlim_t(1280) << 20;
            const rlimit r{limit, limit};
            ::setrlimit(RLIMIT_AS, &r);
        });
        p.start(cli_path(), {"finetune", QString::fromStdString(model), "--tokenizer",
                             QString::fromStdString(synth.model + "/tokenizer.bin"), "--data", QString::fromStdString(synth.data),
                             "--out", out, "--steps", "2", "--batch", "1", "--seq", "16", "--rank", "2", "--threads", "1", "-q"});
        QVERIFY(p.waitForFinished(120000));
        const QString err = QString::fromUtf8(p.readAllStandardError());
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QVERIFY2(p.exitCode() == 1, qPrintable(err));
        QVERIFY2(err.contains("model.safetensors") && err.contains("model.embed_tokens.weight") &&
                     err.contains("out of memory allocating") && err.contains("1.07 GB (fp32, 131072 x 2048)"),
                 qPrintable(err));
        QVERIFY(!fs::exists(out.toStdString()));
    }

    // SIGTERM (timeout, systemd, docker) stops a fine-tune as Ctrl-C does, with its own exit code
    // (128 + 15), as `quantize` exits; before a checkpoint nothing of the run stays.
    void cliFinetuneSigtermExits143() {
        if (cli_path().isEmpty()) QSKIP("the loftq binary was not found (set LOFTQ_CLI)");
        const QString out = QString::fromStdString(test::make_temp_dir("train-sigterm")) + "/out";
        QProcess p;
        p.start(cli_path(), {"finetune", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.data),
                             "--out", out, "--steps", "100000", "--batch", "1", "--seq", "16", "--rank", "2", "--iters", "1",
                             "--eval-every", "0", "--threads", "1"});
        QVERIFY(p.waitForStarted());
        QString err;
        QElapsedTimer t;
        t.start();
        while (!err.contains("loss") && t.elapsed() < 120000) {   // the first step's line
            p.waitForReadyRead(100);
            err += QString::fromUtf8(p.readAllStandardError());
        }
        QVERIFY2(err.contains("loss"), qPrintable(err));
        ::kill(pid_t(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(60000));
        err += QString::fromUtf8(p.readAllStandardError());
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QVERIFY2(p.exitCode() == 143, qPrintable(err));
        QVERIFY2(err.contains("cancelled (SIGTERM)"), qPrintable(err));
        QVERIFY(!fs::exists(out.toStdString()));
    }

    void cliFinetuneAndEval() {
        if (cli_path().isEmpty()) QSKIP("the loftq binary was not found (set LOFTQ_CLI)");
        const QString out = QString::fromStdString(test::make_temp_dir("train-cli")) + "/out";
        Run r = run_cli({"finetune", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.data),
                         "--eval-data", QString::fromStdString(synth.eval), "--out", out, "--steps", "3", "--batch", "2",
                         "--seq", "16", "--rank", "2", "--iters", "1", "--eval-every", "0", "--threads", "2",
                         "--sample-tokens", "4"});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY2(r.out.contains("eval loss"), qPrintable(r.out));
        QVERIFY2(r.err.contains("[3/3] loss"), qPrintable(r.err));
        QVERIFY(QFile::exists(out + "/adapter/adapter_config.json"));
        Run e = run_cli({"eval", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.eval), "--adapter",
                         out + "/adapter", "--seq", "16", "--batch", "2", "--max-examples", "4"});
        QVERIFY2(e.code == 0, qPrintable(e.err));
        QVERIFY2(e.out.contains("perplexity"), qPrintable(e.out));
        QVERIFY2(e.err.contains("init loftq"), qPrintable(e.err));  // base rebuilt from loftq_base.json
        // --init export of a model that is not an export would train the unquantized weights
        // under a quantized run's name: refused, nothing written.
        Run x = run_cli({"finetune", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.data), "--out",
                         out + "-x", "--init", "export", "--steps", "1", "--threads", "2"});
        QCOMPARE(x.code, 1);
        QVERIFY2(x.err.contains("not a LoftQ export") && x.err.contains(QString::fromStdString(synth.model)), qPrintable(x.err));
        QVERIFY(!QFile::exists(out + "-x"));
        QVERIFY(!is_loftq_export(synth.model));
        // --plan: the plan's per-weight settings, recorded with the adapter; eval rebuilds that base.
        const QString plan = QString::fromStdString(test::make_temp_dir("train-cli-plan")) + "/p.loftq.json";
        Run pi = run_cli({"plan", "init", QString::fromStdString(synth.model), "-o", plan, "--quant", "nf3", "--rank", "2", "--iters", "1"});
        QVERIFY2(pi.code == 0, qPrintable(pi.err));
        {
            json pj = json::parse(read_text_file(plan.toStdString()));
            pj["overrides"]["model.layers.0.mlp.down_proj.weight"] = {{"quant", "int8"}, {"rank", 4}};
            write_file_atomic(plan.toStdString(), pj.dump(2));
        }
        Run pf = run_cli({"finetune", QString::fromStdString(synth.model), "--plan", plan, "--data", QString::fromStdString(synth.data),
                          "--eval-data", QString::fromStdString(synth.eval), "--out", out + "-plan", "--steps", "2", "--batch", "2",
                          "--seq", "16", "--eval-every", "0", "--threads", "2", "--sample-tokens", "0"});
        QVERIFY2(pf.code == 0, qPrintable(pf.err));
        QVERIFY2(pf.err.contains("a plan's per-weight settings"), qPrintable(pf.err));
        json pb = json::parse(read_text_file((out + "-plan/adapter/loftq_base.json").toStdString()));
        QCOMPARE(pb["plan"]["overrides"]["model.layers.0.mlp.down_proj.weight"]["quant"], "int8");
        Run pe = run_cli({"eval", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.eval), "--adapter",
                          out + "-plan/adapter", "--seq", "16", "--batch", "2", "--max-examples", "4"});
        QVERIFY2(pe.code == 0 && pe.err.contains("a plan's per-weight settings"), qPrintable(pe.err));
        Run px = run_cli({"finetune", QString::fromStdString(synth.model), "--plan", plan, "--init", "lora16", "--data",
                          QString::fromStdString(synth.data), "--out", out + "-px"});
        QCOMPARE(px.code, 1);
        QVERIFY2(px.err.contains("--init loftq or qlora"), qPrintable(px.err));
        if (!cuda_status().available) {
            Run c = run_cli({"finetune", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.data), "--out",
                             out + "2", "--device", "cuda"});
            QCOMPARE(c.code, 1);
            QVERIFY2(c.err.contains(kCudaNotUsable), qPrintable(c.err));
            QVERIFY(!QFile::exists(out + "2"));
        }
        // --gemm: an unknown mode is a usage error naming the flag and the choices; bf16 with
        // --device cpu is the engine's refusal.
        Run g = run_cli({"finetune", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.data), "--out",
                         out + "3", "--gemm", "bf8"});
        QVERIFY(g.code != 0 && g.code != 1);
        QVERIFY2(g.err.contains("--gemm") && g.err.contains("unknown GEMM mode 'bf8' (expected tf32, fp32 or bf16)"), qPrintable(g.err));
        Run gc = run_cli({"finetune", QString::fromStdString(synth.model), "--data", QString::fromStdString(synth.data), "--out",
                          out + "3", "--gemm", "bf16", "--device", "cpu"});
        QCOMPARE(gc.code, 1);
        QVERIFY2(gc.err.contains("GEMM mode bf16 exists on the CUDA device only"), qPrintable(gc.err));
        QVERIFY(!QFile::exists(out + "3"));
        // bench-finetune: one JSON line on stdout with the step's throughput.
        Run b = run_cli({"bench-finetune", QString::fromStdString(synth.model), "--device", "cpu", "--batch", "2", "--seq", "16",
                         "--warmup", "1", "--steps", "2", "--rank", "2", "--threads", "2", "-q"});
        QVERIFY2(b.code == 0, qPrintable(b.err));
        json j = json::parse(b.out.trimmed().split('\n').last().toStdString());
        QCOMPARE(j["device"].get<std::string>(), std::string("cpu"));
        // rank 2 on the seven projections (in + out: q 128, k 96, v 96, o 128, gate/up/down 224) of 2 layers
        QCOMPARE(j["trainable"].get<int64_t>(), int64_t(2 * 2 * (128 + 96 + 96 + 128 + 3 * 224)));
        QVERIFY(j["tokens_per_s"].get<double>() > 0 && std::isfinite(j["last_loss"].get<double>()));
    }

    // --device auto: the GPU when usable, else the CPU with a message that says why; the device
    // is reported in the result. (The CPU path is this file's reference; test_cuda_train compares
    // the device against it.)
    void deviceAutoSaysWhereItRuns() {
        TrainOptions o = synth_opts(synth, test::make_temp_dir("train-auto") + "/out");
        o.device = ComputeDevice::Auto;
        o.steps = 2;
        o.eval_every = 0;
        o.sample_tokens = 0;
        std::vector<std::string> messages;
        TrainResult r = run_finetune(o, [&](const TrainEvent& e) {
            if (e.kind == TrainEventKind::Message) messages.push_back(e.text);
        }, CancelToken{});
        const CudaStatus& st = cuda_status();
        const std::string expect = st.available ? "device: cuda, " + st.device : "device: cpu (CUDA: " + st.why_not + ")";
        QVERIFY2(std::find(messages.begin(), messages.end(), expect) != messages.end(), expect.c_str());
        QCOMPARE(QString::fromStdString(r.device), QString::fromStdString(st.available ? "cuda, " + st.device : "cpu"));
        QCOMPARE(r.steps_done, 2);
        if (!st.available) QCOMPARE(r.device_peak_bytes, uint64_t(0));
    }

    // ---------------------------------------------------------------- real stories260K
    void stories260kEvalMatchesFloat64() {
        const std::string bin = shared("models/stories260K/stories260K.bin"), txt = shared("data/tinystories/sample.txt");
        if (bin.empty() || !fs::exists(bin)) QSKIP("../shared/models/stories260K not found (set LOFTQ_SHARED_DIR)");
        const int T = 256, n_ex = 4;
        EvalOptions eo;
        eo.load.model = bin;
        eo.load.init = InitKind::Lora16;  // base = W, B = 0: the model as trained
        eo.load.rank = 2;
        eo.data = txt;
        eo.seq = T;
        eo.batch = 2;
        eo.max_examples = n_ex;
        eo.threads = 2;
        EvalResult r = run_eval(eo, CancelToken{});
        QCOMPARE(r.examples, int64_t(n_ex));

        auto tok = load_tokenizer(bin);
        DatasetOptions dopt;
        dopt.seq = T;
        dopt.max_examples = n_ex;
        std::vector<Example> ex = load_examples(txt, *tok, dopt);
        QVERIFY(int(ex.size()) >= n_ex);
        ex.resize(size_t(n_ex));
        L2cModel m = read_l2c(bin);
        double sum = 0;
        int64_t n = 0;
        for (auto& e : ex) {
            std::vector<double> lg = l2c_logits(m, e.tokens);
            for (int t = 0; t < T; ++t) {
                const int y = e.targets[size_t(t)];
                if (y < 0) continue;
                const double* row = &lg[size_t(t) * size_t(m.vocab)];
                double mx = *std::max_element(row, row + m.vocab), z = 0;
                for (int i = 0; i < m.vocab; ++i) z += std::exp(row[i] - mx);
                sum += mx + std::log(z) - row[y];
                ++n;
            }
        }
        const double ref = sum / double(n);
        qInfo("stories260K on sample.txt (%d x %d): engine loss %.7f, float64 llama2.c %.7f (ppl %.4f, relative difference %.2g), "
              "%lld tokens", n_ex, T, r.loss, ref, std::exp(ref), std::abs(r.loss - ref) / ref, (long long)n);
        QCOMPARE(r.tokens, n);
        QVERIFY(std::abs(r.loss - ref) <= 1e-4 * ref);
        QVERIFY(ref > 0.5 && ref < 3.0);  // a trained model on its own domain
    }

    void stories260kGreedySample() {
        // The shipped model (resources/models/stories260K), so this runs everywhere.
        const std::string bin = test::shipped_stories260k();
        QVERIFY2(fs::exists(bin), bin.c_str());
        LoadOptions lo;
        lo.model = bin;
        lo.init = InitKind::Lora16;
        lo.rank = 2;
        auto model = load_llama(lo);
        auto tok = load_tokenizer(bin);
        std::string s = generate_text(*model, *tok, "", 120);
        qInfo("greedy: %s", s.c_str());
        // The author's published greedy sample (temperature 0, from <s>), the whole of it.
        const std::string published =
            "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she "
            "saw a big, red ball. She wanted to play with it, but it was too high.";
        QVERIFY2(s.rfind(published, 0) == 0, s.c_str());
    }

    void convertGivesSameLogitsAndLoss() {
        const std::string bin = shared("models/stories260K/stories260K.bin"), txt = shared("data/tinystories/sample.txt");
        if (bin.empty() || !fs::exists(bin)) QSKIP("../shared/models/stories260K not found (set LOFTQ_SHARED_DIR)");
        if (cli_path().isEmpty()) QSKIP("the loftq binary was not found (set LOFTQ_CLI)");
        const std::string hf = test::make_temp_dir("train-convert") + "/hf";
        Run r = run_cli({"convert", QString::fromStdString(bin), "--out", QString::fromStdString(hf)});
        QVERIFY2(r.code == 0, qPrintable(r.err));
        QVERIFY(fs::exists(hf + "/config.json") && fs::exists(hf + "/model.safetensors") && fs::exists(hf + "/tok512.bin"));
        QCOMPARE(count_partials(hf), 0);
        json cfg = json::parse(file_text(hf + "/config.json"));
        QCOMPARE(cfg["hidden_size"].get<int>(), 64);
        auto st = SafetensorsFile::open(hf + "/model.safetensors");
        for (auto& t : st->tensors()) QCOMPARE(t.dtype, DType::F32);
        // Converting into a non-empty folder needs --force.
        QVERIFY(run_cli({"convert", QString::fromStdString(bin), "--out", QString::fromStdString(hf)}).code != 0);

        LoadOptions a, b;
        a.model = bin;
        b.model = hf;
        a.init = b.init = InitKind::Lora16;
        a.rank = b.rank = 2;
        auto ma = load_llama(a), mb = load_llama(b);
        auto tok = load_tokenizer(hf);
        std::vector<int> ids = tok->encode("Once upon a time, there was a big red ball.", true, false);
        const int T = int(ids.size()), V = ma->config().vocab;
        ma->forward(ids.data(), nullptr, 1, T);
        std::vector<float> la(ma->logits(), ma->logits() + size_t(T) * size_t(V));
        mb->forward(ids.data(), nullptr, 1, T);
        double worst = 0;
        for (size_t i = 0; i < la.size(); ++i)
            worst = std::max(worst, double(std::abs(la[i] - mb->logits()[i])) / (1e-6 + std::abs(la[i])));
        qInfo("convert: max relative logit difference %.3g", worst);
        QVERIFY(worst <= 1e-6);

        EvalOptions eo;
        eo.load = a;
        eo.data = txt;
        eo.seq = 128;
        eo.batch = 2;
        eo.max_examples = 4;
        double la_loss = run_eval(eo, CancelToken{}).loss;
        eo.load = b;
        double lb_loss = run_eval(eo, CancelToken{}).loss;
        QVERIFY(std::abs(la_loss - lb_loss) <= 1e-6 * la_loss);
    }
};

QTEST_GUILESS_MAIN(TestTrain)
#include "test_train.moc"
