// tokenizer_gguf.cpp: the tokenizer a .gguf carries (tokenizer.ggml.*), for generation and
// fine-tuning from a GGUF model. Only the "llama" kind (SentencePiece-style scored pieces, as
// Llama 1/2, Mistral and TinyStories models have) is read: its pieces, with U+2581 read as a
// space, and scores go to the llama2.c encoder (best-score pair merges over UTF-8 characters,
// byte fallback), which is what llama.cpp's own SPM tokenizer does.
// Leaves out: "gpt2" byte-level BPE vocabularies (Llama 3, Qwen2: refused, naming the kind),
// user-defined tokens matched before merging, chat templates.
#include <cmath>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_names.h"
#include "train/tokenizer_formats.h"

namespace loftq {

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path) {
    auto f = GgufFile::open(path);
    const std::string model = f->get_string("tokenizer.ggml.model", "");
    if (model.empty()) throw Error(path, "tokenizer.ggml.model", "the file carries no tokenizer; pass one with --tokenizer");
    if (model != "llama")
        throw Error(path, "tokenizer.ggml.model",
                    "tokenizer kind '" + model + "' is not supported (LoftQ Studio reads the 'llama' SentencePiece-style "
                    "vocabulary of a GGUF); pass the model's tokenizer.json with --tokenizer");
    const GgufValue* toks = f->find("tokenizer.ggml.tokens");
    if (!toks || toks->type != GgufType::Array || toks->array_type != GgufType::String || toks->strs.empty())
        throw Error(path, "tokenizer.ggml.tokens", "missing or not an array of strings");
    const size_t n = toks->strs.size();
    std::vector<float> scores(n, 0.f);
    if (const GgufValue* sc = f->find("tokenizer.ggml.scores")) {
        if (sc->type != GgufType::Array || sc->nums.size() != n)
            throw Error(path, "tokenizer.ggml.scores", "holds " + std::to_string(sc->nums.size()) + " numbers for " +
                                                           std::to_string(n) + " tokens");
        for (size_t i = 0; i < n; ++i) {
            if (!std::isfinite(sc->nums[i])) throw Error(path, "tokenizer.ggml.scores", "score of token " + std::to_string(i) + " is not finite");
            scores[i] = float(sc->nums[i]);
        }
    }
    ScoredPieceSpecials sp;
    sp.kind = "gguf-llama";
    if (const GgufValue* ty = f->find("tokenizer.ggml.token_type")) {
        if (ty->type != GgufType::Array || ty->nums.size() != n)
            throw Error(path, "tokenizer.ggml.token_type", "holds " + std::to_string(ty->nums.size()) + " types for " +
                                                               std::to_string(n) + " tokens");
        for (double t : ty->nums) sp.types.push_back(int32_t(t));
    }
    auto special = [&](const char* key, int fallback) {
        const int64_t id = f->get_int(key, fallback);
        if (id < -1 || id >= int64_t(n)) throw Error(path, key, "token id " + std::to_string(id) + " is outside the " + std::to_string(n) + " tokens");
        return int(id);
    };
    sp.unk = special("tokenizer.ggml.unknown_token_id", 0);
    sp.bos = special("tokenizer.ggml.bos_token_id", 1);
    sp.eos = special("tokenizer.ggml.eos_token_id", 2);
    sp.add_space_prefix = f->get_bool("tokenizer.ggml.add_space_prefix", true);
    std::vector<std::string> pieces;
    pieces.reserve(n);
    for (const auto& s : toks->strs) pieces.push_back(spm_to_spaces(s));
    return make_scored_piece_tokenizer(std::move(pieces), std::move(scores), std::move(sp));
}

}  // namespace loftq
