// tokenizer.h: text <-> token ids for the fine-tuning data and samples. Three formats:
//   llama2.c `tokenizer.bin` / `tok512.bin` (scores + pieces, byte fallback, greedy best-score
//     pair merges, as llama2.c's run.c encodes);
//   sentencepiece `tokenizer.model` (the Debian libsentencepiece);
//   Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2 style, merges by rank).
// Leaves out: chat templates, normalizers other than what each format's reference applies.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace loftq {

// A SentencePiece-style scored vocabulary, the form GGUF's "llama" tokenizer stores
// (tokenizer.ggml.tokens / scores / token_type): what a GGUF export writes.
struct ScoredVocab {
    std::vector<std::string> pieces;   // "\xE2\x96\x81" (U+2581) for a space; "<0xNN>" byte pieces
    std::vector<float> scores;
    std::vector<int32_t> types;        // GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
    int unk = -1, bos = -1, eos = -1;
    bool add_space_prefix = true;      // a space is put before the text (SentencePiece's dummy prefix)
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // Encodes `text`; bos/eos prepend/append the special tokens when the tokenizer has them.
    virtual std::vector<int> encode(const std::string& text, bool bos, bool eos) const = 0;
    virtual std::string decode(const std::vector<int>& ids) const = 0;
    // The text of one token as it continues `prev` (llama2.c drops the leading space after BOS).
    virtual std::string piece(int prev, int id) const = 0;
    virtual int vocab_size() const = 0;
    virtual int bos_id() const = 0;   // -1 when none
    virtual int eos_id() const = 0;   // -1 when none
    virtual std::string kind() const = 0;   // "llama2c", "sentencepiece", "hf-bpe", "gguf-llama"
    // The vocabulary as scored pieces, for tokenizers of that kind (llama2.c, SentencePiece BPE,
    // a GGUF "llama" tokenizer); none for byte-level BPE.
    virtual std::optional<ScoredVocab> scored_vocab() const { return std::nullopt; }
};

// `path`: a tokenizer file, a .gguf (its embedded tokenizer), or a model folder/file beside which
// one is looked for (tokenizer.json, tokenizer.model, tokenizer.bin, tok<N>.bin, a single .gguf). Throws loftq::Error naming the
// file, or saying which files were looked for when none is found.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace loftq
