// demo_data.h: a small text corpus and a matching llama2.c-format tokenizer for the built-in demo
// model (`loftq-studio --demo`, `loftq make-demo`), so that fine-tuning can be tried and tested
// with nothing downloaded. The corpus is templated short stories from fixed word lists (seeded):
// regular enough that LoRA fine-tuning visibly lowers its loss. The tokenizer is byte-level BPE
// trained on that corpus: ids 0/1/2 = <unk>/<s>/</s>, 3..258 the byte-fallback tokens <0x00>..
// <0xFF>, then the 95 printable ASCII characters, then merges in the order learned (scores
// decreasing), up to `vocab` pieces. Leaves out: anything real-language quality.
#pragma once
#include <cstdint>
#include <string>

namespace loftq {

// `sentences` sentences grouped into stories separated by blank lines.
std::string demo_corpus(int sentences, uint64_t seed);
// Writes `path` (llama2.c tokenizer.bin format) atomically. Throws loftq::Error.
void write_demo_tokenizer(const std::string& path, const std::string& corpus, int vocab);

}  // namespace loftq
