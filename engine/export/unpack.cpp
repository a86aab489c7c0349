// unpack.cpp: see export/unpack.h.
#include "export/unpack.h"

#include <algorithm>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/json_read.h"
#include "io/packed_reader.h"
#include "io/sharded_writer.h"
#include "export/common.h"
#include "export/verify.h"

namespace fs = std::filesystem;

namespace loftq {

std::vector<std::string> unpack_packed(const std::string& packed_dir, const std::string& out_dir, bool force, bool verify) {
    auto rd = PackedReader::open(packed_dir);
    // Flipped code bits pass every format check (any k-bit code is a valid level): the manifest's
    // checksums catch them, before anything is written.
    if (verify) require_verified(verify_export(rd->dir()));
    const std::string out = prepare_output_dir(out_dir, rd->dir(), rd->files(), force);
    StagedOutput staged(out, export_folder_swap());

    std::vector<OutTensor> layout;
    for (const auto& name : rd->tensor_order()) {
        if (const PackedWeight* w = rd->weight(name)) {
            layout.push_back({name, w->dtype, "", {w->rows, w->cols}, uint64_t(w->numel()) * dtype_size(w->dtype)});
        } else {
            const TensorInfo* t = rd->tensor(name);
            layout.push_back({name, t->dtype, t->dtype_str, t->shape, t->nbytes()});
        }
    }
    ShardedWriter model(staged.dir(), "model", layout, rd->max_shard_bytes() ? rd->max_shard_bytes() : 5'000'000'000ull,
                        std::map<std::string, std::string>{{"format", "pt"}});
    for (const auto& name : rd->tensor_order()) {
        if (const PackedWeight* w = rd->weight(name)) {
            std::vector<float> Q = rd->dequantize(*w);
            std::vector<uint8_t> bytes(Q.size() * dtype_size(w->dtype));
            from_f32(w->dtype, Q.data(), bytes.data(), Q.size());
            model.write(name, bytes.data(), bytes.size());
        } else {
            const TensorInfo* t = rd->tensor(name);
            model.write(name, rd->data(name), t->nbytes());
        }
    }
    model.finish();
    model.commit(staged);

    // Everything else in the export folder, the metrics last.
    const std::regex weight_re(R"(^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$)");
    std::vector<std::string> rest;
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(rd->dir(), ec)) {
        if (!e.is_regular_file()) continue;
        const std::string rel = fs::relative(e.path(), rd->dir()).string();
        const std::string fname = e.path().filename().string();
        if (rel.find('/') == std::string::npos && std::regex_match(fname, weight_re)) continue;
        if (fname.size() > 8 && fname.compare(fname.size() - 8, 8, ".partial") == 0) continue;
        rest.push_back(rel);
    }
    std::sort(rest.begin(), rest.end(), [](const std::string& a, const std::string& b) {
        bool ma = a == "loftq_metrics.json", mb = b == "loftq_metrics.json";
        return ma != mb ? mb : a < b;
    });
    for (const auto& rel : rest) {
        const std::string src = (fs::path(rd->dir()) / rel).string();
        if (rel == "loftq_init/adapter_config.json") {
            nlohmann::ordered_json j = parse_ordered_json_checked(read_text_file(src), src, "adapter config");
            j["base_model_name_or_path"] = out;
            staged.write(rel, j.dump(2) + "\n");
        } else if (rel == "loftq_metrics.json") {
            // The packed export's manifest, with the checksums of this folder's files.
            nlohmann::ordered_json j = parse_ordered_json_checked(read_text_file(src), src, "export manifest");
            j["outputs"] = outputs_manifest(staged);
            staged.write(rel, j.dump(2) + "\n");
        } else {
            staged.copy_from(rel, src);
        }
    }
    staged.commit();
    return staged.committed_files();
}

}  // namespace loftq
