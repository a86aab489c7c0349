// export_hf.cpp: see export_hf.h.
#include "loftq/export_hf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "io/peft_adapter.h"
#include "io/sharded_writer.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {
std::string module_path(const std::string& tensor_name) {
    const std::string suf = ".weight";
    if (tensor_name.size() > suf.size() && tensor_name.compare(tensor_name.size() - suf.size(), suf.size(), suf) == 0)
        return tensor_name.substr(0, tensor_name.size() - suf.size());
    return tensor_name;
}
}  // namespace

// After a --force export into a folder that held an earlier one: weight files of that export
// which this one did not write (other shard counts, a stale index) would be picked up by
// loaders beside the new files, so they go. Only names of the HF weight layout are touched.
static void remove_stale_weights(const std::string& dir, const std::vector<std::string>& written, bool sharded,
                                 const std::string& base) {
    const std::regex weight_re("^" + base + R"((-\d{5}-of-\d{5})?\.safetensors$)");
    std::error_code ec;
    for (auto& e : fs::directory_iterator(dir, ec)) {
        std::string name = e.path().filename().string();
        bool stale = std::regex_match(name, weight_re) && std::find(written.begin(), written.end(), name) == written.end();
        stale |= !sharded && name == base + ".safetensors.index.json";
        if (stale) fs::remove(e.path(), ec);
    }
}

bool HfExport::is_conv1d(const ModelConfig& cfg, const std::string& module) {
    return cfg.model_type == "gpt2" &&
           (module == "attn.c_attn" || module == "attn.c_proj" || module == "mlp.c_fc" || module == "mlp.c_proj");
}

std::string HfExport::task_type(const ModelConfig& cfg) {
    static const std::set<std::string> encoders = {"bert", "roberta", "deberta", "deberta-v2", "distilbert"};
    return encoders.count(cfg.model_type) ? "SEQ_CLS" : "CAUSAL_LM";
}

struct HfExport::Impl {
    const Checkpoint& ck;
    const QuantizeOptions& opt;
    const ResolvedPlan& plan;
    std::string out;
    StagedOutput staged;
    std::unique_ptr<ShardedWriter> model, adapter;
    std::vector<int> ranks;         // per weight: exported rank
    std::vector<double> alphas;     // per weight: lora_alpha
    std::vector<bool> conv1d;
    Impl(const Checkpoint& c, const QuantizeOptions& o, const ResolvedPlan& p)
        : ck(c), opt(o), plan(p), out(fs::absolute(o.out_dir).lexically_normal().string()), staged(out) {}
};

HfExport::HfExport(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan)
    : p_(std::make_unique<Impl>(ck, opt, plan)) {
    const std::string& out = p_->out;
    // Never write over the input.
    if (path_within(out, ck.dir()) || same_file(out, ck.dir()))
        throw Error(out, "", "refusing to write into the input model's folder " + ck.dir() + ": choose another --out");
    for (auto& f : ck.files())
        if (path_within(f, out)) throw Error(out, "", "the output folder holds the input file " + f);
    std::error_code ec;
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) throw Error(out, "", "exists and is not a folder");
    if (fs::is_directory(out, ec) && !fs::is_empty(out, ec) && !opt.force)
        throw Error(out, "", "output folder is not empty (use --force to replace the files it will write)");
    fs::create_directories(out, ec);
    if (ec) throw Error(out, "", "cannot create output folder: " + ec.message());

    std::vector<OutTensor> layout;
    for (const auto& t : ck.tensors()) layout.push_back({t.name, t.dtype, t.dtype_str, t.shape, t.nbytes});
    p_->model = std::make_unique<ShardedWriter>(out, "model", layout, opt.max_shard_bytes, std::map<std::string, std::string>{{"format", "pt"}});

    std::vector<OutTensor> alay;
    const ModelConfig& cfg = ck.config();
    for (const auto& w : plan.weights) {
        int r = int(std::min<int64_t>(w.s.rank, std::min(w.rows, w.cols)));
        bool c1 = is_conv1d(cfg, w.module);
        int64_t in = c1 ? w.rows : w.cols, outf = c1 ? w.cols : w.rows;
        p_->ranks.push_back(r);
        p_->alphas.push_back(opt.plan.lora_alpha ? *opt.plan.lora_alpha : double(std::max(r, 1)));
        p_->conv1d.push_back(c1);
        if (r == 0) continue;
        std::string mp = module_path(w.name);
        alay.push_back({peft_lora_key(mp, 'A'), DType::F32, "", {r, in}, uint64_t(r) * uint64_t(in) * 4});
        alay.push_back({peft_lora_key(mp, 'B'), DType::F32, "", {outf, r}, uint64_t(outf) * uint64_t(r) * 4});
    }
    p_->adapter = std::make_unique<ShardedWriter>((fs::path(out) / "loftq_init").string(), "adapter_model", alay, 0,
                                                  std::map<std::string, std::string>{{"format", "pt"}});
}

