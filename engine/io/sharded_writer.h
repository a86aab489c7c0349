// sharded_writer.h: writes a model's tensors as one `<base>.safetensors`, or, when they exceed
// max_shard_bytes, as `<base>-0000i-of-0000N.safetensors` shards plus
// `<base>.safetensors.index.json` ({"metadata": {"total_size": bytes}, "weight_map": {tensor: shard}}),
// the Hugging Face layout. Tensors keep the layout order and are cut greedily into shards.
// Writes are out-of-order and thread-safe (SafetensorsWriter); nothing is in place before commit().
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/fsutil.h"
#include "io/safetensors.h"

namespace loftq {

class ShardedWriter {
public:
    ShardedWriter(const std::string& dir, const std::string& base, const std::vector<OutTensor>& layout,
                  uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});
    void write(const std::string& name, const void* bytes, uint64_t nbytes);
    void finish();
    // Hands the finished shards and the index (if sharded) to `staged`, which renames them into
    // place with everything else in one commit (or removes them if the export fails first).
    // The writer's folder must lie inside staged.dir().
    void commit(StagedOutput& staged);
    std::vector<std::string> file_names() const;  // relative names of the data files
    uint64_t total_bytes() const;                  // sum of the data files' sizes
    bool sharded() const { return writers_.size() > 1; }

private:
    std::string base_;
    std::vector<std::unique_ptr<SafetensorsWriter>> writers_;
    std::vector<std::string> names_;
    std::map<std::string, size_t> shard_of_;
    uint64_t tensor_bytes_ = 0;
};

}  // namespace loftq
