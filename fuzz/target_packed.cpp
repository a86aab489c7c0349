// target_packed.cpp: fuzz targets for LoftQ's own outputs read back: a packed export
// (io/packed_reader.h: metadata, codes, scales, LoRA factors; every weight dequantized) and the
// JSON files of an HF-layout export that the model loader reads (the PEFT adapter config, the
// metrics with each weight's quantizer), loaded for fine-tuning as `--init export` does.
#include <filesystem>

#include "fixtures.h"
#include "fuzz_support.h"
#include "io/packed_reader.h"
#include "model/llama.h"
#include "targets.h"

namespace fs = std::filesystem;

namespace loftq::fuzz {

int packed(const uint8_t* data, size_t size) {
    const std::string path = write_scratch("packed/model.safetensors", data, size);
    std::unique_ptr<PackedReader> rd;
    if (!expect_clean(path, [&] { rd = PackedReader::open(path); })) return 0;
    for (const PackedWeight& w : rd->weights()) {
        expect_clean(path, [&] {
            (void)rd->dequantize(w);
            (void)rd->stored_bytes(w);
        });
    }
    return 0;
}

int export_json(const uint8_t* data, size_t size) {
    static const std::string dir = tiny_export("export");
    static const std::string adapter = dir + "/loftq_init/adapter_config.json";
    static const std::string metrics = dir + "/loftq_metrics.json";
    static const std::string adapter_orig = read_whole(adapter), metrics_orig = read_whole(metrics);
    if (size == 0) return 0;
    // First byte: which file the rest replaces; the other keeps its valid bytes.
    const bool is_adapter = (data[0] & 1) == 0;
    const std::string rel = is_adapter ? "export/loftq_init/adapter_config.json" : "export/loftq_metrics.json";
    const std::string path = write_scratch(rel, data + 1, size - 1);
    write_scratch(is_adapter ? "export/loftq_metrics.json" : "export/loftq_init/adapter_config.json",
                  is_adapter ? metrics_orig : adapter_orig);
    expect_clean(path, [&] {
        LoadOptions o;
        o.model = dir;
        o.init = InitKind::Export;
        o.threads = 1;
        o.keep_packed = (data[0] & 2) != 0;
        (void)load_llama(o);
    });
    return 0;
}

}  // namespace loftq::fuzz
