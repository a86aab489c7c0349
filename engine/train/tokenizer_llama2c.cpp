// tokenizer_llama2c.cpp: the llama2.c tokenizer (tokenizer.bin, tok<N>.bin), encoding and
// decoding exactly as karpathy/llama2.c run.c does.
// File: int32 max_token_length, then per token {float32 score, int32 len, len bytes}, to EOF.
// Ids 0/1/2 = <unk>/<s>/</s>; byte-fallback pieces "<0x00>".."<0xFF>" at ids 3..258.
// Encode: [BOS] + dummy-prefix " " (non-empty text) + one symbol per UTF-8 code point (at most 4
// bytes, as run.c groups them; unknown -> one byte token per byte, id = byte + 3), then merge the
// adjacent pair whose concatenated text is a token with the highest score (leftmost on ties,
// scores <= -1e10 never merge) until none does; [EOS]. Decode: a piece's leading space is dropped
// at the start and after BOS; "<0xNN>" pieces are raw bytes; BOS/EOS are empty.
// Leaves out: sampling, and run.c's vocab_size from the model header (the file is read to EOF).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "core/fsutil.h"
#include "io/gguf_names.h"
#include "train/tokenizer_formats.h"

namespace loftq {
namespace {

class Llama2cTokenizer final : public Tokenizer {
public:
    Llama2cTokenizer(std::vector<std::string> pieces, std::vector<float> scores, ScoredPieceSpecials sp)
        : pieces_(std::move(pieces)), scores_(std::move(scores)), sp_(std::move(sp)) {
        const int V = int(pieces_.size());
        bos_ = sp_.bos >= 0 && sp_.bos < V ? sp_.bos : -1;
        eos_ = sp_.eos >= 0 && sp_.eos < V ? sp_.eos : -1;
        index_.reserve(pieces_.size() * 2);
        bytes_.assign(pieces_.size(), -1);
        for (size_t i = 0; i < pieces_.size(); ++i) {
            index_.emplace(pieces_[i], int(i));   // first id wins on a duplicate string
            bytes_[i] = byte_piece_value(pieces_[i]);
        }
        // Byte fallback: the "<0xNN>" piece's id; llama2.c's rule (byte + 3) when there is none.
        for (int b = 0; b < 256; ++b) byte_id_[b] = b + 3 < V ? b + 3 : std::max(sp_.unk, 0);
        for (int i = V - 1; i >= 0; --i)
            if (bytes_[size_t(i)] >= 0) byte_id_[bytes_[size_t(i)]] = i;
        space_id_ = lookup(" ");
        // Every possible merge, precomputed: (a, b) merges into t exactly when the text of a
        // followed by that of b is t's text, i.e. a and b are a prefix and suffix of t. Lookups
        // then hash two ids instead of a concatenated string (about 3x faster on the 32k vocab).
        canon_.resize(pieces_.size());
        for (size_t i = 0; i < pieces_.size(); ++i) canon_[i] = lookup(pieces_[i]);
        for (size_t t = 0; t < pieces_.size(); ++t) {
            if (!(scores_[t] > -1e10f) || canon_[t] != int(t)) continue;   // run.c's floor; first duplicate
            const std::string_view p = pieces_[t];
            for (size_t k = 1; k < p.size(); ++k) {
                int a = lookup(p.substr(0, k));
                if (a < 0) continue;
                int b = lookup(p.substr(k));
                if (b >= 0) pairs_.emplace(pair_key(a, b), int(t));
            }
        }
    }

    std::vector<int> encode(const std::string& text, bool bos, bool eos) const override {
        std::vector<int> out;
        out.reserve(text.size() + 3);
        if (bos && bos_ >= 0) out.push_back(bos_);
        std::vector<int> sym;
        sym.reserve(text.size() + 1);
        if (!text.empty() && space_id_ >= 0 && sp_.add_space_prefix) sym.push_back(space_id_);
        // run.c: a code point is a lead byte plus up to 3 continuation bytes (so at most 4 bytes).
        const size_t n = text.size();
        size_t i = 0;
        while (i < n) {
            size_t j = i + 1;
            while (j < n && (uint8_t(text[j]) & 0xC0) == 0x80 && j - i < 4) ++j;
            int id = lookup(std::string_view(text).substr(i, j - i));
            if (id >= 0) {
                sym.push_back(id);
            } else {
                for (size_t k = i; k < j; ++k) sym.push_back(byte_id_[uint8_t(text[k])]);
            }
            i = j;
        }
        merge_pairs(sym, [&](int a, int b) {
            MergeCandidate c;
            auto it = pairs_.find(pair_key(canon_[size_t(a)], canon_[size_t(b)]));
            if (it != pairs_.end()) {
                c.priority = scores_[size_t(it->second)];
                c.merged = it->second;
            }
            return c;
        });
        out.insert(out.end(), sym.begin(), sym.end());
        if (eos && eos_ >= 0) out.push_back(eos_);
        return out;
    }

