// target_checkpoint.cpp: fuzz targets for the checkpoint readers (io/checkpoint.h,
// io/safetensors.h): a safetensors file, a shard index, config.json, a llama2.c .bin. Every
// tensor a checkpoint lists is then read, each on its own, so that a bad one does not hide the
// reads after it.
#include <filesystem>

#include "core/error.h"
#include "fixtures.h"
#include "fuzz_support.h"
#include "io/checkpoint.h"
#include "model/llama.h"
#include "targets.h"

namespace fs = std::filesystem;

namespace loftq::fuzz {
namespace {

void read_every_tensor(const Checkpoint& ck) {
    for (const TensorEntry& t : ck.tensors()) {
        expect_clean(ck.path(), [&] {
            if (dtype_is_float_convertible(t.dtype)) (void)ck.read_f32(t);
            else (void)ck.read_bytes(t);
            ck.release(t);
        });
    }
}

void open_and_read(const std::string& path) {
    std::unique_ptr<Checkpoint> ck;
    if (!expect_clean(path, [&] { ck = Checkpoint::open(path); })) return;
    read_every_tensor(*ck);
    expect_clean(path, [&] { (void)ck->hf_config_json().dump(); });
}

}  // namespace

int safetensors(const uint8_t* data, size_t size) {
    open_and_read(write_scratch("st/model.safetensors", data, size));
    return 0;
}

int shard_index(const uint8_t* data, size_t size) {
    static const std::string dir = tiny_model("sharded", 1500);
    write_scratch("sharded/model.safetensors.index.json", data, size);
    open_and_read(dir);
    return 0;
}

int config(const uint8_t* data, size_t size) {
    static const std::string dir = tiny_model("configured");
    const std::string path = write_scratch("configured/config.json", data, size);
    expect_clean(path, [&] { (void)read_model_config(path); });
    expect_clean(path, [&] {
        LoadOptions o;
        o.model = dir;
        o.init = InitKind::Lora16;
        o.rank = 2;
        o.threads = 1;
        (void)load_llama(o);
    });
    return 0;
}

int llama2c(const uint8_t* data, size_t size) {
    open_and_read(write_scratch("l2c/model.bin", data, size));
    return 0;
}

}  // namespace loftq::fuzz
