// common.cpp: see common.h.
#include "export/common.h"

#include <set>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "core/rng.h"
#include "io/gguf_names.h"
#include "io/peft_adapter.h"
#include "export/metrics.h"
#include "export/verify.h"

namespace fs = std::filesystem;

namespace loftq {

bool is_conv1d(const ModelConfig& cfg, const std::string& module) {
    return cfg.model_type == "gpt2" &&
           (module == "attn.c_attn" || module == "attn.c_proj" || module == "mlp.c_fc" || module == "mlp.c_proj");
}

std::string peft_task_type(const ModelConfig& cfg) {
    static const std::set<std::string> encoders = {"bert", "roberta", "deberta", "deberta-v2", "distilbert"};
    return encoders.count(cfg.model_type) ? "SEQ_CLS" : "CAUSAL_LM";
}


void copy_tensor(const Checkpoint& ck, const TensorEntry& t, ShardedWriter& out) {
    std::vector<uint8_t> bytes = ck.read_bytes(t);
    ck.release(t);
    out.write(t.name, bytes.data(), bytes.size());
}

std::unique_ptr<ShardedWriter> open_adapter_writer(const std::string& dir, const std::vector<OutTensor>& layout) {
    return std::make_unique<ShardedWriter>((std::filesystem::path(dir) / "loftq_init").string(), "adapter_model", layout, 0,
                                           std::map<std::string, std::string>{{"format", "pt"}});
}

std::string module_path(const std::string& tensor_name) {
    const std::string suf = ".weight";
    if (tensor_name.size() > suf.size() && tensor_name.compare(tensor_name.size() - suf.size(), suf.size(), suf) == 0)
        return tensor_name.substr(0, tensor_name.size() - suf.size());
    return tensor_name;
}

std::string prepare_output_dir(const std::string& out_dir, const std::string& input_dir,
                               const std::vector<std::string>& input_files, bool force, bool* created) {
    const std::string out = fs::absolute(out_dir).lexically_normal().string();
    // Never write over the input.
    if (path_within(out, input_dir) || same_file(out, input_dir))
        throw Error(out, "", "refusing to write into the input model's folder " + input_dir + ": choose another output folder");
    for (auto& f : input_files)
        if (path_within(f, out)) throw Error(out, "", "the output folder holds the input file " + f);
    std::error_code ec;
    if (fs::is_symlink(out, ec) && !fs::exists(out, ec)) throw Error(out, "", "is a symbolic link to nothing: remove it or choose another output folder");
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) throw Error(out, "", "exists and is not a folder");
    if (fs::is_directory(out, ec) && !fs::is_empty(out, ec) && !force)
        throw Error(out, "", "output folder is not empty (allow replacing the files an export writes: --force in the CLI, \"Replace the folder's contents\" in the export dialog)");
    if (created) *created = !fs::exists(out, ec);
    // The parent only: the export is staged beside the folder and renamed into place at the end.
    const fs::path parent = fs::path(out).parent_path();
    fs::create_directories(parent, ec);
    if (ec) throw Error(out, "", "cannot create the output's parent folder " + parent.string() + ": " + ec.message());
    if (!fs::is_directory(parent, ec)) throw Error(out, "", "its parent " + parent.string() + " is not a folder");
    return out;
}

std::string prepare_output_dir(const std::string& out_dir, const Checkpoint& ck, bool force, bool* created) {
    return prepare_output_dir(out_dir, ck.dir(), ck.files(), force, created);
}

bool is_export_weight_file(const std::string& rel) {
    static const std::regex weight_re(
        R"(^(model|loftq_init/adapter_model)(-\d{5}-of-\d{5})?\.safetensors$|^(model|loftq_init/adapter_model)\.safetensors\.index\.json$)");
    return std::regex_match(rel, weight_re);
}

StagedOutput::FolderSwap export_folder_swap() { return {.drop_old = is_export_weight_file}; }

AdapterPlan::AdapterPlan(const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan) {
    const ModelConfig& cfg = ck.config();
    for (const auto& w : plan.weights) {
        int r = int(std::min<int64_t>(w.s.rank, std::min(w.rows, w.cols)));
        bool c1 = is_conv1d(cfg, w.module);
        int64_t in = c1 ? w.rows : w.cols, outf = c1 ? w.cols : w.rows;
        ranks.push_back(r);
        alphas.push_back(opt.plan.lora_alpha ? *opt.plan.lora_alpha : double(std::max(r, 1)));
        conv1d.push_back(c1);
        if (r == 0) continue;
        std::string mp = module_path(w.name);
        layout.push_back({peft_lora_key(mp, 'A'), DType::F32, "", {r, in}, uint64_t(r) * uint64_t(in) * 4});
        layout.push_back({peft_lora_key(mp, 'B'), DType::F32, "", {outf, r}, uint64_t(outf) * uint64_t(r) * 4});
    }
}

