// test_dist.cpp: runs spread over processes (engine/dist, docs/DISTRIBUTED.md).
//   In one process, ranks as threads (dist/comm_threads.h), everywhere: the fixed-order ring
//   all-reduce against a float64 sum (same bits on every rank and every run), the weight split,
//   the weight message round trip, a sharded quantize equal to a single-process one byte for byte
//   (N = 2, 3), a failing rank stopping every rank with nothing in place, data-parallel
//   fine-tuning against one process (bit-identical for one micro-batch per rank on 2 ranks,
//   else within 1e-6 of the loss).
//   Through `mpirun -np N loftq ...` (Open MPI, oversubscribed; skipped where mpirun or an MPI
//   build is missing): the same equalities from the real binary, a rank killed with SIGKILL and a
//   rank cancelled with SIGINT failing the whole job cleanly, and a fine-tune resumed with
//   another N.
#include <QCoreApplication>
#include <QProcess>
#include <QStandardPaths>
#include <QtTest>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "dist/comm_mpi.h"
#include "dist/comm_threads.h"
#include "dist/data_parallel.h"
#include "dist/gpu_per_rank.h"
#include "dist/weight_exchange.h"
#include "export/quantize.h"
#include "io/synthetic_model.h"
#include "train/trainer.h"
#include "train_fixtures.h"
#include "test_support.h"

using namespace loftq;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Every file under dir, relative path -> bytes.
std::map<std::string, std::string> files_of(const std::string& dir) {
    std::map<std::string, std::string> m;
    for (auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) m[e.path().lexically_relative(dir).string()] = test::read_file(e.path().string());
    return m;
}

// The fields of loftq_metrics.json that describe how a run was made (when, how many threads,
// workers, ranks) or timed, not what it made: they differ between any two runs. So does the
// checksum it records of loftq_metrics.csv, whose last column is the timings.
void drop_run_fields(json& j) {
    if (j.is_object()) {
        for (const char* k : {"created", "threads", "workers", "ranks", "seconds", "step_seconds", "loftq_metrics.csv"}) j.erase(k);
        for (auto& [k, v] : j.items()) drop_run_fields(v);
    } else if (j.is_array()) {
        for (auto& v : j) drop_run_fields(v);
    }
}
// loftq_metrics.csv without its last column (seconds).
std::string csv_without_seconds(const std::string& csv) {
    std::istringstream in(csv);
    std::string line, out;
    while (std::getline(in, line)) out += line.substr(0, line.rfind(',')) + "\n";
    return out;
}

// Two exports of the same plan: every file byte for byte, but the metrics' run fields.
void compare_exports(const std::string& a, const std::string& b) {
    const auto fa = files_of(a), fb = files_of(b);
    QCOMPARE(fa.size(), fb.size());
    for (const auto& [rel, bytes] : fa) {
        QVERIFY2(fb.count(rel), rel.c_str());
        if (rel == "loftq_metrics.json") {
            json ja = json::parse(bytes), jb = json::parse(fb.at(rel));
            drop_run_fields(ja);
            drop_run_fields(jb);
            QVERIFY2(ja == jb, "loftq_metrics.json differs beyond its run fields");
        } else if (rel == "loftq_metrics.csv") {
            QVERIFY2(csv_without_seconds(bytes) == csv_without_seconds(fb.at(rel)), "loftq_metrics.csv differs");
        } else {
            QVERIFY2(bytes == fb.at(rel), ("differs: " + rel).c_str());
        }
    }
}

std::string synthetic(const std::string& tag) {
    SyntheticSpec s;
    s.layers = 2;
    s.hidden = 64;
    s.intermediate = 160;
    s.heads = 4;
    s.kv_heads = 2;
    s.vocab = 96;
    const std::string d = test::make_temp_dir(tag) + "/model";
    write_synthetic_model(d, s);
    return d;
}

QuantizeOptions qopts(const std::string& model, const std::string& out) {
    QuantizeOptions o;
    o.model = model;
    o.out_dir = out;
    o.plan.defaults.rank = 8;
    o.plan.defaults.iters = 3;
    o.threads = 1;
    return o;
}

