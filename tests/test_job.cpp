// test_job.cpp: the whole-checkpoint job and the HF LoftQ export, through the engine API on
// synthetic LLaMA-shaped checkpoints the test writes: event stream, exported tensors (non-targets
// bit-exact, targets = the engine's Q in the source dtype), PEFT adapter keys/shapes/config and
// scale * B A == the computed term, metrics, sharding, identical exports for 1 and 2 threads,
// cancellation latency with nothing left behind, refusal to write into the input, NaN weights,
// and the real stories260K (llama2.c) checkpoint from ../shared when present. Also the options'
// name tables (core/name_table.h): every one round-trips and refuses an unknown name clearly.
#include <QtTest>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/task_pool.h"
#include "expect_error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/synthetic_model.h"
#include "export/quantize.h"
#include "export/verify.h"
#include "mixed/sweep.h"
#include "model/device_llama.h"
#include "test_support.h"

using namespace loftq;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {
std::string demo(const std::string& tag, SyntheticSpec s = {}) {
    std::string d = test::make_temp_dir(tag) + "/model";
    write_synthetic_model(d, s);
    return d;
}
SyntheticSpec small(DType dt = DType::BF16) {
    SyntheticSpec s;
    s.layers = 2; s.hidden = 64; s.intermediate = 160; s.heads = 4; s.kv_heads = 2; s.vocab = 96; s.dtype = dt;
    return s;
}
QuantizeOptions opts(const std::string& model, const std::string& out, int rank = 8, int iters = 3) {
    QuantizeOptions o;
    o.model = model;
    o.out_dir = out;
    o.plan.defaults.rank = rank;
    o.plan.defaults.iters = iters;
    o.threads = 2;
    return o;
}
// Every file under dir (relative path -> bytes) and every folder ("<rel>/" -> ""): a folder
// compared before and after must be identical to the byte.
std::map<std::string, std::string> snapshot(const std::string& dir) {
    std::map<std::string, std::string> m;
    for (auto& e : fs::recursive_directory_iterator(dir)) {
        const std::string rel = e.path().lexically_relative(dir).string();
        if (e.is_directory()) m[rel + "/"] = "";
        else m[rel] = test::read_file(e.path().string());
    }
    return m;
}
// Entries beside `out` named like a staging or old folder of it (.<name>.loftq-*).
std::vector<std::string> staging_siblings(const std::string& out) {
    std::vector<std::string> v;
    const std::string prefix = "." + fs::path(out).filename().string() + ".loftq-";
    for (auto& e : fs::directory_iterator(fs::path(out).parent_path()))
        if (e.path().filename().string().rfind(prefix, 0) == 0) v.push_back(e.path().string());
    return v;
}
std::vector<std::string> partial_files(const std::string& dir) {
    std::vector<std::string> v;
    std::error_code ec;
    if (!fs::exists(dir, ec)) return v;
    for (auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) v.push_back(e.path().string());
    return v;
}
}  // namespace

// Every entry of `t`: name -> value -> the same name; the names in order are `stored`.
template <class E, size_t N>
void round_trips(const NameTable<E, N>& t, const std::vector<std::string>& stored) {
    std::vector<std::string> names;
    for (const auto& e : t) {
        QCOMPARE(std::string(t.name(e.value)), std::string(e.name));
        QVERIFY2(t.find(e.name) == e.value, e.name);
        QVERIFY2(t.parse(e.name) == e.value, e.name);
        names.push_back(e.name);
    }
    QCOMPARE(names, stored);
    QCOMPARE(std::string(t.name(E(200))), std::string("?"));   // a value outside the table
}

class TestJob : public QObject {
    Q_OBJECT
private slots:
    void eventsAndResults() {
        std::string m = demo("job-ev", small());
        std::vector<JobEvent> ev;
        QuantizeOptions o = opts(m, "", 8, 4);
        QuantizeResult r = run_quantize(o, [&](const JobEvent& e) { ev.push_back(e); }, CancelToken{});
        QCOMPARE(r.weights.size(), size_t(14));
        QVERIFY(r.files.empty());
        int started = 0, steps = 0, done = 0;
        for (auto& e : ev) {
            started += e.kind == EventKind::WeightStarted;
            steps += e.kind == EventKind::StepDone;
            done += e.kind == EventKind::WeightDone;
            if (e.kind == EventKind::StepDone) {
                QVERIFY(e.step >= 1 && e.step <= 4 && e.steps == 4);
                QVERIFY(e.error > 0 && e.baseline > 0 && e.error < e.baseline);
            }
        }
        QCOMPARE(started, 14);
        QCOMPARE(steps, 14 * 4);
        QCOMPARE(done, 14);
        QCOMPARE(ev.front().kind, EventKind::JobStarted);
        QCOMPARE(ev.back().kind, EventKind::JobDone);
        QCOMPARE(ev.back().fraction, 1.0);
        double last = 0;
        for (auto& e : ev) { QVERIFY(e.fraction + 1e-12 >= last); last = e.fraction; }
        for (auto& w : r.weights) {
            QCOMPARE(int(w.steps.size()), 4);
            QVERIFY(w.final_error < w.baseline);
        }
    }

    // Run a subset (the GUI's "run selected"): only those weights are decomposed and reported.
    void onlySelectedWeights() {
        std::string m = demo("job-only", small());
        QuantizeOptions o = opts(m, "", 4, 2);
        o.only = {"model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.k_proj.weight"};
        int done = 0;
        QuantizeResult r = run_quantize(o, [&](const JobEvent& e) { done += e.kind == EventKind::WeightDone; }, CancelToken{});
        QCOMPARE(r.weights.size(), size_t(2));
        QCOMPARE(done, 2);
        QCOMPARE(r.weights[0].plan.name, std::string("model.layers.0.self_attn.k_proj.weight"));  // tensor order
        QCOMPARE(int(r.weights[1].steps.size()), 2);
    }

