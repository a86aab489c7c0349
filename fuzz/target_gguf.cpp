// target_gguf.cpp: fuzz target for the GGUF reader (io/gguf.h): the bytes as a .gguf file,
// opened (every header, key/value and tensor info checked), every key/value read through each
// typed getter (a type mismatch must be a clean refusal), every tensor of a readable type read as
// fp32 with the NaN/Inf check, and every tensor released. Each read runs on its own, so that a
// bad one does not hide the reads after it.
// Leaves out: the writer (it takes no outside bytes), the loaders built on the reader.
#include "core/error.h"
#include "fuzz_support.h"
#include "io/gguf.h"
#include "quant/ggml_types.h"
#include "targets.h"

namespace loftq::fuzz {

int gguf(const uint8_t* data, size_t size) {
    const std::string path = write_scratch("gguf/model.gguf", data, size);
    std::unique_ptr<GgufFile> f;
    if (!expect_clean(path, [&] { f = GgufFile::open(path); })) return 0;
    for (const auto& kv : f->metadata()) {
        const std::string& key = kv.first;   // not a structured binding: clang 14 cannot capture those
        const GgufValue& v = kv.second;
        if (f->find(key) != &v) fail("find('" + key + "') does not return its own entry");
        (void)v.type_text();
        expect_clean(path, [&] { (void)f->get_string(key); });
        expect_clean(path, [&] { (void)f->get_int(key, 0); });
        expect_clean(path, [&] { (void)f->get_float(key, 0); });
        expect_clean(path, [&] { (void)f->get_bool(key, false); });
    }
    for (const GgufTensor& t : f->tensors()) {
        if (f->find_tensor(t.name) != &t) fail("find_tensor('" + t.name + "') does not return its own entry");
        const GgmlTypeInfo* ti = ggml_type_info(t.type);
        if (!ti) fail("tensor '" + t.name + "' of an unknown type was accepted");
        (void)t.shape();
        expect_clean(path, [&] {
            std::vector<float> v = f->read_f32(t);  // refuses unreadable types and NaN/Inf cleanly
            if (v.size() != t.numel()) fail("read_f32 returned the wrong count for '" + t.name + "'");
        });
        f->release(t);
    }
    return 0;
}

}  // namespace loftq::fuzz
