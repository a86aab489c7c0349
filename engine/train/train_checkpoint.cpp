// train_checkpoint.cpp: see train_checkpoint.h.
#include "train/train_checkpoint.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/safetensors.h"
#include "train/adapter_writer.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {
constexpr const char* kFormat = "loftq-train-checkpoint";
constexpr const char* kVersion = "1";

nlohmann::ordered_json num_or_null(double x) { return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(); }
double num_or_nan(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::numeric_limits<double>::quiet_NaN();
    return it->get<double>();
}

nlohmann::ordered_json state_json(const TrainState& st, int64_t adam_t) {
    nlohmann::ordered_json j;
    j["format"] = kFormat;
    j["version"] = 1;
    j["step"] = st.step;
    j["adam_t"] = adam_t;
    j["cursor"] = st.cursor;
    j["tokens"] = st.tokens;
    j["seconds"] = st.seconds;
    j["first_eval_loss"] = num_or_null(st.first_eval_loss);
    j["last_eval_loss"] = num_or_null(st.last_eval_loss);
    j["last_train_loss"] = num_or_null(st.last_train_loss);
    j["n_train"] = st.n_train;
    j["saved_at"] = utc_timestamp();
    j["options"] = st.options;
    return j;
}
}  // namespace

nlohmann::ordered_json train_options_json(const TrainOptions& o) {
    nlohmann::ordered_json j;
    j["load"] = load_options_json(o.load);
    j["data"] = o.data;
    j["eval_data"] = o.eval_data;
    j["tokenizer"] = o.tokenizer;
    j["device"] = kComputeDeviceNames.name(o.device);   // names, as checkpoints have always stored them
    j["gemm"] = kGemmModeNames.name(o.gemm);
    j["recompute"] = kRecomputeModeNames.name(o.recompute);
    j["steps"] = o.steps;
    j["batch"] = o.batch;
    j["seq"] = o.seq;
    j["accum"] = o.accum;
    j["lr"] = o.lr;
    j["min_lr_ratio"] = o.min_lr_ratio;
    j["weight_decay"] = o.weight_decay;
    j["clip"] = o.clip;
    j["beta1"] = o.beta1;
    j["beta2"] = o.beta2;
    j["eps"] = o.eps;
    j["warmup"] = o.warmup;
    j["eval_every"] = o.eval_every;
    j["eval_batches"] = o.eval_batches;
    j["eval_fraction"] = o.eval_fraction;
    j["seed"] = o.seed;
    j["threads"] = o.threads;
    return j;
}

bool has_train_checkpoint(const std::string& dir) {
    std::error_code ec;
    return fs::is_regular_file(fs::path(dir) / kCheckpointFile, ec);
}

std::vector<std::string> save_train_checkpoint(const std::string& dir, const std::vector<TrainableTensor>& params,
                                               const AdamW& opt, const TrainState& st) {
    if (opt.m().size() != params.size()) throw Error(dir, "", "optimizer state does not match the LoRA tensors");
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(dir, "", "cannot create folder: " + ec.message());
    const nlohmann::ordered_json state = state_json(st, opt.t());
    StagedOutput staged(dir);
    staged.write("options.json", state.dump(2) + "\n");

    std::vector<OutTensor> layout;
    for (const auto& t : params) {
        const uint64_t nb = uint64_t(t.numel()) * 4;
        layout.push_back({t.name, DType::F32, "", {t.rows, t.cols}, nb});
        layout.push_back({"adamw_m." + t.name, DType::F32, "", {t.rows, t.cols}, nb});
        layout.push_back({"adamw_v." + t.name, DType::F32, "", {t.rows, t.cols}, nb});
    }
    SafetensorsWriter w(staged.final_path(kCheckpointFile), layout,
                        {{"format", kFormat}, {"version", kVersion}, {"state", state.dump()}});
    for (size_t k = 0; k < params.size(); ++k) {
        const auto& t = params[k];
        const uint64_t nb = uint64_t(t.numel()) * 4;
        w.write(t.name, t.value, nb);
        w.write("adamw_m." + t.name, opt.m()[k].data(), nb);
        w.write("adamw_v." + t.name, opt.v()[k].data(), nb);
    }
    staged.adopt(kCheckpointFile, w.release_partial());
    staged.commit();
    return staged.committed_files();
}

namespace {
// Opens and checks dir/state.safetensors; fills `st` and `adam_t` from its state metadata.
std::unique_ptr<SafetensorsFile> open_state(const std::string& dir, TrainState& st, int64_t& adam_t) {
    const std::string path = (fs::path(dir) / kCheckpointFile).string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) throw Error(path, "", "no training checkpoint here (nothing to resume)");
    auto f = SafetensorsFile::open(path);
    const auto& md = f->metadata();
    auto fmt = md.find("format");
    if (fmt == md.end() || fmt->second != kFormat)
        throw Error(path, "", "not a LoftQ training checkpoint (metadata 'format' is '" +
                                  (fmt == md.end() ? std::string() : fmt->second) + "', expected '" + kFormat + "')");
    auto ver = md.find("version");
    if (ver == md.end() || ver->second != kVersion)
        throw Error(path, "", "checkpoint version '" + (ver == md.end() ? std::string() : ver->second) +
                                  "' is not supported by this build (expected " + kVersion + "); start a new run");
    auto sj = md.find("state");
    if (sj == md.end()) throw Error(path, "", "checkpoint has no 'state' metadata");
    try {
        nlohmann::json j = nlohmann::json::parse(sj->second);
        st.step = j.at("step").get<int>();
        adam_t = j.at("adam_t").get<int64_t>();
        st.cursor = j.at("cursor").get<int64_t>();
        st.tokens = j.at("tokens").get<int64_t>();
        st.seconds = j.at("seconds").get<double>();
        st.first_eval_loss = num_or_nan(j, "first_eval_loss");
        st.last_eval_loss = num_or_nan(j, "last_eval_loss");
        st.last_train_loss = num_or_nan(j, "last_train_loss");
        st.n_train = j.at("n_train").get<int64_t>();
        st.options = j.at("options");
    } catch (const nlohmann::json::exception& e) {
        throw Error(path, "", std::string("bad checkpoint state: ") + e.what());
    }
    if (st.step < 0 || st.cursor < 0 || adam_t < 0) throw Error(path, "", "checkpoint state has negative counters");
    return f;
}
}  // namespace

