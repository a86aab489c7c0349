// make_demo.cpp: `loftq make-demo DIR [--layers N --hidden H ...]`: writes a small
// LLaMA-shaped checkpoint with structured weights (io/synthetic_model.h), so every command can be
// tried without a download.
#include <cstdio>
#include <memory>

#include "cli/common.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "io/synthetic_model.h"
#include "train/demo_data.h"

namespace loftq::cli {

void add_make_demo(CLI::App& app) {
    struct Args { std::string dir, dtype = "bf16", max_shard = "0"; SyntheticSpec spec; };
    auto a = std::make_shared<Args>();
    CLI::App* sub = app.add_subcommand("make-demo", "Write a small LLaMA-shaped demo checkpoint (structured synthetic weights)");
    sub->add_option("DIR", a->dir, "Folder to write")->required();
    sub->add_option("--layers", a->spec.layers, "Decoder layers")->check(CLI::Range(1, 256));
    sub->add_option("--hidden", a->spec.hidden, "Hidden size")->check(CLI::Range(8, 16384));
    sub->add_option("--intermediate", a->spec.intermediate, "MLP size")->check(CLI::Range(8, 65536));
    sub->add_option("--heads", a->spec.heads, "Attention heads")->check(CLI::Range(1, 256));
    sub->add_option("--kv-heads", a->spec.kv_heads, "Key/value heads")->check(CLI::Range(1, 256));
    sub->add_option("--vocab", a->spec.vocab, "Vocabulary size")->check(CLI::Range(2, 1 << 20));
    sub->add_option("--dtype", a->dtype, "bf16, f16 or f32")->check(CLI::IsMember({"bf16", "f16", "f32"}));
    sub->add_option("--seed", a->spec.seed, "Seed");
    sub->add_option("--max-shard-size", a->max_shard, "Shard the safetensors above this size (0 = one file)");
    sub->callback([a] {
        a->spec.dtype = a->dtype == "bf16" ? DType::BF16 : a->dtype == "f16" ? DType::F16 : DType::F32;
        a->spec.max_shard_bytes = parse_size(a->max_shard);
        write_synthetic_model(a->dir, a->spec);
        if (a->spec.vocab >= 354) {  // room for the byte-level tokenizer: the demo can be fine-tuned
            const std::string corpus = demo_corpus(4000, a->spec.seed);
            write_demo_tokenizer(a->dir + "/tokenizer.bin", corpus, a->spec.vocab);
            write_file_atomic(a->dir + "/demo-stories.txt", corpus);
        }
        std::printf("wrote demo model to %s (%d layers, hidden %d, intermediate %d; tokenizer.bin and demo-stories.txt when vocab >= 354)\n", a->dir.c_str(), a->spec.layers,
                    a->spec.hidden, a->spec.intermediate);
    });
}

}  // namespace loftq::cli