    std::string decode(const std::vector<int>& ids) const override {
        std::string out;
        int prev = bos_;   // the first piece drops its dummy-prefix space, as after BOS
        for (int id : ids) {
            out += piece(prev, id);
            prev = id;
        }
        return out;
    }

    std::string piece(int prev, int id) const override {
        if (id < 0 || id >= vocab_size() || id == bos_ || id == eos_) return {};
        if (bytes_[size_t(id)] >= 0) return std::string(1, char(bytes_[size_t(id)]));
        const std::string& p = pieces_[size_t(id)];
        if (prev == bos_ && sp_.add_space_prefix && !p.empty() && p[0] == ' ') return p.substr(1);
        return p;
    }

    int vocab_size() const override { return int(pieces_.size()); }
    int bos_id() const override { return bos_; }
    int eos_id() const override { return eos_; }
    std::string kind() const override { return sp_.kind; }

    std::optional<ScoredVocab> scored_vocab() const override {
        ScoredVocab v;
        v.scores = scores_;
        v.unk = sp_.unk >= 0 && sp_.unk < vocab_size() ? sp_.unk : -1;
        v.bos = bos_;
        v.eos = eos_;
        v.add_space_prefix = sp_.add_space_prefix;
        for (size_t i = 0; i < pieces_.size(); ++i) {
            v.pieces.push_back(spaces_to_spm(pieces_[i]));
            int32_t t = 1;
            if (i < sp_.types.size()) t = sp_.types[i];
            else if (int(i) == v.unk) t = 2;
            else if (int(i) == bos_ || int(i) == eos_) t = 3;
            else if (bytes_[i] >= 0) t = 6;
            v.types.push_back(t);
        }
        return v;
    }

private:
    static uint64_t pair_key(int a, int b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
    int lookup(std::string_view s) const {
        auto it = index_.find(s);
        return it == index_.end() ? -1 : it->second;
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::vector<int> bytes_;   // byte value of a "<0xNN>" piece, else -1
    std::unordered_map<std::string, int, StringHash, std::equal_to<>> index_;
    std::vector<int> canon_;                       // id -> first id with the same text
    std::unordered_map<uint64_t, int> pairs_;      // (a, b) -> merged id
    int space_id_ = -1;
    ScoredPieceSpecials sp_;
    int bos_ = 1, eos_ = 2;     // the special ids (-1: none)
    int byte_id_[256] = {};     // byte -> its fallback token
};

int32_t read_i32(const std::string& b, size_t off) {
    int32_t v;
    std::memcpy(&v, b.data() + off, 4);
    return v;
}

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path) {
    const std::string b = read_text_file(path);
    const std::string hint = " (expected a llama2.c tokenizer: int32 max_token_length, then per token "
                             "float32 score, int32 length, bytes)";
    if (b.size() < 4) throw Error(path, "", "file is " + std::to_string(b.size()) + " bytes, too small" + hint);
    const int32_t max_len = read_i32(b, 0);
    if (max_len <= 0 || max_len > 65536)
        throw Error(path, "", "max_token_length = " + std::to_string(max_len) + " is not plausible" + hint);
    std::vector<std::string> pieces;
    std::vector<float> scores;
    size_t off = 4;
    while (off < b.size()) {
        const size_t idx = pieces.size();
        const std::string at = "token " + std::to_string(idx) + " at offset " + std::to_string(off);
        if (b.size() - off < 8)
            throw Error(path, "", "truncated at " + at + ": its 8-byte header runs past the end (file is " +
                                      std::to_string(b.size()) + " bytes)");
        float score;
        std::memcpy(&score, b.data() + off, 4);
        const int32_t len = read_i32(b, off + 4);
        if (!std::isfinite(score)) throw Error(path, "", at + ": score is not finite" + hint);
        if (len < 0 || len > max_len)
            throw Error(path, "", at + ": length " + std::to_string(len) + " is outside 0.." +
                                      std::to_string(max_len) + " (max_token_length)" + hint);
        off += 8;
        if (b.size() - off < size_t(len))
            throw Error(path, "", "truncated at " + at + ": its " + std::to_string(len) +
                                      " bytes run past the end (file is " + std::to_string(b.size()) + " bytes)");
        pieces.emplace_back(b.data() + off, size_t(len));
        scores.push_back(score);
        off += size_t(len);
    }
    if (pieces.size() < 3)
        throw Error(path, "", "only " + std::to_string(pieces.size()) + " tokens; a llama2.c tokenizer has "
                                  "<unk>, <s>, </s> and more" + hint);
    return std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(scores), ScoredPieceSpecials{});
}

std::unique_ptr<Tokenizer> make_scored_piece_tokenizer(std::vector<std::string> pieces, std::vector<float> scores,
                                                       ScoredPieceSpecials sp) {
    return std::make_unique<Llama2cTokenizer>(std::move(pieces), std::move(scores), std::move(sp));
}

}  // namespace loftq
