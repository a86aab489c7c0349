// convert.cpp: `loftq convert MODEL --out DIR [--force]`: any checkpoint the engine reads
// (notably a llama2.c .bin) -> a Hugging Face folder: config.json (Checkpoint::hf_config_json,
// torch_dtype float32), model.safetensors with every tensor in F32 under the HF names and layout
// the Checkpoint presents (llama2.c q/k rows already permuted into HF's rotate-half RoPE), and the
// tokenizer/generation files beside the model copied. All files are staged and renamed into place
// together (config.json last); a failure or Ctrl-C leaves nothing that looks finished.
// Leaves out: sharding (one model.safetensors of any size) and dtypes other than F32 (non-float
// tensors are copied as stored).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/common.h"
#include "core/cancel.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace loftq::cli {

namespace {

struct ConvertArgs {
    std::string model, out;
    bool force = false;
};

void run_convert(const ConvertArgs& a, const CancelToken& cancel) {
    auto ck = Checkpoint::open(a.model);
    std::error_code ec;
    const std::string out = fs::absolute(a.out, ec).lexically_normal().string();
    if (same_file(out, ck->dir()) || path_within(ck->path(), out))
        throw Error(out, "", "the output folder is or holds the input model; choose another --out");
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) throw Error(out, "", "exists and is not a folder");
    if (fs::is_directory(out, ec) && !fs::is_empty(out, ec) && !a.force)
        throw Error(out, "", "output folder is not empty (use --force to write into it)");
    nlohmann::json config = ck->hf_config_json();
    if (config.is_null())
        throw Error(ck->path(), "", "no config.json beside the model (needed to describe the HF folder); put one beside it");
    config["torch_dtype"] = "float32";
    fs::create_directories(out, ec);
    if (ec) throw Error(out, "", "cannot create folder: " + ec.message());

    std::vector<OutTensor> layout;
    uint64_t total = 0;
    for (const auto& t : ck->tensors()) {
        OutTensor o;
        o.name = t.name;
        o.shape = t.shape;
        if (dtype_is_float_convertible(t.dtype)) {
            o.dtype = DType::F32;
            o.nbytes = t.numel() * 4;
        } else {
            o.dtype = t.dtype;
            o.dtype_str = t.dtype_str;
            o.nbytes = t.nbytes;
        }
        total += o.nbytes;
        layout.push_back(o);
    }
    StagedOutput staged(out);
    SafetensorsWriter w(staged.final_path("model.safetensors"), layout, {{"format", "pt"}});
    std::vector<float> buf;
    for (const auto& t : ck->tensors()) {
        cancel.throw_if_cancelled();
        if (dtype_is_float_convertible(t.dtype)) {
            buf.resize(t.numel());
            ck->read_f32(t, buf.data());
            w.write(t.name, buf.data(), uint64_t(buf.size()) * 4);
        } else {
            std::vector<uint8_t> b = ck->read_bytes(t);
            w.write(t.name, b.data(), b.size());
        }
        ck->release(t);
    }
    staged.adopt("model.safetensors", w.release_partial());
    std::vector<std::string> aux;
    for (const auto& f : ck->aux_files()) {
        const std::string name = fs::path(f).filename().string();
        if (name == "config.json" || name == "model.safetensors") continue;
        staged.copy_from(name, f);
        aux.push_back(name);
    }
    staged.write("config.json", config.dump(2) + "\n");
    cancel.throw_if_cancelled();
    staged.commit();
    std::string auxs;
    for (const auto& n : aux) auxs += (auxs.empty() ? "" : ", ") + n;
    std::printf("wrote %s: config.json, model.safetensors (%zu tensors, %s F32)%s%s\n", out.c_str(), layout.size(),
                human_bytes(double(total)).c_str(), aux.empty() ? "" : ", ", auxs.c_str());
}
}  // namespace

void add_convert(CLI::App& app) {
    auto a = std::make_shared<ConvertArgs>();
    CLI::App* sub = app.add_subcommand("convert", "Convert a checkpoint (e.g. llama2.c .bin) to a Hugging Face folder in F32");
    sub->add_option("MODEL", a->model, "HF folder, .safetensors file or llama2.c .bin")->required();
    sub->add_option("-o,--out", a->out, "Output folder")->required();
    sub->add_flag("--force", a->force, "Write into a non-empty output folder");
    sub->callback([a] {
        CancelToken cancel;
        SigintGuard sigint(cancel);
        run_convert(*a, cancel);
    });
}

}  // namespace loftq::cli
