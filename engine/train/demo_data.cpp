// demo_data.cpp: see demo_data.h.
#include "train/demo_data.h"

#include <cstring>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"

namespace loftq {

namespace {
const char* kNames[] = {"Lily", "Tom", "Mia", "Ben", "Sam", "Anna", "Max", "Zoe"};
const char* kThings[] = {"ball", "kite", "cat", "dog", "box", "boat", "hat", "book", "cake", "tree"};
const char* kColours[] = {"red", "blue", "green", "big", "small", "happy", "shiny", "old"};
const char* kPlaces[] = {"park", "garden", "house", "school", "beach", "forest"};
const char* kVerbs[] = {"saw", "found", "liked", "had", "made", "wanted"};
const char* kFeel[] = {"happy", "sad", "tired", "proud", "kind", "glad"};

template <size_t N>
const char* pick(Rng& r, const char* (&a)[N]) { return a[r.next() % N]; }
}  // namespace

std::string demo_corpus(int sentences, uint64_t seed) {
    Rng r(seed);
    std::string out;
    int in_story = 0;
    for (int i = 0; i < sentences; ++i) {
        const char* name = pick(r, kNames);
        std::string s;
        switch (r.next() % 5) {
        case 0: s = std::string("Once upon a time, ") + name + " " + pick(r, kVerbs) + " a " + pick(r, kColours) + " " + pick(r, kThings) + "."; break;
        case 1: s = std::string(name) + " went to the " + pick(r, kPlaces) + " with a " + pick(r, kThings) + "."; break;
        case 2: s = std::string(name) + " was very " + pick(r, kFeel) + " and played all day."; break;
        case 3: s = std::string("The ") + pick(r, kThings) + " was " + pick(r, kColours) + ", and " + name + " " + pick(r, kVerbs) + " it."; break;
        default: s = std::string(name) + " said, \"I like my " + pick(r, kColours) + " " + pick(r, kThings) + "!\""; break;
        }
        out += s;
        if (++in_story >= 3 + int(r.next() % 4)) {
            out += "\n\n";
            in_story = 0;
        } else {
            out += " ";
        }
    }
    return out;
}

void write_demo_tokenizer(const std::string& path, const std::string& corpus, int vocab) {
    if (vocab < 3 + 256 + 95) throw Error(path, "", "demo tokenizer needs a vocabulary of at least 354");
    std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
    std::vector<float> scores = {0, 0, 0};
    char buf[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        pieces.push_back(buf);
        scores.push_back(0);
    }
    for (char c = ' '; c <= '~'; ++c) {
        pieces.push_back(std::string(1, c));
        scores.push_back(0);
    }
    // BPE on the corpus with a dummy-prefix space per paragraph (as llama2.c's encoder adds one).
    std::vector<std::vector<std::string>> words;  // corpus as sequences of pieces, split at newlines
    {
        std::vector<std::string> cur = {" "};
        for (char c : corpus) {
            if (c == '\n') {
                if (cur.size() > 1) words.push_back(cur);
                cur = {" "};
            } else if (c >= ' ' && c <= '~') {
                cur.push_back(std::string(1, c));
            }
        }
        if (cur.size() > 1) words.push_back(cur);
    }
    std::set<std::string> known(pieces.begin(), pieces.end());
    float score = -1;
    while (int(pieces.size()) < vocab) {
        std::map<std::pair<std::string, std::string>, int> counts;
        for (auto& w : words)
            for (size_t i = 0; i + 1 < w.size(); ++i) ++counts[{w[i], w[i + 1]}];
        std::pair<std::string, std::string> best;
        int best_n = 1;
        for (auto& [p, n] : counts)
            if (n > best_n && p.first.size() + p.second.size() <= 16) {
                best = p;
                best_n = n;
            }
        if (best_n <= 1) break;  // nothing repeats any more
        const std::string merged = best.first + best.second;
        if (known.insert(merged).second) {  // another split may have made this piece already
            pieces.push_back(merged);
            scores.push_back(score);
            score -= 1;
        }
        for (auto& w : words) {
            std::vector<std::string> nw;
            for (size_t i = 0; i < w.size(); ++i) {
                if (i + 1 < w.size() && w[i] == best.first && w[i + 1] == best.second) {
                    nw.push_back(merged);
                    ++i;
                } else {
                    nw.push_back(w[i]);
                }
            }
            w.swap(nw);
        }
    }
    while (int(pieces.size()) < vocab) {  // pad with unused pieces so ids cover the model's vocab
        pieces.push_back("<unused" + std::to_string(pieces.size()) + ">");
        scores.push_back(-1e9f);
    }
    std::string bytes;
    auto put = [&](const void* p, size_t n) { bytes.append(static_cast<const char*>(p), n); };
    int32_t max_len = 0;
    for (auto& p : pieces) max_len = std::max<int32_t>(max_len, int32_t(p.size()));
    put(&max_len, 4);
    for (size_t i = 0; i < pieces.size(); ++i) {
        int32_t len = int32_t(pieces[i].size());
        put(&scores[i], 4);
        put(&len, 4);
        put(pieces[i].data(), pieces[i].size());
    }
    write_file_atomic(path, bytes);
}

}  // namespace loftq
