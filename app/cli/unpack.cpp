// unpack.cpp: `loftq unpack PACKED --out DIR [--force]`: turns a packed LoftQ export
// (`loftq quantize --format packed`) into the Hugging Face LoftQ layout (dequantized backbone in
// the source dtype + loftq_init adapter), as `--format hf` would have written it.
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "export/unpack.h"

namespace loftq::cli {

namespace {
struct UnpackArgs {
    std::string packed, out;
    bool force = false;
};
}  // namespace

void add_unpack(CLI::App& app) {
    auto args = std::make_shared<UnpackArgs>();
    CLI::App* sub = app.add_subcommand("unpack", "Write a packed LoftQ export as the Hugging Face LoftQ layout");
    sub->add_option("PACKED", args->packed, "Packed export folder (or its .safetensors file)")->required();
    sub->add_option("-o,--out", args->out, "Output folder")->required();
    sub->add_flag("--force", args->force, "Write into a non-empty output folder");
    sub->callback([args] {
        auto files = unpack_packed(args->packed, args->out, args->force);
        std::printf("wrote %s (%zu files)\n", args->out.c_str(), files.size());
    });
}

}  // namespace loftq::cli