HfExport::~HfExport() = default;

void HfExport::write_copy(const TensorEntry& t) {
    std::vector<uint8_t> bytes = p_->ck.read_bytes(t);
    p_->ck.release(t);
    p_->model->write(t.name, bytes.data(), bytes.size());
}

void HfExport::write_target(size_t wi, const Decomposition& d) {
    const WeightPlan& w = p_->plan.weights[wi];
    const TensorEntry& t = p_->ck.tensors()[size_t(w.tensor)];
    {
        std::vector<uint8_t> bytes(t.nbytes);
        from_f32(t.dtype, d.Q.data(), bytes.data(), d.Q.size());
        p_->model->write(t.name, bytes.data(), bytes.size());
    }
    const int r = p_->ranks[wi];
    if (r == 0) return;
    const int64_t m = w.rows, n = w.cols;
    // A (r x n), B (m x r) in the stored orientation.
    Matrix A(r, n), B(m, r);
    if (d.lr.B.cols == r) {
        // PEFT scale s = alpha / r; store sqrt(1/s) B and sqrt(1/s) A so that s B' A' = B A.
        float k = float(std::sqrt(double(r) / p_->alphas[wi]));
        for (size_t i = 0; i < A.size(); ++i) A.buf[i] = d.lr.A.buf[i] * k;
        for (size_t i = 0; i < B.size(); ++i) B.buf[i] = d.lr.B.buf[i] * k;
    } else {
        // QLoRA init (T = 0): A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0.
        uint64_t seed = weight_seed(p_->opt.plan.seed, w.name, 0);
        Rng rng(seed);
        bool c1 = p_->conv1d[wi];
        double bound = 1.0 / std::sqrt(double(c1 ? m : n));
        for (auto& x : (c1 ? B : A).buf) x = float((2.0 * rng.uniform() - 1.0) * bound);
    }
    std::string mp = module_path(w.name);
    if (!p_->conv1d[wi]) {
        p_->adapter->write(peft_lora_key(mp, 'A'), A.data(), A.size() * 4);
        p_->adapter->write(peft_lora_key(mp, 'B'), B.data(), B.size() * 4);
    } else {
        // Stored delta (in x out) = B_s A_s; PEFT's fan_in_fan_out delta = (B A)^T = A^T B^T,
        // so PEFT A = B_s^T (r x in), PEFT B = A_s^T (out x r).
        Matrix At(r, m), Bt(n, r);
        for (int64_t i = 0; i < m; ++i)
            for (int j = 0; j < r; ++j) At.at(j, i) = B.at(i, j);
        for (int j = 0; j < r; ++j)
            for (int64_t i = 0; i < n; ++i) Bt.at(i, j) = A.at(j, i);
        p_->adapter->write(peft_lora_key(mp, 'A'), At.data(), At.size() * 4);
        p_->adapter->write(peft_lora_key(mp, 'B'), Bt.data(), Bt.size() * 4);
    }
}