TrainState read_train_state(const std::string& dir) {
    TrainState st;
    int64_t adam_t = 0;
    open_state(dir, st, adam_t);
    return st;
}

TrainState load_train_checkpoint(const std::string& dir, const std::vector<TrainableTensor>& params, AdamW& opt) {
    const std::string path = (fs::path(dir) / kCheckpointFile).string();
    TrainState st;
    int64_t adam_t = 0;
    auto f = open_state(dir, st, adam_t);

    if (opt.m().size() != params.size()) throw Error(path, "", "optimizer does not match the LoRA tensors");
    size_t expected = params.size() * 3;
    if (f->tensors().size() != expected)
        throw Error(path, "", "checkpoint holds " + std::to_string(f->tensors().size()) + " tensors, this model's LoRA needs " +
                                  std::to_string(expected) + " (different rank or target modules?)");
    auto read = [&](const std::string& name, const TrainableTensor& t, float* dst) {
        const TensorInfo* ti = f->find(name);
        if (!ti) throw Error(path, name, "missing from the checkpoint");
        if (ti->dtype != DType::F32) throw Error(path, name, "dtype " + ti->dtype_str + ", expected F32");
        if (ti->shape.size() != 2 || ti->shape[0] != t.rows || ti->shape[1] != t.cols)
            throw Error(path, name, "shape does not match the model's LoRA [" + std::to_string(t.rows) + ", " +
                                        std::to_string(t.cols) + "] (different rank?)");
        const uint8_t* src = f->data(*ti);
        std::memcpy(dst, src, size_t(t.numel()) * 4);
        for (int64_t i = 0; i < t.numel(); ++i)
            if (!std::isfinite(dst[i])) throw Error(path, name, "non-finite value at index " + std::to_string(i));
    };
    // Read into scratch first so that a bad file leaves the model untouched.
    std::vector<std::vector<float>> val(params.size()), m(params.size()), v(params.size());
    for (size_t k = 0; k < params.size(); ++k) {
        const auto& t = params[k];
        val[k].resize(size_t(t.numel()));
        m[k].resize(size_t(t.numel()));
        v[k].resize(size_t(t.numel()));
        read(t.name, t, val[k].data());
        read("adamw_m." + t.name, t, m[k].data());
        read("adamw_v." + t.name, t, v[k].data());
    }
    for (size_t k = 0; k < params.size(); ++k) {
        std::copy(val[k].begin(), val[k].end(), params[k].value);
        opt.m()[k] = std::move(m[k]);
        opt.v()[k] = std::move(v[k]);
    }
    opt.set_t(adam_t);
    return st;
}

std::vector<std::string> check_resume_compatible(const std::string& file, const nlohmann::json& saved,
                                                 const TrainOptions& now) {
    std::vector<std::string> notes;
    const nlohmann::ordered_json cur = train_options_json(now);
    auto differ = [&](const nlohmann::json& a, const nlohmann::json& b) { return a.dump() != b.dump(); };
    auto field = [&](const nlohmann::json& j, const std::string& k) { return j.contains(k) ? j.at(k) : nlohmann::json(); };
    // Settings that define the model being trained and the sequence of batches.
    static const char* kLoad[] = {"init", "quant", "block", "rank", "iters", "lora_alpha", "seed", "plan"};
    const nlohmann::json sl = field(saved, "load"), cl = cur.at("load");
    for (const char* k : kLoad)
        if (differ(field(sl, k), field(cl, k)))
            throw Error(file, "", std::string("the checkpoint was made with model ") + k + " = " + field(sl, k).dump() +
                                      ", this run asks for " + field(cl, k).dump() + "; resume with the same settings");
    static const char* kRun[] = {"batch", "seq", "accum", "seed", "eval_fraction"};
    for (const char* k : kRun)
        if (differ(field(saved, k), field(cur, k)))
            throw Error(file, "", std::string("the checkpoint was made with ") + k + " = " + field(saved, k).dump() +
                                      ", this run asks for " + field(cur, k).dump() + "; resume with the same settings");
    // device / gemm / recompute: a run may resume on another device (the checkpoint is host data);
    // it continues the same maths up to the device's rounding.
    static const char* kSoft[] = {"steps", "lr", "min_lr_ratio", "warmup", "weight_decay", "clip", "beta1", "beta2", "eps",
                                  "data", "eval_data", "device", "gemm", "recompute"};
    for (const char* k : kSoft)
        if (differ(field(saved, k), field(cur, k)))
            notes.push_back(std::string(k) + " changed from " + field(saved, k).dump() + " to " + field(cur, k).dump());
    if (differ(field(sl, "model"), field(cl, "model")))
        notes.push_back("model path changed from " + field(sl, "model").dump() + " to " + field(cl, "model").dump());
    return notes;
}

}  // namespace loftq
