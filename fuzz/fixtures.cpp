// fixtures.cpp: see fixtures.h.
#include "fixtures.h"

#include <filesystem>

#include "core/cancel.h"
#include "export/quantize.h"
#include "fuzz_support.h"
#include "io/synthetic_model.h"

namespace fs = std::filesystem;

namespace loftq::fuzz {

std::string tiny_model(const std::string& name, unsigned long long max_shard_bytes) {
    const std::string dir = (fs::path(scratch_dir()) / name).string();
    std::error_code ec;
    fs::remove_all(dir, ec);
    SyntheticSpec s;
    s.layers = 1, s.hidden = 16, s.intermediate = 32, s.heads = 2, s.kv_heads = 1, s.vocab = 32;
    s.max_shard_bytes = max_shard_bytes;
    write_synthetic_model(dir, s);
    return dir;
}

std::string tiny_export(const std::string& name) {
    QuantizeOptions o;
    o.model = tiny_model(name + "-source");
    o.out_dir = (fs::path(scratch_dir()) / name).string();
    o.plan.defaults.block = 16;
    o.plan.defaults.rank = 2;
    o.plan.defaults.iters = 1;
    o.threads = 1;
    o.checksums = false;
    o.force = true;
    CancelToken cancel;
    run_quantize(o, [](const JobEvent&) {}, cancel);
    return o.out_dir;
}

std::string demo_tokenizer() { return source_dir() + "/resources/models/stories260K/tok512.bin"; }

}  // namespace loftq::fuzz
