// tokenizer_sentencepiece.cpp: a SentencePiece model (tokenizer.model) through the Debian
// libsentencepiece: encoding, decoding and normalization are the library's own.
// Decode is done per run of ids between BOS tokens, so that, as llama2.c does, the dummy-prefix
// space is dropped at the start and after every BOS; BOS/EOS themselves decode to "".
// Leaves out: sampling/n-best encodings, extra options (reverse, bos/eos via options).
#include <sentencepiece_processor.h>

#include <cstdio>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/gguf_names.h"
#include "train/tokenizer_formats.h"

namespace loftq {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
public:
    SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp, std::string path)
        : sp_(std::move(sp)), path_(std::move(path)) {
        const int n = sp_->GetPieceSize();
        bos_ = sp_->bos_id() >= 0 && sp_->bos_id() < n ? sp_->bos_id() : -1;
        eos_ = sp_->eos_id() >= 0 && sp_->eos_id() < n ? sp_->eos_id() : -1;
    }

    std::vector<int> encode(const std::string& text, bool bos, bool eos) const override {
        std::vector<int> ids;
        auto st = sp_->Encode(text, &ids);
        if (!st.ok()) throw Error(path_, "", "sentencepiece encode failed: " + st.ToString());
        if (bos && bos_ >= 0) ids.insert(ids.begin(), bos_);
        if (eos && eos_ >= 0) ids.push_back(eos_);
        return ids;
    }

    std::string decode(const std::vector<int>& ids) const override {
        std::string out, part;
        std::vector<int> run;
        auto flush = [&] {
            if (run.empty()) return;
            part.clear();
            auto st = sp_->Decode(run, &part);
            if (!st.ok()) throw Error(path_, "", "sentencepiece decode failed: " + st.ToString());
            out += part;
            run.clear();
        };
        const int n = vocab_size();
        for (int id : ids) {
            if (id == bos_) flush();
            if (id < 0 || id >= n || id == bos_ || id == eos_) continue;
            run.push_back(id);
        }
        flush();
        return out;
    }

    std::string piece(int prev, int id) const override {
        if (id < 0 || id >= vocab_size() || id == bos_ || id == eos_ || sp_->IsControl(id)) return {};
        std::string p = sp_->IdToPiece(id);
        if (sp_->IsByte(id)) {
            int b = byte_piece_value(p);
            return b >= 0 ? std::string(1, char(b)) : std::string();
        }
        if (sp_->IsUnknown(id)) return " \xE2\x81\x87 ";   // " ⁇ ", what SentencePiece decodes <unk> to
        std::string s = spm_to_spaces(p);   // U+2581 (the escaped space) -> ' '
        if (prev == bos_ && bos_ >= 0 && !s.empty() && s[0] == ' ') s.erase(0, 1);
        return s;
    }

    int vocab_size() const override { return sp_->GetPieceSize(); }
    int bos_id() const override { return bos_; }
    int eos_id() const override { return eos_; }
    std::string kind() const override { return "sentencepiece"; }

    std::optional<ScoredVocab> scored_vocab() const override {
        ScoredVocab v;
        const int n = vocab_size();
        for (int i = 0; i < n; ++i) {
            v.pieces.push_back(sp_->IdToPiece(i));
            v.scores.push_back(sp_->GetScore(i));
            v.types.push_back(sp_->IsUnknown(i) ? 2 : sp_->IsControl(i) ? 3 : sp_->IsUnused(i) ? 5 : sp_->IsByte(i) ? 6 : 1);
        }
        v.unk = sp_->unk_id() >= 0 && sp_->unk_id() < n ? sp_->unk_id() : -1;
        v.bos = bos_;
        v.eos = eos_;
        return v;
    }

private:
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
    std::string path_;
    int bos_ = -1, eos_ = -1;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
    const std::string bytes = read_text_file(path);
    // A ModelProto starts with field 1 (repeated SentencePiece pieces), tag byte 0x0A.
    if (bytes.empty() || uint8_t(bytes[0]) != 0x0A) {
        char first[8];
        std::snprintf(first, sizeof first, "0x%02X", bytes.empty() ? 0 : unsigned(uint8_t(bytes[0])));
        throw Error(path, "", std::string("not a SentencePiece model: ") +
                                  (bytes.empty() ? "file is empty" : std::string("first byte is ") + first) +
                                  " (a ModelProto starts with 0x0A); expected tokenizer.model from the "
                                  "model's repository");
    }
    auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    sentencepiece::util::Status st;
    try {
        st = sp->LoadFromSerializedProto(bytes);
    } catch (const std::exception& e) {
        // The library's own exceptions escape for some malformed models (its double-array trie
        // throws on an empty piece, found by fuzz/ tok_spm): a message naming the file all the same.
        throw Error(path, "", std::string("cannot load SentencePiece model: ") + e.what());
    }
    if (!st.ok()) throw Error(path, "", "cannot load SentencePiece model: " + st.ToString());
    if (sp->GetPieceSize() <= 0) throw Error(path, "", "SentencePiece model has no pieces");
    return std::make_unique<SentencePieceTokenizer>(std::move(sp), path);
}

}  // namespace loftq
