// unpack.cpp: `loftq unpack PACKED --out DIR [--force] [--no-verify]`: turns a packed LoftQ export
// (`loftq quantize --format packed`) into the Hugging Face LoftQ layout (dequantized backbone in
// the source dtype + loftq_init adapter), as `--format hf` would have written it. The packed
// folder is first checked against its manifest's checksums (`loftq verify`); a missing or changed
// file refuses the unpack, naming it.
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "export/unpack.h"
#include "export/verify.h"

namespace loftq::cli {

namespace {
struct UnpackArgs {
    std::string packed, out;
    bool force = false, no_verify = false;
};
}  // namespace

void add_unpack(CLI::App& app) {
    auto args = std::make_shared<UnpackArgs>();
    CLI::App* sub = app.add_subcommand("unpack", "Write a packed LoftQ export as the Hugging Face LoftQ layout");
    sub->add_option("PACKED", args->packed, "Packed export folder (or its .safetensors file)")->required();
    sub->add_option("-o,--out", args->out, "Output folder")->required();
    sub->add_flag("--force", args->force, "Write into a non-empty output folder");
    sub->add_flag("--no-verify", args->no_verify, "Do not check the packed files against the checksums in its loftq_metrics.json");
    sub->callback([args] {
        auto files = unpack_packed(args->packed, args->out, args->force, !args->no_verify);
        std::printf("wrote %s (%zu files)\n", args->out.c_str(), files.size());
    });
}

}  // namespace loftq::cli