// Runs `body(rank, comm)` on N thread ranks; what a rank throws is kept per rank, and (as the
// CLI's main does) a rank that fails tells the others before it ends.
std::vector<std::exception_ptr> on_thread_ranks(int n, const std::function<void(int, Comm&, CancelToken&)>& body) {
    auto world = make_thread_world(n);
    std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
    std::vector<std::thread> ts;
    for (int r = 0; r < n; ++r)
        ts.emplace_back([&, r] {
            auto comm = thread_comm(world, r);
            CancelToken cancel;
            comm->set_cancel(&cancel);
            try {
                body(r, *comm, cancel);
            } catch (const Cancelled&) {
                errors[size_t(r)] = std::current_exception();
                comm->abort_all("rank " + std::to_string(r) + ": cancelled");
            } catch (const std::exception& e) {
                errors[size_t(r)] = std::current_exception();
                comm->abort_all("rank " + std::to_string(r) + ": " + e.what());
            }
            comm->set_cancel(nullptr);
            comm->finish(30);
        });
    for (auto& t : ts) t.join();
    return errors;
}

std::string what_of(const std::exception_ptr& p) {
    if (!p) return "";
    try {
        std::rethrow_exception(p);
    } catch (const Cancelled&) {
        return "cancelled";
    } catch (const std::exception& e) {
        return e.what();
    }
    return "?";
}

TrainOptions topts(const test::Synth& s, const std::string& out, int accum) {
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
    o.steps = 6;
    o.batch = 2;
    o.seq = 32;
    o.accum = accum;
    o.lr = 5e-3;
    o.warmup = 1;
    o.eval_every = 3;
    o.eval_batches = 2;
    o.sample_tokens = 4;
    o.seed = 3;
    o.threads = 1;
    return o;
}

std::vector<json> metrics_lines(const std::string& dir) {
    std::vector<json> v;
    std::ifstream in(dir + "/metrics.jsonl");
    std::string line;
    while (std::getline(in, line))
        if (!line.empty()) v.push_back(json::parse(line));
    return v;
}
double loss_of(const json& j) { return j["kind"] == "train" ? j["train_loss"].get<double>() : j["eval_loss"].get<double>(); }

// ---- mpirun ----
QString cli_path() {
    QString p = QString::fromLocal8Bit(qgetenv("LOFTQ_CLI"));
    if (p.isEmpty()) p = QCoreApplication::applicationDirPath() + "/loftq";
    return QFile::exists(p) ? p : QString();
}
QString mpirun_path() { return QStandardPaths::findExecutable("mpirun"); }
// Why the mpirun tests cannot run here, "" when they can.
QString mpirun_missing() {
    if (!mpi_built()) return "this build has no MPI (configured with LOFTQ_MPI=OFF, as the sanitizer job is, or without libopenmpi-dev)";
    if (mpirun_path().isEmpty()) return "mpirun is not installed (apt install openmpi-bin)";
    if (cli_path().isEmpty()) return "the loftq binary was not found (LOFTQ_CLI)";
    return "";
}
// mpirun's own options: oversubscribed (CI has 2 cores), as root where CI runs as root.
QStringList mpirun_args(int n) {
    QStringList a{"--oversubscribe", "-np", QString::number(n)};
    if (::geteuid() == 0) a.prepend("--allow-run-as-root");
    return a;
}
struct Run { int code; QString out, err; };
Run run_process(const QString& program, const QStringList& args, int timeout_ms = 180000) {
    QProcess p;
    p.start(program, args);
    if (!p.waitForFinished(timeout_ms)) { p.kill(); p.waitForFinished(); return {-1, "", "timeout"}; }
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2, QString::fromUtf8(p.readAllStandardOutput()),
            QString::fromUtf8(p.readAllStandardError())};
}
Run mpirun(int n, const QStringList& loftq_args) {
    QStringList a = mpirun_args(n);
    a << cli_path() << loftq_args;
    return run_process(mpirun_path(), a);
}
Run run_loftq(const QStringList& args) { return run_process(cli_path(), args); }

