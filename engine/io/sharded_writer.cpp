// sharded_writer.cpp: see sharded_writer.h.
#include "io/sharded_writer.h"

#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace loftq {

ShardedWriter::ShardedWriter(const std::string& dir, const std::string& base, const std::vector<OutTensor>& layout,
                             uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata)
    : base_(base) {
    std::vector<std::vector<OutTensor>> shards(1);
    uint64_t cur = 0;
    for (const auto& t : layout) {
        tensor_bytes_ += t.nbytes;
        if (max_shard_bytes > 0 && cur > 0 && cur + t.nbytes > max_shard_bytes) {
            shards.emplace_back();
            cur = 0;
        }
        shards.back().push_back(t);
        cur += t.nbytes;
    }
    std::filesystem::create_directories(dir);
    size_t n = shards.size();
    for (size_t i = 0; i < n; ++i) {
        char name[128];
        if (n == 1) std::snprintf(name, sizeof name, "%s.safetensors", base.c_str());
        else std::snprintf(name, sizeof name, "%s-%05zu-of-%05zu.safetensors", base.c_str(), i + 1, n);
        names_.push_back(name);
        for (auto& t : shards[i]) shard_of_[t.name] = i;
        writers_.push_back(std::make_unique<SafetensorsWriter>((std::filesystem::path(dir) / name).string(), shards[i], metadata));
    }
}

void ShardedWriter::write(const std::string& name, const void* bytes, uint64_t nbytes) {
    auto it = shard_of_.find(name);
    if (it == shard_of_.end()) throw Error(names_.front(), name, "tensor is not in the output layout");
    writers_[it->second]->write(name, bytes, nbytes);
}

void ShardedWriter::finish() {
    for (auto& w : writers_) w->finish();
}

void ShardedWriter::commit(StagedOutput& staged) {
    const auto root = std::filesystem::absolute(staged.dir()).lexically_normal();
    std::filesystem::path rel_dir;
    for (auto& w : writers_) {
        auto rel = std::filesystem::absolute(w->path()).lexically_normal().lexically_relative(root);
        if (rel.empty() || *rel.begin() == "..") throw Error(w->path(), "", "shard is outside the output folder " + staged.dir());
        staged.adopt(rel.string(), w->release_partial());
        rel_dir = rel.parent_path();
    }
    if (writers_.size() > 1) {
        nlohmann::ordered_json idx;
        idx["metadata"] = {{"total_size", tensor_bytes_}};
        nlohmann::ordered_json map = nlohmann::ordered_json::object();
        std::vector<std::pair<std::string, size_t>> sorted(shard_of_.begin(), shard_of_.end());
        for (auto& [name, shard] : sorted) map[name] = names_[shard];
        idx["weight_map"] = map;
        staged.write((rel_dir / (base_ + ".safetensors.index.json")).string(), idx.dump(2) + "\n");
    }
}

std::vector<std::string> ShardedWriter::file_names() const { return names_; }

uint64_t ShardedWriter::total_bytes() const {
    uint64_t s = 0;
    for (auto& w : writers_) s += w->total_bytes();
    return s;
}

}  // namespace loftq