    // The export: F32 source so that Q is stored exactly and can be checked to the bit.
    void exportContentsF32() {
        std::string m = demo("job-f32", small(DType::F32));
        std::string out = test::make_temp_dir("job-f32-out") + "/out";
        QuantizeOptions o = opts(m, out, 8, 3);
        o.plan.rules.push_back({"*.mlp.*", false, {}, {}, {.quant = QuantKind::NF2, .rank = 12}});
        QuantizeResult r = run_quantize(o, {}, CancelToken{});
        for (auto f : {"config.json", "model.safetensors", "loftq_init/adapter_model.safetensors", "loftq_init/adapter_config.json",
                       "loftq_metrics.json", "loftq_metrics.csv", "tokenizer_config.json", "generation_config.json"})
            QVERIFY2(fs::exists(out + "/" + f), f);
        for (auto& f : partial_files(out)) QVERIFY2(f.find(".partial") == std::string::npos, f.c_str());

        auto src = Checkpoint::open(m);
        auto dst = Checkpoint::open(out);
        QCOMPARE(dst->tensors().size(), src->tensors().size());
        auto ad = SafetensorsFile::open(out + "/loftq_init/adapter_model.safetensors");
        std::map<std::string, const WeightResult*> by_name;
        for (auto& w : r.weights) by_name[w.plan.name] = &w;
        for (auto& t : src->tensors()) {
            const TensorEntry* d = dst->find(t.name);
            QVERIFY(d);
            QCOMPARE(d->dtype, t.dtype);
            QVERIFY(d->shape == t.shape);
            auto sb = src->read_bytes(t), db = dst->read_bytes(*d);
            if (!by_name.count(t.name)) {
                QVERIFY2(sb == db, t.name.c_str());  // bit-exact copy
                continue;
            }
            const WeightResult& w = *by_name[t.name];
            auto W = src->read_f32(t), Q = dst->read_f32(*d);
            const int64_t mm = t.shape[0], nn = t.shape[1];
            // Q lies on the quantizer's grid: per block, Q / max|Q| is a table entry.
            const QuantFormat& f = quant_format(w.plan.s.quant);
            for (size_t b0 = 0; b0 < Q.size(); b0 += size_t(w.plan.s.block)) {
                size_t b1 = std::min(Q.size(), b0 + size_t(w.plan.s.block));
                float sc = 0;
                for (size_t i = b0; i < b1; ++i) sc = std::max(sc, std::abs(Q[i]));
                for (size_t i = b0; i < b1 && sc > 0; ++i) {
                    bool on_grid = false;
                    for (int c = 0; c < f.levels; ++c) on_grid |= f.table[c] * sc == Q[i];
                    QVERIFY2(on_grid, qPrintable(QString::fromStdString(t.name) + " element " + QString::number(i)));
                }
            }
            // Adapter: A (r x in), B (out x r); alpha = r so PEFT's scale is 1 and B A is the term.
            std::string mp = t.name.substr(0, t.name.size() - 7);
            const TensorInfo* A = ad->find("base_model.model." + mp + ".lora_A.weight");
            const TensorInfo* B = ad->find("base_model.model." + mp + ".lora_B.weight");
            QVERIFY(A && B);
            QCOMPARE(A->dtype, DType::F32);
            QVERIFY(A->shape == std::vector<int64_t>({w.rank, nn}));
            QVERIFY(B->shape == std::vector<int64_t>({mm, w.rank}));
            QCOMPARE(w.rank, w.plan.module.find("proj") != std::string::npos && t.name.find("mlp") != std::string::npos ? 12 : 8);
            const float* a = reinterpret_cast<const float*>(ad->data(*A));
            const float* bb = reinterpret_cast<const float*>(ad->data(*B));
            double num = 0, den = 0;
            for (int64_t i = 0; i < mm; ++i)
                for (int64_t j = 0; j < nn; ++j) {
                    double l = 0;
                    for (int k = 0; k < w.rank; ++k) l += double(bb[i * w.rank + k]) * double(a[k * nn + j]);
                    double dd = double(W[size_t(i * nn + j)]) - double(Q[size_t(i * nn + j)]) - l;
                    num += dd * dd;
                    den += double(W[size_t(i * nn + j)]) * double(W[size_t(i * nn + j)]);
                }
            double err = std::sqrt(num / den);
            QVERIFY2(std::abs(err - w.final_error) <= 1e-5 * w.final_error,
                     qPrintable(QString("%1: recomputed %2 vs reported %3").arg(t.name.c_str()).arg(err).arg(w.final_error)));
        }
        json ac = json::parse(read_text_file(out + "/loftq_init/adapter_config.json"));
        QCOMPARE(ac["peft_type"], "LORA");
        QCOMPARE(ac["task_type"], "CAUSAL_LM");
        QCOMPARE(ac["r"], 8);
        QCOMPARE(ac["lora_alpha"], 8.0);
        QCOMPARE(ac["init_lora_weights"], true);
        QCOMPARE(ac["target_modules"], json({"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}));
        QCOMPARE(ac["rank_pattern"].size(), size_t(6));   // 3 mlp modules x 2 layers at rank 12
        QCOMPARE(ac["rank_pattern"]["layers\\.0\\.mlp\\.up_proj"], 12);
        QCOMPARE(ac["alpha_pattern"]["layers\\.0\\.mlp\\.up_proj"], 12.0);
        QCOMPARE(ac["base_model_name_or_path"], fs::absolute(out).lexically_normal().string());
        json mj = json::parse(read_text_file(out + "/loftq_metrics.json"));
        QCOMPARE(mj["format"], "loftq-metrics");
        QCOMPARE(mj["weights"].size(), size_t(14));
        QCOMPARE(mj["weights"][0]["errors"].size(), size_t(3));
        QVERIFY(mj["manifest"]["inputs"][0]["xxh3_64"].get<std::string>().size() == 16);
        QCOMPARE(mj["manifest"]["plan"]["defaults"]["rank"], 8);
        std::string csv = read_text_file(out + "/loftq_metrics.csv");
        QCOMPARE(std::count(csv.begin(), csv.end(), '\n'), 15L);
        QVERIFY(csv.rfind("name,layer,module,rows,cols,quant,block,rank,iters,svd,qlora_error,error_step1", 0) == 0);
    }

    // Only some layers of a kind adapted: target_modules becomes a regex that PEFT full-matches
    // against module paths; it must select exactly the adapted modules.
    void partialTargetsGiveExactRegex() {
        std::string m = demo("job-regex", small());
        std::string out = test::make_temp_dir("regex-out") + "/o";
        QuantizeOptions o = opts(m, out, 4, 1);
        o.plan.overrides["model.layers.0.self_attn.q_proj.weight"] = {.target = false};
        QuantizeResult r = run_quantize(o, {}, CancelToken{});
        QCOMPARE(r.weights.size(), size_t(13));
        json ac = json::parse(read_text_file(out + "/loftq_init/adapter_config.json"));
        QVERIFY(ac["target_modules"].is_string());
        std::regex re(ac["target_modules"].get<std::string>());
        auto ck = Checkpoint::open(m);
        int matched = 0;
        for (auto& t : ck->tensors()) {
            std::string mp = t.name.substr(0, t.name.size() - 7);  // drop ".weight"
            bool adapted = false;
            for (auto& w : r.weights) adapted |= w.plan.name == t.name;
            bool hit = std::regex_match(mp, re);
            QVERIFY2(hit == adapted, mp.c_str());
            matched += hit;
        }
        QCOMPARE(matched, 13);
    }

    // lora_alpha given: A and B scaled so that (alpha / r) B A is unchanged. T = 0: QLoRA init.
    void loraAlphaScalingAndQloraInit() {
        std::string m = demo("job-alpha", small(DType::F32));
        std::string o1 = test::make_temp_dir("a1") + "/o", o2 = test::make_temp_dir("a2") + "/o";
        QuantizeOptions a = opts(m, o1, 8, 2), b = opts(m, o2, 8, 2);
        b.plan.lora_alpha = 16;
        b.plan.overrides["model.layers.1.mlp.up_proj.weight"] = {.iters = 0};
        run_quantize(a, {}, CancelToken{});
        run_quantize(b, {}, CancelToken{});
        auto fa = SafetensorsFile::open(o1 + "/loftq_init/adapter_model.safetensors");
        auto fb = SafetensorsFile::open(o2 + "/loftq_init/adapter_model.safetensors");
        std::string k = "base_model.model.model.layers.0.self_attn.q_proj.lora_";
        auto* a1 = reinterpret_cast<const float*>(fa->data(*fa->find(k + "A.weight")));
        auto* a2 = reinterpret_cast<const float*>(fb->data(*fb->find(k + "A.weight")));
        auto* b1 = reinterpret_cast<const float*>(fa->data(*fa->find(k + "B.weight")));
        auto* b2 = reinterpret_cast<const float*>(fb->data(*fb->find(k + "B.weight")));
        for (int i = 0; i < 8 * 64; ++i) QVERIFY(std::abs(a2[i] - a1[i] * std::sqrt(0.5f)) <= 1e-6f * std::abs(a1[i]) + 1e-12f);
        // (16 / 8) * B2 A2 == B1 A1 elementwise.
        for (int i = 0; i < 64; i += 7)
            for (int j = 0; j < 64; j += 5) {
                double s1 = 0, s2 = 0;
                for (int r = 0; r < 8; ++r) { s1 += double(b1[i * 8 + r]) * a1[r * 64 + j]; s2 += 2.0 * double(b2[i * 8 + r]) * a2[r * 64 + j]; }
                QVERIFY(std::abs(s1 - s2) <= 1e-5 * (std::abs(s1) + 1e-6));
            }
        json ac = json::parse(read_text_file(o2 + "/loftq_init/adapter_config.json"));
        QCOMPARE(ac["lora_alpha"], 16.0);
        auto& up = *fb->find("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight");
        const float* zb = reinterpret_cast<const float*>(fb->data(up));
        for (uint64_t i = 0; i < up.numel(); ++i) QCOMPARE(zb[i], 0.f);  // QLoRA: B = 0
        auto& upa = *fb->find("base_model.model.model.layers.1.mlp.up_proj.lora_A.weight");
        const float* za = reinterpret_cast<const float*>(fb->data(upa));
        double bound = 1.0 / std::sqrt(64.0), mx = 0;
        for (uint64_t i = 0; i < upa.numel(); ++i) mx = std::max(mx, double(std::abs(za[i])));
        QVERIFY(mx <= bound && mx > 0.8 * bound);  // A ~ U(-1/sqrt(in), 1/sqrt(in))
    }

    void identicalExportsForOneAndTwoThreads() {
        std::string m = demo("job-thr", small());
        std::string o1 = test::make_temp_dir("t1") + "/o", o2 = test::make_temp_dir("t2") + "/o";
        QuantizeOptions a = opts(m, o1), b = opts(m, o2);
        a.threads = 1;
        b.threads = 2;
        run_quantize(a, {}, CancelToken{});
        run_quantize(b, {}, CancelToken{});
        QVERIFY(test::file_bytes(o1 + "/model.safetensors") == test::file_bytes(o2 + "/model.safetensors"));
        QVERIFY(test::file_bytes(o1 + "/loftq_init/adapter_model.safetensors") == test::file_bytes(o2 + "/loftq_init/adapter_model.safetensors"));
    }

    void shardedInAndOut() {
        SyntheticSpec s = small();
        s.max_shard_bytes = 40000;
        std::string m = demo("job-shard", s);
        QVERIFY(fs::exists(m + "/model.safetensors.index.json"));
        std::string out = test::make_temp_dir("shard-out") + "/o";
        QuantizeOptions o = opts(m, out);
        o.max_shard_bytes = 60000;
        run_quantize(o, {}, CancelToken{});
        QVERIFY(fs::exists(out + "/model.safetensors.index.json"));
        QVERIFY(!fs::exists(out + "/model.safetensors"));
        auto src = Checkpoint::open(m);
        auto dst = Checkpoint::open(out);
        QCOMPARE(dst->files().size() > 1, true);
        QCOMPARE(dst->tensors().size(), src->tensors().size());
        json idx = json::parse(read_text_file(out + "/model.safetensors.index.json"));
        QCOMPARE(idx["weight_map"].size(), src->tensors().size());
        QVERIFY(dst->read_bytes(*dst->find("model.embed_tokens.weight")) == src->read_bytes(*src->find("model.embed_tokens.weight")));
        // Re-export unsharded over it with --force: the old shards and index must go.
        QuantizeOptions again = opts(m, out);
        again.force = true;
        run_quantize(again, {}, CancelToken{});
        std::vector<std::string> names;
        for (auto& e : fs::directory_iterator(out)) names.push_back(e.path().filename().string());
        for (auto& n : names) QVERIFY2(n.find("-of-") == std::string::npos && n != "model.safetensors.index.json", n.c_str());
        QCOMPARE(Checkpoint::open(out)->tensors().size(), src->tensors().size());
    }

    // --force over an older export commits the whole folder at once (fsutil.h StagedOutput,
    // FolderSwap): a failure or cancel at any step before the swap leaves the old export byte for
    // byte and no staging folder; a success keeps the user's own files and folders, drops the old
    // export's stale shards and index, and removes dead runs' staging folders beside it. An output
    // folder given as a symbolic link is replaced where the link points; the link stays.
    void forceReplacesTheFolderWhole() {
        SyntheticSpec s = small();
        std::string m = demo("job-swap", s);
        const std::string root = test::make_temp_dir("swap-out"), out = root + "/o";
        QuantizeOptions old = opts(m, out, 4, 1);
        old.max_shard_bytes = 60000;  // the old export is sharded: its shards and index are stale later
        old.checksums = false;
        run_quantize(old, {}, CancelToken{});
        QVERIFY(fs::exists(out + "/model.safetensors.index.json"));
        test::write_file(out + "/notes.txt", "my notes");
        fs::create_directories(out + "/mine/deeper");
        test::write_file(out + "/mine/deeper/data.bin", std::string(1000, 'x'));
        fs::create_symlink("notes.txt", out + "/notes-link");
        const auto before = snapshot(out);

        QuantizeOptions o = opts(m, out, 8, 1);  // another rank: another export
        o.force = true;
        o.checksums = false;
        for (const char* step : {"staged", "carried"}) {
            set_folder_commit_hook([step](const char* at) {
                if (std::string(at) == step) throw Error("simulated failure at " + std::string(at));
            });
            EXPECT_ERROR(run_quantize(o, {}, CancelToken{}), "simulated failure at", step);
            set_folder_commit_hook({});
            QVERIFY2(snapshot(out) == before, step);
            QVERIFY2(staging_siblings(out).empty(), step);
        }
        {  // cancelled after the first weight
            CancelToken tok;
            QVERIFY_THROWS_EXCEPTION(Cancelled, run_quantize(o, [&](const JobEvent& e) {
                if (e.kind == EventKind::WeightDone) tok.cancel();
            }, tok));
            QVERIFY(snapshot(out) == before);
            QVERIFY(staging_siblings(out).empty());
        }
        // Debris of crashed runs: a dead process's staging folder goes, a live one's stays (pid 1).
        fs::create_directories(root + "/.o.loftq-staging-999999999-3/loftq_init");
        test::write_file(root + "/.o.loftq-staging-999999999-3/model.safetensors", "half");
        fs::create_directories(root + "/.o.loftq-staging-1-0");
        test::write_file(out + "/model.safetensors.partial", "debris of an older version's commit");
        QuantizeResult r = run_quantize(o, {}, CancelToken{});
        QVERIFY(!fs::exists(root + "/.o.loftq-staging-999999999-3"));
        QVERIFY(fs::exists(root + "/.o.loftq-staging-1-0"));
        fs::remove(root + "/.o.loftq-staging-1-0");
        QVERIFY(staging_siblings(out).empty());
        const auto after = snapshot(out);
        QCOMPARE(QString::fromStdString(after.at("notes.txt")), QString("my notes"));
        QCOMPARE(after.at("mine/deeper/data.bin"), std::string(1000, 'x'));
        QVERIFY(fs::is_symlink(out + "/notes-link") && fs::read_symlink(out + "/notes-link") == "notes.txt");
        for (const auto& [rel, bytes] : after) {
            QVERIFY2(rel.find("-of-") == std::string::npos && rel != "model.safetensors.index.json", rel.c_str());
            QVERIFY2(rel.find(".partial") == std::string::npos, rel.c_str());
        }
        QCOMPARE(json::parse(after.at("loftq_metrics.json"))["manifest"]["plan"]["defaults"]["rank"], 8);
        QCOMPARE(Checkpoint::open(out)->tensors().size(), Checkpoint::open(m)->tensors().size());
        for (const auto& f : r.files) QVERIFY2(fs::exists(f) && f.rfind(out + "/", 0) == 0, f.c_str());
        const VerifyReport v = verify_export(out);
        QVERIFY(v.ok());
        QCOMPARE(v.unlisted, (std::vector<std::string>{"mine/deeper/data.bin", "notes-link", "notes.txt"}));

        // Through a symbolic link: the folder it names is replaced, the link stays a link.
        const std::string real = root + "/real", link = root + "/link";
        run_quantize(opts(m, real, 4, 1), {}, CancelToken{});
        test::write_file(real + "/keep.txt", "kept");
        fs::create_directory_symlink(real, link);
        QuantizeOptions via = opts(m, link, 8, 1);
        via.force = true;
        run_quantize(via, {}, CancelToken{});
        QVERIFY(fs::is_symlink(link));
        QCOMPARE(QString::fromStdString(read_text_file(real + "/keep.txt")), QString("kept"));
        QCOMPARE(json::parse(read_text_file(real + "/loftq_metrics.json"))["manifest"]["plan"]["defaults"]["rank"], 8);
        QVERIFY(staging_siblings(real).empty());
        // A link to nothing is refused, naming it.
        fs::create_symlink(root + "/nowhere", root + "/dangling");
        EXPECT_ERROR(run_quantize(opts(m, root + "/dangling", 4, 1), {}, CancelToken{}), "dangling", "symbolic link to nothing");
    }

    // Cancel mid-run: the job stops within a second and leaves no file in place.
    void cancelIsPromptAndLeavesNothing() {
        SyntheticSpec s;
        s.layers = 3; s.hidden = 512; s.intermediate = 1376; s.heads = 8; s.kv_heads = 8; s.vocab = 256;
        std::string m = demo("job-cancel", s);
        std::string out = test::make_temp_dir("cancel-out") + "/o";
        QuantizeOptions o = opts(m, out, 16, 20);
        o.threads = 2;
        CancelToken tok;
        std::atomic<int> weights_done{0};
        std::chrono::steady_clock::time_point t_cancel;
        std::thread canceller([&] {
            while (weights_done.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
            t_cancel = std::chrono::steady_clock::now();
            tok.cancel();
        });
        bool cancelled = false;
        try {
            run_quantize(o, [&](const JobEvent& e) { if (e.kind == EventKind::WeightDone) ++weights_done; }, tok);
        } catch (const Cancelled&) {
            cancelled = true;
        }
        auto latency = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_cancel).count();
        canceller.join();
        QVERIFY(cancelled);
        qInfo("cancel honoured after %.3f s", latency);
        QVERIFY2(latency < 1.0, qPrintable(QString("cancel took %1 s").arg(latency)));
        QVERIFY2(partial_files(out).empty(), "files left behind after cancel");
        // Nor the folder the job created: an empty one would make the next run ask for --force.
        QVERIFY2(!fs::exists(out), "an empty output folder left behind after cancel");
    }

    // Extra files (the GUI's plots) land in the same commit; a bad name fails the export whole.
    void extraFilesJoinTheCommit() {
        std::string m = demo("job-extra", small());
        std::string out = test::make_temp_dir("extra-out") + "/o";
        QuantizeOptions o = opts(m, out, 4, 1);
        size_t seen_weights = 0;
        o.extra_files = [&](const QuantizeResult& r) {
            seen_weights = r.weights.size();
            return std::vector<std::pair<std::string, std::string>>{{"plots/curves.png", "PNGDATA"}};
        };
        QuantizeResult r = run_quantize(o, {}, CancelToken{});
        QCOMPARE(seen_weights, r.weights.size());
        QCOMPARE(QString::fromStdString(read_text_file(out + "/plots/curves.png")), QString("PNGDATA"));
        QVERIFY(std::filesystem::exists(out + "/loftq_metrics.json"));

        std::string out2 = test::make_temp_dir("extra-bad") + "/o";
        o.out_dir = out2;
        o.extra_files = [](const QuantizeResult&) {
            return std::vector<std::pair<std::string, std::string>>{{"../escape.png", "x"}};
        };
        QVERIFY_THROWS_EXCEPTION(Error, run_quantize(o, {}, CancelToken{}));
        QVERIFY(!std::filesystem::exists(out2 + "/loftq_metrics.json"));
        QVERIFY(!std::filesystem::exists(out2 + "/model.safetensors"));
        QVERIFY(partial_files(out2).empty());
    }

    void refusesToWriteIntoInput() {
        std::string m = demo("job-refuse", small());
        for (std::string out : {m, m + "/sub"}) {
            try {
                run_quantize(opts(m, out), {}, CancelToken{});
                QFAIL("no error");
            } catch (const Error& e) {
                QVERIFY2(QString(e.what()).contains("refusing"), e.what());
            }
        }
        std::string busy = test::make_temp_dir("busy");
        std::ofstream(busy + "/x") << "x";
        try {
            run_quantize(opts(m, busy), {}, CancelToken{});
            QFAIL("no error");
        } catch (const Error& e) {
            QVERIFY(QString(e.what()).contains("not empty"));
        }
        QuantizeOptions f = opts(m, busy);
        f.force = true;
        run_quantize(f, {}, CancelToken{});
        QVERIFY(fs::exists(busy + "/loftq_metrics.json") && fs::exists(busy + "/x"));
    }

    void nanWeightNamesTheTensorAndLeavesNothing() {
        std::string m = demo("job-nan", small(DType::F32));
        // Poke a NaN into one projection: data section starts after the 8-byte length + header.
        const std::string name = "model.layers.1.mlp.up_proj.weight";
        uint64_t file_off = 0;
        {
            auto st = SafetensorsFile::open(m + "/model.safetensors");
            std::ifstream in(m + "/model.safetensors", std::ios::binary);
            uint64_t hl = 0;
            in.read(reinterpret_cast<char*>(&hl), 8);
            file_off = 8 + hl + st->find(name)->begin + 4 * 77;
        }
        {
            std::fstream f(m + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(std::streamoff(file_off));
            float nan = std::nanf("");
            f.write(reinterpret_cast<const char*>(&nan), 4);
        }
        std::string out = test::make_temp_dir("nan-out") + "/o";
        try {
            run_quantize(opts(m, out), {}, CancelToken{});
            QFAIL("no error");
        } catch (const Error& e) {
            QVERIFY2(QString(e.what()).contains("model.layers.1.mlp.up_proj.weight"), e.what());
        }
        QVERIFY(partial_files(out).empty());
        QVERIFY2(!fs::exists(out), "an empty output folder left behind after a failure");
        // A folder that was there before (empty, the user's) stays.
        fs::create_directories(out);
        EXPECT_ERROR(run_quantize(opts(m, out), {}, CancelToken{}), "model.layers.1.mlp.up_proj.weight");
        QVERIFY(fs::is_directory(out) && fs::is_empty(out));
    }

    // A weight's failure that names nothing (a LAPACK "did not converge", a library's own
    // exception, out of memory) reaches the user naming the weight and the model.
    void errorsFromAWeightNameIt() {
        std::string m = demo("job-err", small(DType::F32));
        const std::string bad = "model.layers.1.self_attn.o_proj.weight";
        struct Failing : Exporter {
            const ResolvedPlan& plan;
            std::string bad;
            bool oom;
            Failing(const ResolvedPlan& p, std::string b, bool o) : plan(p), bad(std::move(b)), oom(o) {}
            void write_copy(const TensorEntry&) override {}
            void write_target(size_t wi, const Decomposition&) override {
                if (plan.weights[wi].name != bad) return;
                if (oom) throw std::bad_alloc();
                throw std::runtime_error("sgesdd did not converge");
            }
            std::vector<std::string> commit(const QuantizeResult&, const nlohmann::ordered_json&) override { return {}; }
        };
        for (bool oom : {false, true}) {
            QuantizeOptions o = opts(m, "");
            try {
                run_quantize_with(o, [&](const Checkpoint&, const QuantizeOptions&, const ResolvedPlan& p) {
                    return std::unique_ptr<Exporter>(new Failing(p, bad, oom));
                }, {}, CancelToken{});
                QFAIL("no error");
            } catch (const Error& e) {
                QCOMPARE(e.tensor, bad);
                QCOMPARE(e.file, m);
                QVERIFY2(std::string(e.what()).find(oom ? "out of memory" : "sgesdd did not converge") != std::string::npos, e.what());
            }
        }
    }

    // The engine's one scheduler (core/task_pool.h): every task once, in counter order per
    // worker, the first error rethrown after all workers stop, no new task after an error or
    // a cancel, a task's Cancelled rethrown.
    void taskPool() {
        for (int workers : {1, 2, 7}) {
            std::vector<std::atomic<int>> runs(100);
            std::vector<std::vector<size_t>> seen(static_cast<size_t>(workers));
            run_tasks(100, workers, nullptr, [&](int w, size_t i) { runs[i]++; seen[size_t(w)].push_back(i); });
            for (auto& r : runs) QCOMPARE(r.load(), 1);
            for (auto& v : seen) QVERIFY(std::is_sorted(v.begin(), v.end()));
        }
        std::atomic<int> after{0};
        try {
            run_tasks(1000, 4, nullptr, [&](int, size_t i) {
                if (i == 10) throw Error("m.bin", "w10", "first");
                if (i > 10) { std::this_thread::sleep_for(std::chrono::milliseconds(1)); after++; }
            });
            QFAIL("no error");
        } catch (const Error& e) {
            QCOMPARE(e.tensor, std::string("w10"));
        }
        QVERIFY2(after.load() < 20, qPrintable(QString::number(after.load())));   // the others stop at their next task
        CancelToken cancel;
        std::atomic<int> ran{0};
        run_tasks(1000, 3, &cancel, [&](int, size_t i) { if (++ran == 5) cancel.cancel(); });
        QVERIFY(ran.load() < 5 + 3);
        QVERIFY_THROWS_EXCEPTION(Cancelled, run_tasks(10, 2, nullptr, [&](int, size_t i) { if (i == 3) throw Cancelled(); }));
        // rethrow_naming: Cancelled and named errors pass; the rest get the name.
        auto named = [](auto thrower) -> Error {
            try {
                try { thrower(); } catch (...) { rethrow_naming("f.safetensors", "t"); }
            } catch (const Error& e) { return e; }
            return Error("none");
        };
        QCOMPARE(named([] { throw Error("x.bin", "other", "bad"); }).tensor, std::string("other"));
        Error plain = named([] { throw Error("linalg: did not converge"); });
        QCOMPARE(plain.tensor, std::string("t"));
        QCOMPARE(std::string(plain.what()), std::string("f.safetensors: tensor 't': linalg: did not converge"));
        QCOMPARE(named([] { throw std::runtime_error("lib"); }).tensor, std::string("t"));
        QVERIFY_THROWS_EXCEPTION(Cancelled, [] { try { throw Cancelled(); } catch (...) { rethrow_naming("f", "t"); } }());
    }

    // A path that is not UTF-8 (legal on Linux) cannot go into the JSON an export records: the
    // job refuses it at its start, naming it (it failed after the whole run with a JSON exception).
    void nonUtf8PathsRefusedAtStart() {
        std::string m = demo("job-utf8", small(DType::F32));
        const std::string root = test::make_temp_dir("utf8");
        const std::string bad_model = root + "/mod\xff" + "el";
        fs::copy(m, bad_model, fs::copy_options::recursive);
        QElapsedTimer t;
        t.start();
        EXPECT_ERROR(run_quantize(opts(bad_model, root + "/out"), {}, CancelToken{}), "model's path is not valid UTF-8", "mod\\xFFel");
        EXPECT_ERROR(run_quantize(opts(m, root + "/o\xc3\x28"), {}, CancelToken{}), "output folder's path is not valid UTF-8");
        QVERIFY(t.elapsed() < 1000);
        QVERIFY(!fs::exists(root + "/out") && !fs::exists(root + "/o\xc3\x28"));
        run_quantize(opts(m, root + "/ok-\xc3\xa9\xe2\x82\xac"), {}, CancelToken{});   // é€: valid UTF-8 is fine
        QVERIFY(fs::exists(root + "/ok-\xc3\xa9\xe2\x82\xac/loftq_metrics.json"));
    }

    // GPT-2 stores its projections as Conv1D (in x out): PEFT's factors are transposed and the
    // config says fan_in_fan_out; (B A)^T must be the low-rank term of the stored matrix.
    void gpt2Conv1dExport() {
        std::string m = test::make_temp_dir("gpt2") + "/model";
        fs::create_directories(m);
        std::vector<OutTensor> lay;
        std::map<std::string, std::vector<float>> vals;
        auto add = [&](const std::string& n, std::vector<int64_t> shape, uint64_t seed) {
            uint64_t cnt = 1;
            for (auto d : shape) cnt *= uint64_t(d);
            lay.push_back({n, DType::F32, "", shape, cnt * 4});
            if (shape.size() == 2) {
                Matrix w = test::structured_matrix(shape[0], shape[1], seed);
                vals[n].assign(w.buf.begin(), w.buf.end());
            } else {
                vals[n] = std::vector<float>(cnt, 1.f);
            }
        };
        add("transformer.wte.weight", {100, 64}, 1);
        add("transformer.h.0.ln_1.weight", {64}, 0);
        add("transformer.h.0.attn.c_attn.weight", {64, 192}, 2);
        add("transformer.h.0.attn.c_proj.weight", {64, 64}, 3);
        add("transformer.h.0.mlp.c_fc.weight", {64, 256}, 4);
        add("transformer.h.0.mlp.c_proj.weight", {256, 64}, 5);
        {
            SafetensorsWriter w(m + "/model.safetensors", lay);
            for (auto& [n, v] : vals) w.write(n, v.data(), v.size() * 4);
            w.finish();
            w.commit();
        }
        write_file_atomic(m + "/config.json", R"({"model_type": "gpt2", "n_layer": 1, "n_embd": 64, "n_head": 4, "vocab_size": 100})");
        std::string out = test::make_temp_dir("gpt2-out") + "/o";
        QuantizeResult r = run_quantize(opts(m, out, 8, 3), {}, CancelToken{});
        QCOMPARE(r.weights.size(), size_t(4));
        json ac = json::parse(read_text_file(out + "/loftq_init/adapter_config.json"));
        QCOMPARE(ac["fan_in_fan_out"], true);
        QCOMPARE(ac["target_modules"], json({"c_attn", "c_fc", "c_proj"}));
        auto dst = Checkpoint::open(out);
        auto ad = SafetensorsFile::open(out + "/loftq_init/adapter_model.safetensors");
        for (auto& w : r.weights) {
            const int64_t in = w.plan.rows, outf = w.plan.cols;  // stored (in x out)
            std::string mp = w.plan.name.substr(0, w.plan.name.size() - 7);
            const TensorInfo* A = ad->find("base_model.model." + mp + ".lora_A.weight");
            const TensorInfo* B = ad->find("base_model.model." + mp + ".lora_B.weight");
            QVERIFY(A && B);
            QVERIFY(A->shape == std::vector<int64_t>({8, in}));
            QVERIFY(B->shape == std::vector<int64_t>({outf, 8}));
            const float* a = reinterpret_cast<const float*>(ad->data(*A));
            const float* b = reinterpret_cast<const float*>(ad->data(*B));
            auto Q = dst->read_f32(*dst->find(w.plan.name));
            const auto& W = vals[w.plan.name];
            double num = 0, den = 0;
            for (int64_t i = 0; i < in; ++i)
                for (int64_t j = 0; j < outf; ++j) {
                    double l = 0;  // ((B A)^T)_ij = sum_k B_jk A_ki
                    for (int k = 0; k < 8; ++k) l += double(b[j * 8 + k]) * double(a[k * in + i]);
                    double d = double(W[size_t(i * outf + j)]) - double(Q[size_t(i * outf + j)]) - l;
                    num += d * d;
                    den += double(W[size_t(i * outf + j)]) * double(W[size_t(i * outf + j)]);
                }
            QVERIFY2(std::abs(std::sqrt(num / den) - w.final_error) <= 1e-5 * w.final_error, w.plan.name.c_str());
        }
    }

    void realStories260K() {
        std::string sh = test::shared_dir();
        if (sh.empty()) QSKIP("../shared not present: skipping the real stories260K checkpoint");
        std::string bin = sh + "/models/stories260K/stories260K.bin";
        if (!fs::exists(bin)) QSKIP("stories260K.bin not in ../shared/models");
        std::string out = test::make_temp_dir("stories") + "/o";
        QuantizeOptions o = opts(bin, out, 8, 5);
        o.plan.defaults.quant = QuantKind::NF2;
        QuantizeResult r = run_quantize(o, {}, CancelToken{});
        QCOMPARE(r.weights.size(), size_t(5 * 7));
        double sb = 0, sf = 0;
        for (auto& w : r.weights) {
            sb += w.baseline;
            sf += w.final_error;
            QVERIFY(w.final_error < w.baseline);
        }
        qInfo("stories260K NF2 r8 T5: mean QLoRA error %.4f -> LoftQ %.4f", sb / 35, sf / 35);
        json cfg = json::parse(read_text_file(out + "/config.json"));
        QCOMPARE(cfg["model_type"], "llama");
        QCOMPARE(cfg["hidden_size"], 64);
        QCOMPARE(cfg["num_key_value_heads"], 4);
        QCOMPARE(cfg["tie_word_embeddings"], true);
        auto dst = Checkpoint::open(out);
        QVERIFY(!dst->find("lm_head.weight"));
        QVERIFY(dst->find("model.layers.4.mlp.down_proj.weight"));
        QVERIFY(fs::exists(out + "/tok512.bin"));
    }

    // One table per option enum: name -> value -> the same name for every entry, names unique,
    // and the names files hold (checkpoints' options, manifests, plans, sweep caches) unchanged.
    void nameTables() {
        round_trips(kComputeDeviceNames, {"auto", "cpu", "cuda"});
        round_trips(kGemmModeNames, {"tf32", "fp32", "bf16"});
        round_trips(kRecomputeModeNames, {"auto", "on", "off"});
        round_trips(kExportFormatNames, {"hf", "packed", "bnb-nf4"});
        round_trips(kInitKindNames, {"export", "loftq", "qlora", "lora16"});
        round_trips(kSvdMethodNames, {"randomized", "exact"});
        round_trips(kSweepModeNames, {"auto", "fast", "full"});
        // Names match exactly: files and the CLI spell them in lower case.
        QVERIFY(!kComputeDeviceNames.find("CUDA"));
        QVERIFY(!kGemmModeNames.find("BF16"));
        QVERIFY(!kExportFormatNames.find(""));
        // An unknown name: the message names what, the value and every choice, and no CLI flag.
        for (auto [fn, expect] : std::vector<std::pair<std::function<void()>, std::string>>{
                 {[] { kGemmModeNames.parse("bf8"); }, "unknown GEMM mode 'bf8' (expected tf32, fp32 or bf16)"},
                 {[] { kComputeDeviceNames.parse("gpu"); }, "unknown device 'gpu' (expected auto, cpu or cuda)"},
                 {[] { kRecomputeModeNames.parse("yes"); }, "unknown recompute mode 'yes' (expected auto, on or off)"},
                 {[] { kExportFormatNames.parse("gguf"); }, "unknown export format 'gguf' (expected hf, packed or bnb-nf4)"}}) {
            try {
                fn();
                QFAIL(("accepted: " + expect).c_str());
            } catch (const Error& e) {
                QCOMPARE(std::string(e.what()), expect);
            }
        }
        QCOMPARE(kGemmModeNames.choices("|", nullptr), std::string("tf32|fp32|bf16"));
    }

    // The device chooser in a build or on a machine without a usable GPU (CI): `cuda` is refused
    // with the reason before anything is written, `auto` runs on the CPU and says why.
    void deviceStatus() {
        const CudaStatus& st = cuda_status();
        QVERIFY(st.available || !st.why_not.empty());
        QVERIFY(!st.available || st.built);
    }

    void cudaRefusedWithoutAGpu() {
        if (cuda_status().available) QSKIP("a CUDA device is present (test_cuda_loftq covers the device path)");
        std::string m = demo("job-nocuda", small());
        const std::string out = test::make_temp_dir("job-nocuda-out") + "/out";
        QuantizeOptions o = opts(m, out);
        o.device = ComputeDevice::Cuda;
        try {
            run_quantize(o, {}, CancelToken{});
            QFAIL("device cuda ran without a GPU");
        } catch (const Error& e) {
            const std::string msg = e.what();
            QVERIFY2(msg.find(kCudaNotUsable + cuda_status().why_not) != std::string::npos, msg.c_str());
            QVERIFY2(msg.find("--") == std::string::npos, msg.c_str());   // the GUI shows it: no CLI flag
        }
        QVERIFY(!fs::exists(out));
    }

    void autoFallsBackToTheCpu() {
        if (cuda_status().available) QSKIP("a CUDA device is present: auto picks it");
        std::string m = demo("job-auto", small());
        QuantizeOptions o = opts(m, "", 8, 2);
        o.device = ComputeDevice::Auto;
        std::vector<std::string> messages;
        QuantizeResult r = run_quantize(o, [&](const JobEvent& e) {
            if (e.kind == EventKind::Message) messages.push_back(e.message);
        }, CancelToken{});
        QCOMPARE(r.device, ComputeDevice::Cpu);
        QCOMPARE(r.device_name, std::string("cpu"));
        QCOMPARE(r.streams, 0);
        QCOMPARE(r.device_peak_bytes, uint64_t(0));
        const bool said = std::any_of(messages.begin(), messages.end(), [](const std::string& x) {
            return x.rfind("device: cpu (CUDA: ", 0) == 0;
        });
        QVERIFY2(said, "auto did not say why it runs on the CPU");
        // Same numbers as an explicit CPU run.
        o.device = ComputeDevice::Cpu;
        QuantizeResult c = run_quantize(o, {}, CancelToken{});
        for (size_t i = 0; i < r.weights.size(); ++i) QCOMPARE(r.weights[i].final_error, c.weights[i].final_error);
    }
};

QTEST_APPLESS_MAIN(TestJob)
#include "test_job.moc"