// The pid of rank `rank` of the mpirun job whose command line holds `marker` (/proc: environ
// has OMPI_COMM_WORLD_RANK); -1 when not (yet) there.
pid_t rank_pid(int rank, const std::string& marker) {
    for (auto& e : fs::directory_iterator("/proc")) {
        const std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::string cmd = test::read_file(e.path().string() + "/cmdline");
        for (auto& c : cmd)
            if (c == '\0') c = ' ';
        if (cmd.find(marker) == std::string::npos || cmd.find("mpirun") != std::string::npos) continue;
        const std::string env = test::read_file(e.path().string() + "/environ");
        if (env.find("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + '\0') != std::string::npos) return pid_t(std::stoi(name));
    }
    return -1;
}
// Lines of an events file that name `event`.
int count_events(const std::string& path, const std::string& event) {
    std::ifstream in(path);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) n += line.find("\"event\":\"" + event + "\"") != std::string::npos ? 1 : 0;
    return n;
}

}  // namespace

class TestDist : public QObject {
    Q_OBJECT

private slots:
    // ---- in one process ----

    void ringAllreduceIsFixedOrderFloatSum() {
        for (int N : {1, 2, 3, 5}) {
            for (size_t n : {size_t(0), size_t(1), size_t(3), size_t(1000), size_t(12347)}) {
                std::vector<std::vector<float>> inputs(static_cast<size_t>(N));
                std::mt19937 rng(uint32_t(N * 100000 + n));
                std::normal_distribution<float> g(0.f, 1.f);
                for (auto& v : inputs) {
                    v.resize(n);
                    for (auto& x : v) x = g(rng);
                }
                std::vector<double> exact(n, 0.0);  // float64 reference
                for (auto& v : inputs)
                    for (size_t i = 0; i < n; ++i) exact[i] += double(v[i]);
                auto run = [&] {
                    std::vector<std::vector<float>> out = inputs;
                    on_thread_ranks(N, [&](int r, Comm& c, CancelToken&) { allreduce_sum(c, out[size_t(r)].data(), n); });
                    return out;
                };
                const auto a = run(), b = run();
                for (int r = 0; r < N; ++r) {
                    QVERIFY2(a[size_t(r)] == a[0], "ranks disagree");            // the same bits everywhere
                    QVERIFY2(b[size_t(r)] == a[size_t(r)], "two runs differ");   // and on every run
                }
                for (size_t i = 0; i < n; ++i)  // N-1 float roundings of values ~ sqrt(N)
                    QVERIFY2(std::abs(double(a[0][i]) - exact[i]) <= 4e-7 * N * (1 + std::abs(exact[i])) * 4,
                             qPrintable(QString("N %1 n %2 i %3: %4 vs %5").arg(N).arg(n).arg(i).arg(a[0][i]).arg(exact[i])));
                // Chunk 0 is summed in rank order, ((x0 + x1) + x2) + ...: exactly a float loop's result.
                if (n >= size_t(N) && N > 1) {
                    float s = inputs[0][0];
                    for (int r = 1; r < N; ++r) s = s + inputs[size_t(r)][0];
                    QCOMPARE(a[0][0], s);
                }
            }
        }
    }

    void doubleSumAndBroadcast() {
        std::vector<std::array<double, 3>> v(4);
        std::vector<std::array<float, 2>> bc(4);
        on_thread_ranks(4, [&](int r, Comm& c, CancelToken&) {
            v[size_t(r)] = {double(r), 0.1 * r, 1e16};
            allreduce_sum(c, v[size_t(r)].data(), 3);
            bc[size_t(r)] = {float(r) + 1.5f, -float(r)};
            broadcast(c, bc[size_t(r)].data(), sizeof(float) * 2);
        });
        for (int r = 0; r < 4; ++r) {
            QCOMPARE(v[size_t(r)][0], 6.0);
            QCOMPARE(v[size_t(r)][1], ((0.0 + 0.1) + 0.2) + 0.30000000000000004);  // rank order
            QCOMPARE(v[size_t(r)][2], 4e16);
            QCOMPARE(bc[size_t(r)][0], 1.5f);
            QCOMPARE(bc[size_t(r)][1], -0.0f);
        }
    }