PeftFactors peft_factors(const AdapterPlan& ap, const QuantizeOptions& opt, const WeightPlan& w, size_t wi,
                         const Decomposition& d) {
    const int r = ap.ranks[wi];
    const int64_t m = w.rows, n = w.cols;
    // A (r x n), B (m x r) in the stored orientation.
    Matrix A(r, n), B(m, r);
    if (d.lr.B.cols == r) {
        // PEFT scale s = alpha / r; store sqrt(1/s) B and sqrt(1/s) A so that s B' A' = B A.
        float k = float(std::sqrt(double(r) / ap.alphas[wi]));
        for (size_t i = 0; i < A.size(); ++i) A.buf[i] = d.lr.A.buf[i] * k;
        for (size_t i = 0; i < B.size(); ++i) B.buf[i] = d.lr.B.buf[i] * k;
    } else {
        // QLoRA init (T = 0): A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming-uniform, a = sqrt(5)), B = 0.
        uint64_t seed = weight_seed(opt.plan.seed, w.name, 0);
        Rng rng(seed);
        bool c1 = ap.conv1d[wi];
        double bound = 1.0 / std::sqrt(double(c1 ? m : n));
        for (auto& x : (c1 ? B : A).buf) x = float((2.0 * rng.uniform() - 1.0) * bound);
    }
    if (!ap.conv1d[wi]) return {std::move(A), std::move(B)};
    // Stored delta (in x out) = B_s A_s; PEFT's fan_in_fan_out delta = (B A)^T = A^T B^T,
    // so PEFT A = B_s^T (r x in), PEFT B = A_s^T (out x r).
    Matrix At(r, m), Bt(n, r);
    for (int64_t i = 0; i < m; ++i)
        for (int j = 0; j < r; ++j) At.at(j, i) = B.at(i, j);
    for (int j = 0; j < r; ++j)
        for (int64_t i = 0; i < n; ++i) Bt.at(i, j) = A.at(j, i);
    return {std::move(At), std::move(Bt)};
}

void stage_export_files(StagedOutput& staged, const Checkpoint& ck, const QuantizeOptions& opt, const ResolvedPlan& plan,
                        const AdapterPlan& ap, const std::string& out, const QuantizeResult& result,
                        const nlohmann::ordered_json& manifest,
                        const std::function<void(nlohmann::ordered_json&)>& amend_metrics,
                        const std::function<void(nlohmann::json&)>& amend_config) {
    nlohmann::json config = ck.hf_config_json();
    if (amend_config) amend_config(config);
    staged.write("config.json", config.dump(2) + "\n");
    for (const auto& f : ck.aux_files()) staged.copy_from(fs::path(f).filename().string(), f);
    if (ck.gguf() && ck.aux_files().empty()) {   // a GGUF's embedded tokenizer, in a form the loaders read
        const std::string tok = gguf_llama2c_tokenizer(*ck.gguf());
        if (!tok.empty()) staged.write("tokenizer.bin", tok);
    }

    std::vector<AdapterModule> mods;
    bool any_conv1d = false;
    for (size_t i = 0; i < plan.weights.size(); ++i) {
        if (ap.ranks[i] == 0) continue;
        const auto& w = plan.weights[i];
        std::string mp = module_path(w.name);
        auto d = mp.rfind('.');
        mods.push_back({mp, d == std::string::npos ? mp : mp.substr(d + 1), ap.ranks[i], ap.alphas[i]});
        any_conv1d |= ap.conv1d[i];
    }
    std::vector<std::string> linear;
    for (const auto& t : ck.tensors())
        if (t.is_matrix() && t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".weight") == 0)
            linear.push_back(module_path(t.name));
    auto acfg = peft_adapter_config(mods, linear, out, peft_task_type(ck.config()), any_conv1d);
    staged.write("loftq_init/adapter_config.json", acfg.dump(2) + "\n");
    if (opt.extra_files)
        for (const auto& [rel, bytes] : opt.extra_files(result)) {
            if (rel.empty() || fs::path(rel).is_absolute() || rel.find("..") != std::string::npos)
                throw Error(out, "", "extra export file name '" + rel + "' must be a plain relative path");
            staged.write(rel, bytes);
        }
    staged.write("loftq_metrics.csv", metrics_csv(result));
    nlohmann::ordered_json mj = metrics_json(result, manifest);
    if (amend_metrics) amend_metrics(mj);
    mj["outputs"] = outputs_manifest(staged);                 // every file above, sizes and checksums
    staged.write("loftq_metrics.json", mj.dump(2) + "\n");  // last: marks the export done
}

std::vector<std::string> finish_export(StagedOutput& staged) {
    staged.commit();
    return staged.committed_files();
}

}  // namespace loftq
