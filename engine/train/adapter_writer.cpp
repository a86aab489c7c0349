// adapter_writer.cpp: see adapter_writer.h.
#include "train/adapter_writer.h"

#include <cmath>
#include <filesystem>
#include <map>
#include <regex>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace loftq {

namespace {
const std::string kPrefix = "base_model.model.";

// "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" -> ("model.layers.3.self_attn.q_proj", 'A')
bool split_key(const std::string& key, std::string& path, char& which) {
    static const std::string kA = ".lora_A.weight", kB = ".lora_B.weight";
    if (key.rfind(kPrefix, 0) != 0) return false;
    auto ends = [&](const std::string& s) { return key.size() >= s.size() && key.compare(key.size() - s.size(), s.size(), s) == 0; };
    if (ends(kA)) which = 'A';
    else if (ends(kB)) which = 'B';
    else return false;
    path = key.substr(kPrefix.size(), key.size() - kPrefix.size() - kA.size());
    return true;
}

// layer and site of "model.layers.3.self_attn.q_proj"; false when it is not one.
bool parse_module(const std::string& path, int& layer, LoraSite& site) {
    static const std::regex re(R"(^model\.layers\.(\d+)\.(self_attn|mlp)\.([a-z_]+)$)");
    std::smatch m;
    if (!std::regex_match(path, m, re)) return false;
    layer = std::stoi(m[1].str());
    for (int s = 0; s < kLoraSites; ++s)
        if (m[3].str() == lora_site_name(LoraSite(s))) { site = LoraSite(s); return true; }
    return false;
}

// A PEFT rank/alpha pattern entry applies to `path` when "(.*\.)?KEY$" matches it (new PEFT).
const nlohmann::json* pattern_value(const nlohmann::json& patterns, const std::string& path) {
    if (!patterns.is_object()) return nullptr;
    for (auto it = patterns.begin(); it != patterns.end(); ++it) {
        try {
            if (std::regex_search(path, std::regex("(^|.*\\.)" + it.key() + "$"))) return &it.value();
        } catch (const std::regex_error&) {
        }
    }
    return nullptr;
}
}  // namespace

nlohmann::ordered_json load_options_json(const LoadOptions& o) {
    nlohmann::ordered_json j;
    j["model"] = o.model;
    j["init"] = kInitKindNames.name(o.init);
    // An export brings its own quantizers, ranks and steps (its loftq_init and metrics): the
    // options' quant/block/rank/iters were not used, so they are not written as if they were.
    if (o.init != InitKind::Export) {
        j["quant"] = o.quant;
        j["block"] = o.block;
        j["rank"] = o.rank;
        j["iters"] = o.iters;
    }
    j["lora_alpha"] = o.lora_alpha;
    j["seed"] = o.seed;
    // A plan start (per-weight settings): the plan itself, so that the base can be rebuilt.
    if (o.plan && (o.init == InitKind::Loftq || o.init == InitKind::Qlora)) j["plan"] = plan_to_json(*o.plan);
    return j;
}

LoadOptions load_options_from_json(const nlohmann::json& j, const std::string& file) {
    LoadOptions o;
    try {
        if (!j.is_object()) throw Error(file, "", "expected a JSON object with the base model's load options");
        o.model = j.at("model").get<std::string>();
        const std::string init = j.at("init").get<std::string>();
        const auto k = kInitKindNames.find(init);
        if (!k) throw Error(file, "", "unknown init '" + init + "' (expected " + kInitKindNames.choices() + ")");
        o.init = *k;
        if (o.init != InitKind::Export || j.contains("quant")) {   // written for every other start
            o.quant = j.at("quant").get<std::string>();
            o.block = j.at("block").get<int>();
            o.rank = j.at("rank").get<int>();
            o.iters = j.at("iters").get<int>();
        }
        o.lora_alpha = j.at("lora_alpha").get<double>();
        o.seed = j.at("seed").get<uint64_t>();
        if (j.contains("plan") && !j["plan"].is_null()) o.plan = std::make_shared<const Plan>(plan_from_json(j["plan"], file + " (plan)"));
    } catch (const nlohmann::json::exception& e) {
        throw Error(file, "", std::string("bad load options: ") + e.what());
    }
    return o;
}

std::vector<AdapterModule> adapter_modules(const LlamaModel& model) {
    std::vector<AdapterModule> mods;
    const int L = model.config().n_layers;
    for (int l = 0; l < L; ++l)
        for (int s = 0; s < kLoraSites; ++s) {
            const int r = model.lora_rank(l, LoraSite(s));
            if (r <= 0) continue;
            AdapterModule m;
            m.path = lora_module_path(l, LoraSite(s));
            m.kind = lora_site_name(LoraSite(s));
            m.rank = r;
            m.alpha = double(model.lora_scale(l, LoraSite(s))) * r;
            if (std::abs(m.alpha - std::round(m.alpha)) < 1e-4) m.alpha = std::round(m.alpha);
            mods.push_back(m);
        }
    return mods;
}

