// target_text.cpp: fuzz targets for tokenizer files (train/tokenizer.h: llama2.c tokenizer.bin,
// sentencepiece tokenizer.model, Hugging Face tokenizer.json) and fine-tuning data
// (train/dataset.h: JSONL or plain text, tokenized with the demo model's tokenizer). A tokenizer
// that loads is then used: a text with ASCII, multi-byte and invalid UTF-8 encoded, decoded and
// every id's piece printed, as training and sampling do.
#include <memory>

#include "fixtures.h"
#include "fuzz_support.h"
#include "train/dataset.h"
#include "train/tokenizer.h"
#include "targets.h"

namespace loftq::fuzz {
namespace {

void load_and_use(const std::string& path) {
    std::unique_ptr<Tokenizer> tok;
    if (!expect_clean(path, [&] { tok = load_tokenizer(path); })) return;
    expect_clean(path, [&] {
        const std::string text = "Once upon a time, \xc3\xa9t\xc3\xa9 \xe2\x82\xac 42!\n\xff\xfe tail";
        std::vector<int> ids = tok->encode(text, true, true);
        (void)tok->decode(ids);
        const int n = std::min(tok->vocab_size(), 4096);
        for (int id = 0, prev = tok->bos_id(); id < n; prev = id++) (void)tok->piece(prev, id);
        ids.push_back(-1), ids.push_back(tok->vocab_size()), ids.push_back(1 << 30);
        (void)tok->decode(ids);  // ids out of range are skipped or refused, never read
    });
}

}  // namespace

int tok_llama2c(const uint8_t* data, size_t size) {
    load_and_use(write_scratch("tok/tokenizer.bin", data, size));
    return 0;
}

int tok_spm(const uint8_t* data, size_t size) {
    load_and_use(write_scratch("tok/tokenizer.model", data, size));
    return 0;
}

int tok_hf(const uint8_t* data, size_t size) {
    load_and_use(write_scratch("tok/tokenizer.json", data, size));
    return 0;
}

int dataset(const uint8_t* data, size_t size) {
    static const std::unique_ptr<Tokenizer> tok = load_tokenizer(demo_tokenizer());
    if (size == 0) return 0;
    // First byte: the file's kind (JSONL or text) and the sequence length.
    const std::string path = write_scratch((data[0] & 1) ? "data/train.jsonl" : "data/train.txt", data + 1, size - 1);
    DatasetOptions o;
    o.seq = 4 + (data[0] >> 2) % 60;
    o.eval_fraction = (data[0] & 2) ? 0.2 : 0.0;
    o.seed = 1;
    expect_clean(path, [&] { (void)load_dataset(path, *tok, o); });
    return 0;
}

}  // namespace loftq::fuzz