std::vector<std::string> HfExport::commit(const QuantizeResult& result, const nlohmann::ordered_json& manifest) {
    Impl& p = *p_;
    p.model->finish();
    p.adapter->finish();
    p.model->commit(p.staged);
    p.adapter->commit(p.staged);
    p.staged.write("config.json", p.ck.hf_config_json().dump(2) + "\n");
    for (const auto& f : p.ck.aux_files()) p.staged.copy_from(fs::path(f).filename().string(), f);

    std::vector<AdapterModule> mods;
    bool any_conv1d = false;
    for (size_t i = 0; i < p.plan.weights.size(); ++i) {
        if (p.ranks[i] == 0) continue;
        const auto& w = p.plan.weights[i];
        std::string mp = module_path(w.name);
        auto d = mp.rfind('.');
        mods.push_back({mp, d == std::string::npos ? mp : mp.substr(d + 1), p.ranks[i], p.alphas[i]});
        any_conv1d |= p.conv1d[i];
    }
    std::vector<std::string> linear;
    for (const auto& t : p.ck.tensors())
        if (t.is_matrix() && t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".weight") == 0)
            linear.push_back(module_path(t.name));
    auto acfg = peft_adapter_config(mods, linear, p.out, task_type(p.ck.config()), any_conv1d);
    p.staged.write("loftq_init/adapter_config.json", acfg.dump(2) + "\n");
    if (p.opt.extra_files)
        for (const auto& [rel, bytes] : p.opt.extra_files(result)) {
            if (rel.empty() || fs::path(rel).is_absolute() || rel.find("..") != std::string::npos)
                throw Error(p.out, "", "extra export file name '" + rel + "' must be a plain relative path");
            p.staged.write(rel, bytes);
        }
    p.staged.write("loftq_metrics.csv", metrics_csv(result));
    p.staged.write("loftq_metrics.json", metrics_json(result, manifest).dump(2) + "\n");  // last: marks the export done
    p.staged.commit();

    std::vector<std::string> files;
    for (auto& n : p.model->file_names()) files.push_back((fs::path(p.out) / n).string());
    remove_stale_weights(p.out, p.model->file_names(), p.model->sharded(), "model");
    remove_stale_weights((fs::path(p.out) / "loftq_init").string(), p.adapter->file_names(), p.adapter->sharded(), "adapter_model");
    for (auto& n : p.adapter->file_names()) files.push_back((fs::path(p.out) / "loftq_init" / n).string());
    for (auto& f : p.staged.committed_files()) files.push_back(f);
    return files;
}

nlohmann::ordered_json metrics_json(const QuantizeResult& r, const nlohmann::ordered_json& manifest) {
    using oj = nlohmann::ordered_json;
    oj j;
    j["format"] = "loftq-metrics";
    j["version"] = 1;
    j["manifest"] = manifest;
    double sb = 0, sf = 0;
    for (auto& w : r.weights) { sb += w.baseline; sf += w.final_error; }
    size_t n = r.weights.size();
    j["summary"] = {{"weights", n},
                    {"mean_qlora_error", n ? sb / double(n) : 0.0},
                    {"mean_final_error", n ? sf / double(n) : 0.0},
                    {"seconds", r.seconds},
                    {"plan_bytes", r.size.total_bytes},
                    {"fp16_bytes", r.size.fp16_bytes},
                    {"target_bits_per_weight", r.size.target_bits_per_weight()},
                    {"bits_per_param", r.size.bits_per_param()}};
    oj ws = oj::array();
    for (auto& w : r.weights) {
        oj e;
        e["name"] = w.plan.name;
        e["layer"] = w.plan.layer;
        e["module"] = w.plan.module;
        e["shape"] = {w.plan.rows, w.plan.cols};
        e["quant"] = quant_format(w.plan.s.quant).name;
        e["block"] = w.plan.s.block;
        e["rank"] = w.rank;
        e["iters"] = w.plan.s.iters;
        e["svd"] = svd_method_name(w.plan.s.svd);
        e["qlora_error"] = w.baseline;
        oj errs = oj::array(), secs = oj::array();
        for (auto& s : w.steps) { errs.push_back(s.error); secs.push_back(s.seconds); }
        e["errors"] = errs;
        e["step_seconds"] = secs;
        e["final_error"] = w.final_error;
        e["seconds"] = w.seconds;
        ws.push_back(e);
    }
    j["weights"] = ws;
    return j;
}

std::string metrics_csv(const QuantizeResult& r) {
    size_t maxT = 0;
    for (auto& w : r.weights) maxT = std::max(maxT, w.steps.size());
    std::ostringstream s;
    s << "name,layer,module,rows,cols,quant,block,rank,iters,svd,qlora_error";
    for (size_t t = 1; t <= maxT; ++t) s << ",error_step" << t;
    s << ",final_error,seconds\n";
    char buf[64];
    auto num = [&](double x) { std::snprintf(buf, sizeof buf, "%.9g", x); return std::string(buf); };
    for (auto& w : r.weights) {
        s << w.plan.name << ',' << w.plan.layer << ',' << w.plan.module << ',' << w.plan.rows << ',' << w.plan.cols << ','
          << quant_format(w.plan.s.quant).name << ',' << w.plan.s.block << ',' << w.rank << ',' << w.plan.s.iters << ','
          << svd_method_name(w.plan.s.svd) << ',' << num(w.baseline);
        for (size_t t = 0; t < maxT; ++t) s << ',' << (t < w.steps.size() ? num(w.steps[t].error) : "");
        s << ',' << num(w.final_error) << ',' << num(w.seconds) << '\n';
    }
    return s.str();
}

}  // namespace loftq