    void splitWeightsIsBalancedAndDeterministic() {
        ResolvedPlan p;
        std::mt19937 rng(5);
        for (int i = 0; i < 37; ++i) {
            WeightPlan w;
            w.name = "w" + std::to_string(i);
            w.rows = 64 + int64_t(rng() % 1024);
            w.cols = 64 + int64_t(rng() % 1024);
            w.s.iters = int(rng() % 6);
            p.weights.push_back(w);
        }
        for (int N : {1, 2, 3, 8, 40}) {
            const auto a = split_weights(p, N), b = split_weights(p, N);
            QVERIFY(a == b);
            std::vector<double> load(size_t(N), 0.0);
            double largest = 0, total = 0;
            for (size_t i = 0; i < a.size(); ++i) {
                QVERIFY(a[i] >= 0 && a[i] < N);
                const double w = double(p.weights[i].rows) * double(p.weights[i].cols) * std::max(1, p.weights[i].s.iters);
                load[size_t(a[i])] += w;
                largest = std::max(largest, w);
                total += w;
            }
            // Largest-first greedy: no rank exceeds the mean by more than the largest weight.
            const double mx = *std::max_element(load.begin(), load.end());
            QVERIFY2(mx <= total / N + largest + 1e-6, qPrintable(QString("N %1: max load %2, mean %3").arg(N).arg(mx).arg(total / N)));
        }
    }

    void gpuPerLocalRank() {
        QCOMPARE(gpu_for_local_rank(0, 1, 8), std::string());   // one rank: whatever is visible
        QCOMPARE(gpu_for_local_rank(1, 2, 1), std::string());   // fewer GPUs than ranks: they share
        QCOMPARE(gpu_for_local_rank(0, 2, 0), std::string());   // no GPU
        QCOMPARE(gpu_for_local_rank(1, 2, 2), std::string("1"));
        QCOMPARE(gpu_for_local_rank(3, 4, 8), std::string("3"));
        const std::string dev = test::make_temp_dir("fake-dev");
        for (const char* f : {"nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"}) test::write_file(dev + "/" + f, "");
        QCOMPARE(count_nvidia_devices(dev), 2);
        QCOMPARE(count_nvidia_devices(dev + "/none"), 0);
    }

    void weightMessageRoundTrip() {
        WeightResult r;
        r.rank = 3;
        r.baseline = 0.25;
        r.final_error = 0.125;
        r.w_norm = 7;
        r.seconds = 1.5;
        r.steps = {{1, 0.2, 0.1, 0.25, -1, -1}, {2, 0.125, 0.1, 0.25, -1, -1}};
        Decomposition d;
        d.codes.resize(24);
        for (size_t i = 0; i < 24; ++i) d.codes[i] = uint8_t(i * 7);
        d.scales = {1.f, 2.f};
        d.lr.B = Matrix(4, 3, 0.5f);
        d.lr.A = Matrix(3, 6, -0.25f);
        d.lr.S = {3.f, 2.f, 1.f};
        const std::string bytes = encode_weight(11, r, d);
        WeightResult r2;
        Decomposition d2;
        QCOMPARE(decode_weight(bytes, r2, d2), 11);
        QCOMPARE(r2.rank, 3);
        QCOMPARE(r2.final_error, 0.125);
        QCOMPARE(int(r2.steps.size()), 2);
        QCOMPARE(r2.steps[1].error, 0.125);
        QVERIFY(std::equal(d.codes.begin(), d.codes.end(), d2.codes.begin()) && d2.codes.size() == 24);
        QVERIFY(d2.scales == d.scales && d2.lr.S == d.lr.S);
        QCOMPARE(d2.lr.A.rows, int64_t(3));
        QCOMPARE(d2.lr.B.data()[11], 0.5f);
        for (size_t cut : {size_t(0), size_t(5), bytes.size() / 2, bytes.size() - 1}) {
            try {
                decode_weight(bytes.substr(0, cut), r2, d2);
                QFAIL("a truncated weight message was accepted");
            } catch (const Error& e) {
                QVERIFY2(std::string(e.what()).find("truncated") != std::string::npos, e.what());
            }
        }
    }

