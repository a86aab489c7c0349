// tokenizer_formats.h: private to engine/train: the three tokenizer loaders that load_tokenizer
// (tokenizer.cpp) dispatches to, and the pair-merge loop the two BPE encoders share.
// Leaves out: format detection and the search beside a model file (tokenizer.cpp).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "train/tokenizer.h"

namespace loftq {

// llama2.c tokenizer.bin / tok<N>.bin. Throws loftq::Error naming the file (and the token index
// when the file is truncated or a token is malformed).
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path);
// The "llama" tokenizer embedded in a .gguf (tokenizer.ggml.*): a llama2.c-style encoder over its
// pieces ("\xE2\x96\x81" read as a space) and scores. Throws loftq::Error naming the file and key
// (no tokenizer, another kind such as "gpt2", arrays of different lengths, bad special ids).
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::string& path);
// The llama2.c encoder over given pieces (spaces as ' ') and scores, with these special ids.
struct ScoredPieceSpecials {
    int unk = 0, bos = 1, eos = 2;
    bool add_space_prefix = true;
    std::string kind = "llama2c";
    std::vector<int32_t> types;   // GGUF token types when known (else derived: unk, bos/eos control, byte pieces)
};
std::unique_ptr<Tokenizer> make_scored_piece_tokenizer(std::vector<std::string> pieces, std::vector<float> scores,
                                                       ScoredPieceSpecials sp);
// SentencePiece ModelProto (tokenizer.model). Throws loftq::Error naming the file.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path);
// Hugging Face tokenizer.json with a byte-level BPE model; reads tokenizer_config.json beside it
// for bos/eos when present. Throws loftq::Error naming the file.
std::unique_ptr<Tokenizer> load_hf_bpe_tokenizer(const std::string& path);

// A candidate merge of two adjacent symbols: `merged` < 0 means "no merge".
struct MergeCandidate {
    double priority = 0;   // higher merges first (llama2.c: the score; HF BPE: -rank)
    int merged = -1;
};

// Repeatedly merges the adjacent pair with the highest priority, the leftmost on ties, until no
// pair merges: exactly what llama2.c's run.c does by rescanning every pair each round, in
// O(n log n) with a heap and a linked list. Stale heap entries are recognised by the ids they
// were made from (a merged symbol is always longer, so an id never returns to a position).
template <class PairFn>
void merge_pairs(std::vector<int>& ids, PairFn&& pair) {
    const int n = int(ids.size());
    if (n < 2) return;
    std::vector<int> next(static_cast<size_t>(n)), prev(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
        prev[size_t(i)] = i - 1;
        next[size_t(i)] = i + 1 < n ? i + 1 : -1;
    }
    struct Item {
        double pri;
        int left, right, lid, rid, merged;
    };
    auto lower = [](const Item& a, const Item& b) {
        return a.pri != b.pri ? a.pri < b.pri : a.left > b.left;
    };
    std::priority_queue<Item, std::vector<Item>, decltype(lower)> heap(lower);
    auto push = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        MergeCandidate c = pair(ids[size_t(l)], ids[size_t(r)]);
        if (c.merged >= 0) heap.push({c.priority, l, r, ids[size_t(l)], ids[size_t(r)], c.merged});
    };
    for (int i = 0; i + 1 < n; ++i) push(i, i + 1);
    while (!heap.empty()) {
        Item it = heap.top();
        heap.pop();
        if (next[size_t(it.left)] != it.right || ids[size_t(it.left)] != it.lid || ids[size_t(it.right)] != it.rid)
            continue;
        ids[size_t(it.left)] = it.merged;
        ids[size_t(it.right)] = -1;
        int after = next[size_t(it.right)];
        next[size_t(it.left)] = after;
        if (after >= 0) prev[size_t(after)] = it.left;
        push(prev[size_t(it.left)], it.left);
        push(it.left, after);
    }
    size_t k = 0;
    for (int i = 0; i >= 0; i = next[size_t(i)]) ids[k++] = ids[size_t(i)];
    ids.resize(k);
}

// Length of the UTF-8 sequence a lead byte starts (1 for a stray continuation/invalid byte).
inline int utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

// "<0xNN>" -> NN, else -1 (the byte-fallback pieces of llama2.c and SentencePiece vocabularies).
inline int byte_piece_value(std::string_view p) {
    if (p.size() != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    int hi = hex(p[3]), lo = hex(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Transparent string hash so unordered_map<std::string, ...> can be probed with a string_view.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace loftq