std::vector<std::string> write_peft_adapter(const std::string& dir, LlamaModel& model, const LoadOptions& base) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw Error(dir, "", "cannot create folder: " + ec.message());
    std::vector<TrainableTensor> params = model.trainable();
    std::vector<OutTensor> layout;
    for (const auto& t : params)
        layout.push_back({t.name, DType::F32, "", {t.rows, t.cols}, uint64_t(t.numel()) * 4});
    StagedOutput staged(dir);
    const std::string st_path = staged.final_path("adapter_model.safetensors");
    SafetensorsWriter w(st_path, layout, {{"format", "pt"}});
    for (const auto& t : params) w.write(t.name, t.value, uint64_t(t.numel()) * 4);
    staged.adopt("adapter_model.safetensors", w.release_partial());

    const LlamaConfig& c = model.config();
    std::vector<std::string> all_linear;
    for (int l = 0; l < c.n_layers; ++l)
        for (int s = 0; s < kLoraSites; ++s) all_linear.push_back(lora_module_path(l, LoraSite(s)));
    std::string base_name = base.model;
    if (!base_name.empty()) {
        fs::path p = fs::absolute(base_name, ec);
        if (!ec) base_name = p.lexically_normal().string();
    }
    nlohmann::ordered_json cfg = peft_adapter_config(adapter_modules(model), all_linear, base_name, "CAUSAL_LM", false);
    staged.write("adapter_config.json", cfg.dump(2) + "\n");
    nlohmann::ordered_json b = load_options_json(base);
    b["model"] = base_name;
    staged.write("loftq_base.json", b.dump(2) + "\n");
    staged.commit();
    std::vector<std::string> files;
    for (const auto& f : staged.committed_files()) files.push_back(f);
    return files;
}

AdapterInfo read_adapter_info(const std::string& dir) {
    AdapterInfo info;
    const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
    std::error_code ec;
    if (!fs::is_regular_file(cfg_path, ec))
        throw Error(dir, "", "not a PEFT adapter folder (no adapter_config.json)");
    nlohmann::json cfg;
    try {
        cfg = nlohmann::json::parse(read_text_file(cfg_path));
        info.r = cfg.at("r").get<int>();
        info.lora_alpha = cfg.value("lora_alpha", double(info.r));
    } catch (const nlohmann::json::exception& e) {
        throw Error(cfg_path, "", std::string("bad adapter config: ") + e.what());
    }
    if (cfg.value("peft_type", std::string("LORA")) != "LORA")
        throw Error(cfg_path, "", "peft_type is '" + cfg.value("peft_type", std::string()) + "', only LORA adapters can be applied");
    const std::string base_path = (fs::path(dir) / "loftq_base.json").string();
    if (fs::is_regular_file(base_path, ec)) {
        nlohmann::json b;
        try {
            b = nlohmann::json::parse(read_text_file(base_path));
        } catch (const nlohmann::json::exception& e) {
            throw Error(base_path, "", std::string("bad JSON: ") + e.what());
        }
        info.base = load_options_from_json(b, base_path);
        info.has_base = true;
    }
    return info;
}

void apply_peft_adapter(const std::string& dir, LlamaModel& model) {
    const std::string cfg_path = (fs::path(dir) / "adapter_config.json").string();
    const std::string st_path = (fs::path(dir) / "adapter_model.safetensors").string();
    AdapterInfo info = read_adapter_info(dir);
    nlohmann::json cfg = nlohmann::json::parse(read_text_file(cfg_path));
    if (cfg.value("fan_in_fan_out", false))
        throw Error(cfg_path, "", "fan_in_fan_out adapters (GPT-2 Conv1D) cannot be applied to a LLaMA model");
    const nlohmann::json alpha_pattern = cfg.value("alpha_pattern", nlohmann::json::object());
    auto file = SafetensorsFile::open(st_path);

    std::map<std::string, bool> used;
    for (const auto& t : file->tensors()) used[t.name] = false;
    std::vector<float> buf;
    for (const TrainableTensor& t : model.trainable()) {
        std::string path;
        char which = 0;
        int layer = 0;
        LoraSite site = LoraSite::Q;
        if (!split_key(t.name, path, which) || !parse_module(path, layer, site))
            throw Error("", t.name, "model LoRA tensor has an unexpected name (cannot match it to a PEFT key)");
        const TensorInfo* ti = file->find(t.name);
        if (!ti) throw Error(st_path, t.name, "missing from the adapter (the model has a LoRA there)");
        used[t.name] = true;
        if (ti->shape.size() != 2 || ti->shape[0] != t.rows || ti->shape[1] != t.cols) {
            std::string s;
            for (auto d : ti->shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
            throw Error(st_path, t.name, "shape [" + s + "] does not match the model's LoRA [" + std::to_string(t.rows) + ", " +
                                             std::to_string(t.cols) + "] (load the model with the adapter's rank)");
        }
        if (!dtype_is_float_convertible(ti->dtype))
            throw Error(st_path, t.name, "dtype " + ti->dtype_str + " is not F32, F16 or BF16");
        buf.resize(size_t(t.numel()));
        to_f32(ti->dtype, file->data(*ti), buf.data(), buf.size());
        for (size_t i = 0; i < buf.size(); ++i)
            if (!std::isfinite(buf[i]))
                throw Error(st_path, t.name, "non-finite value at index " + std::to_string(i));
        if (which == 'B') {
            // PEFT scale of this module in the file vs the model's scale.
            // The tensor's own rank is authoritative (rank_pattern only restates it).
            double alpha = info.lora_alpha;
            if (auto* v = pattern_value(alpha_pattern, path)) {
                if (!v->is_number()) throw Error(cfg_path, t.name, "alpha_pattern value is not a number");
                alpha = v->get<double>();
            }
            const double file_scale = alpha / double(t.cols);
            const double model_scale = model.lora_scale(layer, site);
            if (model_scale == 0) throw Error(st_path, t.name, "the model has LoRA scale 0 here");
            const double k = file_scale / model_scale;
            if (k != 1.0)
                for (auto& x : buf) x = float(double(x) * k);
        }
        std::copy(buf.begin(), buf.end(), t.value);
    }
    for (const auto& [name, u] : used)
        if (!u) throw Error(st_path, name, "adapter tensor has no LoRA in the model (different target modules?)");
}

}  // namespace loftq