    void threadRanksQuantizeEqualsOneProcess() {
        const std::string m = synthetic("dist-q");
        const std::string base = test::make_temp_dir("dist-q-out");
        // Same output path for every run (the adapter config names it): run, then move aside.
        const std::string out = base + "/out";
        QuantizeOptions one = qopts(m, out);
        one.threads = 2;
        QuantizeResult r1 = run_quantize(one, {}, CancelToken{});
        fs::rename(out, base + "/one");
        for (int N : {2, 3}) {
            std::vector<QuantizeResult> res(static_cast<size_t>(N));
            std::vector<int> weight_done(static_cast<size_t>(N), 0);
            const auto errors = on_thread_ranks(N, [&](int r, Comm& c, CancelToken& cancel) {
                QuantizeOptions o = qopts(m, out);
                o.share = make_weight_exchange(c);
                res[size_t(r)] = run_quantize(o, [&](const JobEvent& e) { weight_done[size_t(r)] += e.kind == EventKind::WeightDone; }, cancel);
            });
            for (int r = 0; r < N; ++r) QVERIFY2(!errors[size_t(r)], what_of(errors[size_t(r)]).c_str());
            compare_exports(base + "/one", out);
            // Rank 0 saw every weight (its own and the others'), the others only theirs.
            QCOMPARE(weight_done[0], int(r1.weights.size()));
            int here = 0;
            for (int r = 0; r < N; ++r) here += res[size_t(r)].weights_here;
            QCOMPARE(here, int(r1.weights.size()));
            QCOMPARE(res[0].ranks, N);
            for (size_t i = 0; i < r1.weights.size(); ++i) QCOMPARE(res[0].weights[i].final_error, r1.weights[i].final_error);
            const json manifest = json::parse(test::read_file(out + "/loftq_metrics.json"));
            QCOMPARE(manifest.dump().find("\"ranks\":" + std::to_string(N)) != std::string::npos, true);
            fs::remove_all(out);
        }
    }

    void threadRankFailureStopsEveryRank() {
        // A NaN in one weight: whichever rank owns it fails naming it; every rank stops; no output.
        const std::string m = synthetic("dist-nan");
        {
            auto ck = test::read_file(m + "/model.safetensors");
            const uint64_t hlen = *reinterpret_cast<const uint64_t*>(ck.data());
            const json h = json::parse(ck.substr(8, size_t(hlen)));
            const auto& t = h["model.layers.1.mlp.down_proj.weight"];
            QCOMPARE(t["dtype"].get<std::string>(), std::string("BF16"));
            const size_t at = 8 + size_t(hlen) + t["data_offsets"][0].get<size_t>() + 10;
            ck[at] = char(0xC0);
            ck[at + 1] = char(0x7F);  // bf16 NaN
            test::write_file(m + "/model.safetensors", ck);
        }
        const std::string out = test::make_temp_dir("dist-nan-out") + "/out";
        const auto errors = on_thread_ranks(3, [&](int, Comm& c, CancelToken& cancel) {
            QuantizeOptions o = qopts(m, out);
            o.share = make_weight_exchange(c);
            run_quantize(o, {}, cancel);
        });
        // Rank 0, which writes, cannot finish without the failed weight: it fails. Another rank
        // may have sent all of its own weights before the abort came, and ends normally.
        QVERIFY2(errors[0], "rank 0 finished although a weight failed");
        int named = 0;
        for (auto& e : errors) named += what_of(e).find("down_proj") != std::string::npos ? 1 : 0;
        QCOMPARE(named, 1);   // the owner names the tensor; the others were cancelled (or done)
        QVERIFY(!fs::exists(out));
        for (auto& e : fs::directory_iterator(fs::path(out).parent_path())) QFAIL(("left behind: " + e.path().string()).c_str());
    }

