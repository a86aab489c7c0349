// export_gguf.cpp: `loftq export-gguf SOURCE -o OUT.gguf [--adapter DIR] [--type f16|q8_0|f32]`:
// the model as llama.cpp runs it (train/gguf_export.h): a checkpoint, a LoftQ export or a
// fine-tune run, its LoRA merged into the weights, with the tokenizer and llama.* metadata.
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "train/gguf_export.h"

namespace loftq::cli {

void add_export_gguf(CLI::App& app) {
    auto o = std::make_shared<GgufExportOptions>();
    CLI::App* sub = app.add_subcommand("export-gguf", "Write a .gguf for llama.cpp: a model, LoftQ export or fine-tune run, LoRA merged");
    sub->add_option("SOURCE", o->source.model,
                    "Checkpoint (HF folder, .safetensors, llama2.c .bin, .gguf), LoftQ export, or fine-tune output folder "
                    "(optional with an --adapter that records its base)");
    sub->add_option("-o,--out", o->out, "The .gguf file to write")->required();
    sub->add_option("--adapter", o->source.adapter, "PEFT adapter folder (OUT/adapter of a fine-tune) or run folder to merge")
        ->check(CLI::ExistingDirectory);
    add_enum_option(sub, "--type", o->type, kGgufWeightTypeNames,
                    "Matrix type: f16 (default), q8_0 (8-bit blocks of 32; matrices whose rows do not split into 32s stay f16) or f32",
                    true);
    sub->add_flag("--backbone-only", o->backbone_only, "Leave the LoRA out: write the (quantized) backbone alone");
    sub->add_option("--name", o->name, "general.name (default: the source's name)");
    sub->add_option("--tokenizer", o->source.tokenizer, "Tokenizer file (default: beside the model, or inside a .gguf)")
        ->check(CLI::ExistingFile);
    sub->add_option("--threads", o->source.threads, "Threads (default: all cores)")->check(CLI::Range(0, 4096));
    sub->callback([o] {
        if (o->source.model.empty() && o->source.adapter.empty()) throw CLI::ValidationError("SOURCE", "give a model or an --adapter");
        CancelToken cancel;
        SigintGuard guard(cancel);
        const GgufExportResult r = export_gguf(*o, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); }, &cancel);
        std::printf("wrote %s: %s, %d tensors (%s%s), %d LoRA merged, from %s, in %s\n", r.path.c_str(), human_bytes(double(r.bytes)).c_str(),
                    r.tensors, kGgufWeightTypeNames.name(o->type),
                    r.f16_fallbacks ? (", " + std::to_string(r.f16_fallbacks) + " kept f16").c_str() : "", r.merged_sites,
                    r.description.c_str(), human_seconds(r.seconds).c_str());
    });
}

}  // namespace loftq::cli