    void threadRanksFinetuneMatchesOneProcess() {
        const test::Synth s = test::make_synth("dist-ft", 64, 160);
        const std::string base = test::make_temp_dir("dist-ft-out");
        for (int accum : {2, 4}) {
            const std::string one = base + "/one" + std::to_string(accum);
            TrainResult r1 = run_finetune(topts(s, one, accum), nullptr, CancelToken{});
            const std::string two = base + "/two" + std::to_string(accum);
            std::vector<TrainResult> rr(2u);
            const auto errors = on_thread_ranks(2, [&](int r, Comm& c, CancelToken& cancel) {
                TrainOptions o = topts(s, two, accum);
                o.parallel = make_data_parallel(c);
                rr[size_t(r)] = run_finetune(o, nullptr, cancel);
            });
            QVERIFY2(!errors[0] && !errors[1], (what_of(errors[0]) + " / " + what_of(errors[1])).c_str());
            QCOMPARE(rr[0].ranks, 2);
            const auto a = metrics_lines(one), b = metrics_lines(two);
            QCOMPARE(a.size(), b.size());
            double worst = 0;
            for (size_t i = 0; i < a.size(); ++i) {
                QCOMPARE(a[i]["kind"], b[i]["kind"]);
                worst = std::max(worst, std::abs(loss_of(a[i]) - loss_of(b[i])));
            }
            const bool same_adapter = test::read_file(one + "/adapter/adapter_model.safetensors") ==
                                      test::read_file(two + "/adapter/adapter_model.safetensors");
            if (accum == 2) {  // one micro-batch per rank, 2 ranks: the sum is the one process's, bit for bit
                QCOMPARE(worst, 0.0);
                QVERIFY(same_adapter);
            } else {
                QVERIFY2(worst < 1e-6, qPrintable(QString("losses differ by %1").arg(worst)));
            }
            QVERIFY(std::abs(rr[0].final_eval_loss - r1.final_eval_loss) < 1e-6);
        }
        // Another data file on one rank: that rank refuses, naming its file; the others stop.
        {
            const std::string other = base + "/other.txt";
            test::write_file(other, test::read_file(s.data).substr(0, test::read_file(s.data).size() / 2));
            const auto errs = on_thread_ranks(2, [&](int r, Comm& c, CancelToken& cancel) {
                TrainOptions o = topts(s, base + "/mixed", 2);
                if (r == 1) o.data = other;
                o.parallel = make_data_parallel(c);
                run_finetune(o, nullptr, cancel);
            });
            QVERIFY2(what_of(errs[1]).find("every rank must read the same data") != std::string::npos, what_of(errs[1]).c_str());
            QVERIFY2(what_of(errs[1]).find("other.txt") != std::string::npos, what_of(errs[1]).c_str());
            QVERIFY(errs[0]);
        }
        // accum not a multiple of the ranks: refused on every rank, naming the rule.
        const auto errors = on_thread_ranks(2, [&](int, Comm& c, CancelToken& cancel) {
            TrainOptions o = topts(s, base + "/bad", 3);
            o.parallel = make_data_parallel(c);
            run_finetune(o, nullptr, cancel);
        });
        QVERIFY(what_of(errors[0]).find("multiple of the ranks") != std::string::npos);
        QVERIFY(!fs::exists(base + "/bad"));
    }

    // ---- mpirun ----

    void mpirunQuantizeEqualsOneProcess() {
        const QString why = mpirun_missing();
        if (!why.isEmpty()) QSKIP(qPrintable("mpirun tests skipped: " + why));
        const std::string model = test::shipped_stories260k();
        const std::string syn = synthetic("mpi-q");
        const std::string base = test::make_temp_dir("mpi-q-out");
        const QString out = QString::fromStdString(base + "/out");
        for (const std::string& m : {model, syn}) {
            Run r1 = run_loftq({"quantize", QString::fromStdString(m), "--out", out, "--threads", "2", "-q"});
            QVERIFY2(r1.code == 0, qPrintable(r1.err));
            fs::rename(out.toStdString(), base + "/one");
            for (int N : {2, 3}) {
                Run rn = mpirun(N, {"quantize", QString::fromStdString(m), "--out", out, "--threads", "1", "-q", "--events",
                                    QString::fromStdString(base + "/ev.jsonl")});
                QVERIFY2(rn.code == 0, qPrintable(rn.err));
                QVERIFY2(rn.out.contains(QString("x %1 ranks").arg(N)), qPrintable(rn.out));
                QCOMPARE(rn.out.count("wrote "), 1);  // rank 0 alone reports
                compare_exports(base + "/one", out.toStdString());
                QCOMPARE(count_events(base + "/ev.jsonl", "exit"), 1);
                fs::remove_all(out.toStdString());
            }
            fs::remove_all(base + "/one");
        }
    }

    void mpirunRankKilledOrCancelledFailsCleanly() {
        const QString why = mpirun_missing();
        if (!why.isEmpty()) QSKIP(qPrintable("mpirun tests skipped: " + why));
        // A job of a few seconds: bigger weights, exact SVD, many steps.
        SyntheticSpec s;
        s.layers = 2;
        s.hidden = 384;
        s.intermediate = 1024;
        s.heads = 4;
        s.kv_heads = 2;
        s.vocab = 128;
        const std::string base = test::make_temp_dir("mpi-kill");
        write_synthetic_model(base + "/model", s);
        for (int sig : {SIGKILL, SIGINT}) {
            const std::string tag = sig == SIGKILL ? "killed" : "cancelled";
            const std::string out = base + "/out-" + tag, ev = base + "/ev-" + tag + ".jsonl";
            QProcess p;
            QStringList a = mpirun_args(2);
            a << cli_path() << "quantize" << QString::fromStdString(base + "/model") << "--out" << QString::fromStdString(out)
              << "--threads" << "1" << "--svd" << "exact" << "--iters" << "12" << "-q" << "--events" << QString::fromStdString(ev);
            p.start(mpirun_path(), a);
            QVERIFY(p.waitForStarted());
            // Mid-run: once rank 0 has seen a weight finish.
            QElapsedTimer t;
            t.start();
            while (count_events(ev, "weight_done") < 1 && t.elapsed() < 60000) QThread::msleep(20);
            QVERIFY2(count_events(ev, "weight_done") >= 1, "no weight finished within 60 s");
            QVERIFY2(count_events(ev, "job_done") == 0, "the job finished before the signal: make it longer");
            const pid_t victim = rank_pid(1, out);
            QVERIFY2(victim > 0, "rank 1's process was not found");
            ::kill(victim, sig);
            QVERIFY(p.waitForFinished(90000));
            const QString err = QString::fromUtf8(p.readAllStandardError());
            QVERIFY2(p.exitCode() != 0, qPrintable(err));
            QVERIFY2(!fs::exists(out), qPrintable("an output folder was left in place: " + err));
            // Killed: mpirun ends rank 0 with SIGTERM, which cancels it cleanly. Cancelled: rank 1
            // tells rank 0, which says so and stops. Either way no staging folder is left beside
            // the output, and rank 0's events end with their exit line.
            if (sig == SIGINT) QVERIFY2(err.contains("the run was stopped: rank 1: cancelled"), qPrintable(err));
            for (auto& e : fs::directory_iterator(base))
                QVERIFY2(e.path().filename().string().find(".out-" + tag + ".loftq-") == std::string::npos,
                         ("staging left: " + e.path().string()).c_str());
            QCOMPARE(count_events(ev, "exit"), 1);
        }
    }

    void mpirunFinetuneMatchesAndResumesWithOtherN() {
        const QString why = mpirun_missing();
        if (!why.isEmpty()) QSKIP(qPrintable("mpirun tests skipped: " + why));
        const test::Synth s = test::make_synth("mpi-ft", 64, 160);
        const std::string base = test::make_temp_dir("mpi-ft-out");
        auto args = [&](const std::string& out, int steps) {
            return QStringList{"finetune", QString::fromStdString(s.model), "--data", QString::fromStdString(s.data),
                               "--eval-data", QString::fromStdString(s.eval), "--out", QString::fromStdString(out),
                               "--init", "loftq", "--rank", "4", "--iters", "2", "--steps", QString::number(steps),
                               "--batch", "2", "--seq", "32", "--accum", "2", "--lr", "5e-3", "--warmup", "0",
                               "--min-lr-ratio", "1", "--eval-every", "3", "--eval-batches", "2", "--sample-tokens", "0",
                               "--seed", "3", "--threads", "1", "-q"};
        };
        Run r1 = run_loftq(args(base + "/one", 6));
        QVERIFY2(r1.code == 0, qPrintable(r1.err));
        Run r2 = mpirun(2, args(base + "/two", 6));
        QVERIFY2(r2.code == 0, qPrintable(r2.err));
        QVERIFY2(r2.out.contains("x 2 ranks"), qPrintable(r2.out));
        const std::string adapter = "/adapter/adapter_model.safetensors";
        QVERIFY(test::read_file(base + "/one" + adapter) == test::read_file(base + "/two" + adapter));
        const auto a = metrics_lines(base + "/one"), b = metrics_lines(base + "/two");
        QCOMPARE(a.size(), b.size());
        for (size_t i = 0; i < a.size(); ++i) QCOMPARE(loss_of(a[i]), loss_of(b[i]));
        // 3 steps on 2 ranks, resumed to 6 on 1 (constant LR: the schedule does not depend on
        // the step count), and 3 on 1 resumed on 2: both equal 6 uninterrupted steps.
        for (auto [first, second] : {std::pair{2, 1}, std::pair{1, 2}}) {
            const std::string out = base + "/resume" + std::to_string(first) + std::to_string(second);
            auto run_n = [&](int n, QStringList a) { return n == 1 ? run_loftq(a) : mpirun(n, a); };
            Run ra = run_n(first, args(out, 3));
            QVERIFY2(ra.code == 0, qPrintable(ra.err));
            QStringList more = args(out, 6);
            more << "--resume";
            Run rb = run_n(second, more);
            QVERIFY2(rb.code == 0, qPrintable(rb.err));
            QVERIFY2(test::read_file(out + adapter) == test::read_file(base + "/one" + adapter),
                     qPrintable(QString("resumed %1 -> %2 ranks differs").arg(first).arg(second)));
        }
        // accum not a multiple of the ranks: one line, exit 1, nothing written.
        QStringList bad = args(base + "/bad", 2);
        bad[bad.indexOf("--accum") + 1] = "3";
        Run rb = mpirun(2, bad);
        QVERIFY(rb.code != 0);
        QVERIFY2(rb.err.contains("must be a multiple of the ranks"), qPrintable(rb.err));
        QVERIFY(!fs::exists(base + "/bad"));
    }

    void commandsThatDoNotSpreadAreRefused() {
        const QString why = mpirun_missing();
        if (!why.isEmpty()) QSKIP(qPrintable("mpirun tests skipped: " + why));
        Run r = mpirun(2, {"inspect", QString::fromStdString(test::shipped_stories260k())});
        QVERIFY(r.code != 0);
        QVERIFY2(r.err.contains("does not run spread over processes"), qPrintable(r.err));
        // One rank under mpirun is a plain run.
        Run one = mpirun(1, {"inspect", QString::fromStdString(test::shipped_stories260k())});
        QVERIFY2(one.code == 0, qPrintable(one.err));
    }
};

QTEST_GUILESS_MAIN(TestDist)
#include "test_dist.moc"
