// test_tokenizer.cpp: tests of engine/train tokenizers.
// llama2.c: a synthetic tokenizer.bin with hand-checked merges (score order, leftmost tie, byte
// fallback, the -1e10 floor); the real tok512.bin (story round trip, byte fallback on emoji/CJK,
// found beside stories260K.bin); the fast encoder against a literal copy of run.c's O(n^2)
// encode; and, as the independent check, the 32k Llama 2 tokenizer.bin against the same model's
// tokenizer.model through libsentencepiece on TinyStories, WikiText-2 and GSM8K text.
// Hugging Face byte-level BPE: small tokenizer.json files written here (merge ranks, GPT-2 and
// Llama 3 / Qwen2 splits, added tokens, bos/eos from tokenizer_config.json, UTF-8 round trips).
// Errors: missing, truncated and foreign files are named. Encoding speed is printed.
// Leaves out: datasets (test_dataset).
#include <QtTest>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "expect_error.h"
#include "test_support.h"
#include "train/tokenizer.h"

using namespace loftq;
using loftq::test::read_file;
using loftq::test::write_file;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::vector<std::string> read_lines(const std::string& path, size_t max_lines) {
    std::ifstream in(path, std::ios::binary);
    std::vector<std::string> out;
    std::string l;
    while (out.size() < max_lines && std::getline(in, l)) {
        if (!l.empty() && l.back() == '\r') l.pop_back();
        out.push_back(l);
    }
    return out;
}

std::string ids_str(const std::vector<int>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    return s + "]";
}

// ---- llama2.c: file writer and a literal copy of run.c's encode (the reference) ----

std::string llama2c_bytes(const std::vector<std::pair<std::string, float>>& toks) {
    int32_t max_len = 0;
    for (auto& t : toks) max_len = std::max<int32_t>(max_len, int32_t(t.first.size()));
    std::string b(4, '\0');
    std::memcpy(b.data(), &max_len, 4);
    for (auto& [s, score] : toks) {
        char h[8];
        int32_t len = int32_t(s.size());
        std::memcpy(h, &score, 4);
        std::memcpy(h + 4, &len, 4);
        b.append(h, 8);
        b += s;
    }
    return b;
}

// <unk>, <s>, </s>, <0x00>..<0xFF>, then `extra` (ids from 259).
std::vector<std::pair<std::string, float>> llama2c_base(const std::vector<std::pair<std::string, float>>& extra) {
    std::vector<std::pair<std::string, float>> t = {{"<unk>", 0.f}, {"\n<s>\n", 0.f}, {"\n</s>\n", 0.f}};
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        t.push_back({name, 0.f});
    }
    t.insert(t.end(), extra.begin(), extra.end());
    return t;
}

struct RefTok {
    std::vector<std::string> vocab;
    std::vector<float> scores;
    std::map<std::string, int> sorted;   // run.c: sorted vocab + bsearch
};

RefTok read_ref(const std::string& path) {
    std::string b = read_file(path);
    RefTok t;
    size_t off = 4;
    while (off + 8 <= b.size()) {
        float s;
        int32_t len;
        std::memcpy(&s, b.data() + off, 4);
        std::memcpy(&len, b.data() + off + 4, 4);
        off += 8;
        t.vocab.emplace_back(b.data() + off, size_t(len));
        t.scores.push_back(s);
        off += size_t(len);
    }
    for (size_t i = 0; i < t.vocab.size(); ++i) t.sorted.emplace(t.vocab[i], int(i));
    return t;
}

int ref_lookup(const RefTok& t, const std::string& s) {
    auto it = t.sorted.find(s);
    return it == t.sorted.end() ? -1 : it->second;
}

// karpathy/llama2.c run.c encode(), transcribed: rescans every adjacent pair each round.
std::vector<int> ref_encode(const RefTok& t, const std::string& text, bool bos, bool eos) {
    std::vector<int> tokens;
    if (bos) tokens.push_back(1);
    if (!text.empty()) tokens.push_back(ref_lookup(t, " "));
    std::string buf;
    const char* c = text.c_str();
    for (; *c != '\0'; c++) {
        if ((*c & 0xC0) != 0x80) buf.clear();
        buf += *c;
        if ((*(c + 1) & 0xC0) == 0x80 && buf.size() < 4) continue;
        int id = ref_lookup(t, buf);
        if (id != -1) tokens.push_back(id);
        else
            for (unsigned char ch : buf) tokens.push_back(int(ch) + 3);
        buf.clear();
    }
    while (true) {
        float best_score = -1e10f;
        int best_id = -1, best_idx = -1;
        for (size_t i = 0; i + 1 < tokens.size(); i++) {
            int id = ref_lookup(t, t.vocab[size_t(tokens[i])] + t.vocab[size_t(tokens[i + 1])]);
            if (id != -1 && t.scores[size_t(id)] > best_score) {
                best_score = t.scores[size_t(id)];
                best_id = id;
                best_idx = int(i);
            }
        }
        if (best_idx == -1) break;
        tokens[size_t(best_idx)] = best_id;
        tokens.erase(tokens.begin() + best_idx + 1);
    }
    if (eos) tokens.push_back(2);
    return tokens;
}

// ---- Hugging Face byte-level BPE files ----

// GPT-2 bytes_to_unicode, written independently of the engine's table.
std::string byte_char(int b) {
    std::vector<int> bs;
    for (int i = '!'; i <= '~'; ++i) bs.push_back(i);
    for (int i = 0xA1; i <= 0xAC; ++i) bs.push_back(i);
    for (int i = 0xAE; i <= 0xFF; ++i) bs.push_back(i);
    std::vector<int> cs = bs;
    int n = 0;
    for (int i = 0; i < 256; ++i)
        if (std::find(bs.begin(), bs.end(), i) == bs.end()) {
            bs.push_back(i);
            cs.push_back(256 + n++);
        }
    int cp = cs[size_t(std::find(bs.begin(), bs.end(), b) - bs.begin())];
    return QString(QChar{char16_t(cp)}).toStdString();
}

// A byte-level string: "Ġthe" for " the".
std::string bl(const std::string& raw) {
    std::string s;
    for (unsigned char c : raw) s += byte_char(c);
    return s;
}

// tokenizer.json: ids 0..255 = the 256 byte characters in byte order, then `words` (raw text),
// merges (raw "a b" pairs, turned into byte-level), added tokens after that.
struct HfSpec {
    std::vector<std::string> words;
    std::vector<std::pair<std::string, std::string>> merges;
    std::vector<std::string> added;
    json pre_tokenizer = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
    bool array_merges = false;
};

int word_id(const HfSpec& s, const std::string& w) {
    if (w.size() == 1) return int(uint8_t(w[0]));
    for (size_t i = 0; i < s.words.size(); ++i)
        if (s.words[i] == w) return 256 + int(i);
    for (size_t i = 0; i < s.added.size(); ++i)
        if (s.added[i] == w) return 256 + int(s.words.size() + i);
    return -1000000;
}

std::string hf_json(const HfSpec& s) {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
    for (size_t i = 0; i < s.words.size(); ++i) vocab[bl(s.words[i])] = 256 + int(i);
    json merges = json::array();
    for (auto& [a, b] : s.merges) {
        if (s.array_merges) merges.push_back(json::array({bl(a), bl(b)}));
        else merges.push_back(bl(a) + " " + bl(b));
    }
    json added = json::array();
    for (size_t i = 0; i < s.added.size(); ++i) {
        int id = 256 + int(s.words.size() + i);
        added.push_back({{"id", id}, {"content", s.added[i]}, {"special", true}});
        vocab[s.added[i]] = id;
    }
    json j = {{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", s.pre_tokenizer},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
    return j.dump(1);
}

std::string write_hf(const HfSpec& s, const std::string& tag, const std::string& config = "") {
    std::string dir = loftq::test::make_temp_dir(tag);
    write_file(dir + "/tokenizer.json", hf_json(s));
    if (!config.empty()) write_file(dir + "/tokenizer_config.json", config);
    return dir + "/tokenizer.json";
}

const char* kStory = "Once upon a time, there was a little girl named Lily.";

std::vector<std::string> varied_texts() {
    return {"",
            "a",
            " ",
            "Hello, world!",
            " leading space",
            "  two leading spaces",
            "trailing space ",
            "multiple   inner    spaces",
            "tab\there",
            "new\nline and\n\nblank line",
            "\nstarts with a newline",
            "ends with a newline\n",
            "CRLF\r\nline",
            "It's 2024 -- don't panic: 3.14159 x 42 = 131.95 (approx.)",
            "Ünïcödé façade naïve café",
            "日本語のテキスト、中文文本。",
            "emoji 🙂🚀 and ZWJ 👩‍💻 family",
            "Ελληνικά Русский עברית العربية",
            "math ∑ x² ≤ ∞ and nbsp\u00a0here",
            "<unk> <s> </s> literal markers",
            "<0x41> looks like a byte piece"};
}

}  // namespace

class TestTokenizer : public QObject {
    Q_OBJECT

    std::string shared_;
    std::string tok512_, tok32k_bin_, tok32k_model_;

    std::vector<std::string> corpus() {
        // TinyStories lines, the first 200 WikiText-2 test lines (with their leading spaces), and
        // 50 GSM8K questions and answers.
        std::vector<std::string> texts = read_lines(shared_ + "/data/tinystories/sample.txt", 200);
        for (auto& l : read_lines(shared_ + "/data/wikitext2/wiki.test.raw", 200)) texts.push_back(l);
        for (auto& l : read_lines(shared_ + "/data/gsm8k/train.jsonl", 50)) {
            json j = json::parse(l);
            texts.push_back(j["question"].get<std::string>());
            texts.push_back(j["answer"].get<std::string>());
        }
        return texts;
    }

private slots:
    void initTestCase() {
        shared_ = loftq::test::shared_dir();
        if (!shared_.empty()) {
            tok512_ = shared_ + "/models/stories260K/tok512.bin";
            tok32k_bin_ = shared_ + "/models/llama2-tokenizer-32k/tokenizer.bin";
            tok32k_model_ = shared_ + "/models/llama2-tokenizer-32k/tokenizer.model";
        }
    }

    // ---- llama2.c, synthetic ----
    void llama2cSyntheticMerges() {
        // ids: 259 " ", 260 a, 261 b, 262 c, 263 " a", 264 ab, 265 bc, 266 abc, 267 x, 268 y,
        // 269 z, 270 xy, 271 yz, 272 cc (score below run.c's -1e10 floor: never merged)
        auto toks = llama2c_base({{" ", -100.f}, {"a", -100.f}, {"b", -100.f}, {"c", -100.f}, {" a", -5.f},
                                  {"ab", -1.f}, {"bc", -0.5f}, {"abc", -2.f}, {"x", -100.f}, {"y", -100.f},
                                  {"z", -100.f}, {"xy", -1.f}, {"yz", -1.f}, {"cc", -2e10f}});
        std::string dir = loftq::test::make_temp_dir("tok-l2c");
        write_file(dir + "/tok300.bin", llama2c_bytes(toks));
        auto t = load_tokenizer(dir + "/tok300.bin");
        QCOMPARE(t->kind(), std::string("llama2c"));
        QCOMPARE(t->vocab_size(), 273);
        QCOMPARE(t->bos_id(), 1);
        QCOMPARE(t->eos_id(), 2);
        // " abc": bc (-0.5) beats ab (-1) and " a" (-5); then abc (-2) beats " a" (-5).
        QCOMPARE(t->encode("abc", false, false), (std::vector<int>{259, 266}));
        QCOMPARE(t->encode("abc", true, true), (std::vector<int>{1, 259, 266, 2}));
        // "xyz": xy and yz tie at -1: the leftmost pair merges first.
        QCOMPARE(t->encode("xyz", false, false), (std::vector<int>{259, 270, 269}));
        // byte fallback: é = C3 A9 is not a token.
        QCOMPARE(t->encode("aé", false, false), (std::vector<int>{263, 0xC3 + 3, 0xA9 + 3}));
        QCOMPARE(t->decode(t->encode("aé", false, false)), std::string("aé"));
        QCOMPARE(t->encode("cc", false, false), (std::vector<int>{259, 262, 262}));
        QCOMPARE(t->encode("", true, false), (std::vector<int>{1}));
        // decode: leading space dropped at the start and after BOS, kept elsewhere.
        QCOMPARE(t->decode({259, 263, 260, 263}), std::string(" aa a"));   // " " -> "" (start), " a" kept
        QCOMPARE(t->decode({1, 263, 2, 1, 263}), std::string("aa"));
        QCOMPARE(t->piece(1, 263), std::string("a"));
        QCOMPARE(t->piece(260, 263), std::string(" a"));
        QCOMPARE(t->piece(260, 1), std::string());
        QCOMPARE(t->piece(260, 0x41 + 3), std::string("A"));
        // The reference agrees on all of the above and on longer strings.
        RefTok ref = read_ref(dir + "/tok300.bin");
        for (std::string s : {"abc", "xyz", "aé", "cc", "abcabc xyzzy ab  c", "zyx cab bac", "aaaa bbbb cccc"})
            QCOMPARE(t->encode(s, true, false), ref_encode(ref, s, true, false));
    }

    // ---- llama2.c, real tok512.bin ----
    void llama2cStoryTok512() {
        if (shared_.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): tok512.bin not tested");
        auto t = load_tokenizer(tok512_);
        QCOMPARE(t->kind(), std::string("llama2c"));
        QCOMPARE(t->vocab_size(), 512);
        std::vector<int> ids = t->encode(kStory, true, false);
        QCOMPARE(ids.front(), 1);
        QVERIFY(ids.size() > 10 && ids.size() < 60);
        for (int id : ids) QVERIFY(id >= 0 && id < 512);
        QCOMPARE(t->decode(ids), std::string(kStory));
        QCOMPARE(t->decode(t->encode(kStory, false, true)), std::string(kStory));
        std::string pieces;
        for (size_t i = 1; i < ids.size(); ++i) pieces += t->piece(ids[i - 1], ids[i]);
        QCOMPARE(pieces, std::string(kStory));
        qInfo("tok512 story: %zu tokens %s", ids.size(), ids_str(ids).c_str());

        // Found beside the model file and in the folder.
        auto t2 = load_tokenizer(shared_ + "/models/stories260K/stories260K.bin");
        QCOMPARE(t2->kind(), std::string("llama2c"));
        QCOMPARE(t2->vocab_size(), 512);
        QCOMPARE(t2->encode(kStory, true, false), ids);
        auto t3 = load_tokenizer(shared_ + "/models/stories260K");
        QCOMPARE(t3->vocab_size(), 512);
    }

    void llama2cByteFallbackTok512() {
        if (shared_.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): tok512.bin not tested");
        auto t = load_tokenizer(tok512_);
        const std::string text = "Lily saw 🙂 and 世界!";
        std::vector<int> ids = t->encode(text, false, false);
        const std::vector<int> smile = {0xF0 + 3, 0x9F + 3, 0x99 + 3, 0x82 + 3};
        QVERIFY2(std::search(ids.begin(), ids.end(), smile.begin(), smile.end()) != ids.end(), ids_str(ids).c_str());
        const std::string shi = "世";   // E4 B8 96
        const std::vector<int> shi_ids = {0xE4 + 3, 0xB8 + 3, 0x96 + 3};
        QVERIFY2(std::search(ids.begin(), ids.end(), shi_ids.begin(), shi_ids.end()) != ids.end(), ids_str(ids).c_str());
        QCOMPARE(t->decode(ids), text);
        RefTok ref = read_ref(tok512_);
        QCOMPARE(ids, ref_encode(ref, text, false, false));
        for (const auto& s : varied_texts()) QCOMPARE(t->decode(t->encode(s, true, true)), s);
    }

    // The O(n log n) encoder against run.c's literal O(n^2) loop.
    void llama2cMatchesRunC() {
        if (shared_.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): llama2.c tokenizers not tested");
        // Sentences of the corpus (the reference is quadratic), plus the edge cases.
        std::vector<std::string> texts = varied_texts();
        for (const auto& line : corpus()) {
            size_t pos = 0;
            while (pos < line.size() && texts.size() < 600) {
                size_t e = line.find(". ", pos);
                e = e == std::string::npos ? line.size() : e + 2;
                texts.push_back(line.substr(pos, e - pos));
                pos = e;
            }
        }
        for (const std::string& path : {tok512_, tok32k_bin_}) {
            auto t = load_tokenizer(path);
            RefTok ref = read_ref(path);
            int n = 0;
            for (const auto& s : texts) {
                auto a = t->encode(s, true, true), b = ref_encode(ref, s, true, true);
                QVERIFY2(a == b, (path + ": '" + s + "': " + ids_str(a) + " vs run.c " + ids_str(b)).c_str());
                ++n;
            }
            qInfo("%s: %d texts identical to run.c's encode", fs::path(path).filename().c_str(), n);
        }
    }

    // ---- the independent check: llama2.c encoder vs libsentencepiece on the same 32k vocab ----
    void llama2cMatchesSentencePiece() {
        if (shared_.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): 32k tokenizer not tested");
        auto l2 = load_tokenizer(tok32k_bin_);
        auto sp = load_tokenizer(tok32k_model_);
        QCOMPARE(l2->kind(), std::string("llama2c"));
        QCOMPARE(sp->kind(), std::string("sentencepiece"));
        QCOMPARE(l2->vocab_size(), 32000);
        QCOMPARE(sp->vocab_size(), 32000);
        QCOMPARE(sp->bos_id(), 1);
        QCOMPARE(sp->eos_id(), 2);
        std::vector<std::string> texts = corpus();
        const size_t n_corpus = texts.size();
        for (const auto& s : varied_texts()) texts.push_back(s);
        // No exception is needed: on this vocabulary the two agree everywhere tried, including
        // leading/multiple spaces, newlines, byte fallback and literal "<unk>" / "<0x41>" text.
        // (A vocabulary with pieces such as "<unk" could differ: run.c's loop merges piece text,
        // so it could rebuild the <unk> or a byte token from text, which SentencePiece never does.)
        int same = 0;
        int64_t tokens = 0;
        for (size_t i = 0; i < texts.size(); ++i) {
            const std::string& s = texts[i];
            auto a = l2->encode(s, true, true), b = sp->encode(s, true, true);
            tokens += int64_t(b.size());
            QVERIFY2(a == b, ("'" + s + "': llama2c " + ids_str(a) + " vs sentencepiece " + ids_str(b)).c_str());
            ++same;
            // Decoding: each tokenizer gives the text back, and both decode the same ids alike.
            QCOMPARE(l2->decode(a), s);
            QCOMPARE(sp->decode(a), s);
            std::string pieces_l2, pieces_sp;
            for (size_t k = 1; k < a.size(); ++k) {
                pieces_l2 += l2->piece(a[k - 1], a[k]);
                pieces_sp += sp->piece(a[k - 1], a[k]);
            }
            QCOMPARE(pieces_l2, s);
            QCOMPARE(pieces_sp, s);
        }
        QCOMPARE(same, int(texts.size()));
        QVERIFY(n_corpus >= 300);
        qInfo("32k: %d texts (%lld tokens) identical ids llama2.c vs sentencepiece", same, (long long)tokens);
        // Several documents in one id stream decode as run.c does (space dropped after each BOS).
        std::vector<int> two = l2->encode("One day.", true, false), b2 = l2->encode("Two cats.", true, true);
        two.insert(two.end(), b2.begin(), b2.end());
        QCOMPARE(l2->decode(two), std::string("One day.Two cats."));
        QCOMPARE(sp->decode(two), std::string("One day.Two cats."));
    }

    // Random strings over an alphabet rich in the cases where the two could part: runs of
    // spaces, newlines, tabs, multibyte and 4-byte characters, "<", ">", digits.
    void llama2cMatchesSentencePieceRandom() {
        if (shared_.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): 32k tokenizer not tested");
        auto l2 = load_tokenizer(tok32k_bin_);
        auto sp = load_tokenizer(tok32k_model_);
        const std::vector<std::string> alphabet = {" ", " ", " ", "  ", "\n", "\t", "\r", "a", "e", "t", "h", "the",
                                                   " the", "ing", "Q", "x", "0", "7", "42", ".", ",", "'", "\"", "-",
                                                   "<", ">", "unk", "0x", "é", "ß", "世", "界", "🙂", "€", "\u00a0"};
        uint64_t st = 12345;
        int checked = 0;
        for (int i = 0; i < 3000; ++i) {
            std::string s;
            int len = int(loftq::splitmix64(st) % 24);
            for (int k = 0; k < len; ++k) s += alphabet[loftq::splitmix64(st) % alphabet.size()];
            auto a = l2->encode(s, true, false), b = sp->encode(s, true, false);
            QVERIFY2(a == b, ("'" + s + "': llama2c " + ids_str(a) + " vs sentencepiece " + ids_str(b)).c_str());
            QCOMPARE(l2->decode(a), s);
            ++checked;
        }
        qInfo("32k: %d random strings identical", checked);
        // The one difference found: a literal U+2581 ("▁", SentencePiece's escaped space) in the
        // text. SentencePiece reads it as a space (and decodes it to " "); llama2.c's vocab holds
        // " " where the model has "▁", so "▁" is unknown there and falls back to its 3 bytes.
        const std::string lower_block = "a" "\xE2\x96\x81" "b";
        auto a = l2->encode(lower_block, false, false), b = sp->encode(lower_block, false, false);
        QCOMPARE(a, (std::vector<int>{263, 0xE2 + 3, 0x96 + 3, 0x81 + 3, 29890}));   // " a" <E2> <96> <81> b
        QCOMPARE(b, sp->encode("a b", false, false));
        QCOMPARE(l2->decode(a), lower_block);
        QCOMPARE(sp->decode(b), std::string("a b"));
    }

    // Encoding speed (printed, not asserted).
    // Speed is reported (a benchmark number, never asserted); what is asserted is that repeated
    // encodes agree and round-trip.
    void encodeSpeed() {
        if (shared_.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): speed not measured");
        const std::string text = read_file(shared_ + "/data/tinystories/sample.txt");
        for (const std::string& path : {tok512_, tok32k_bin_, tok32k_model_}) {
            auto t = load_tokenizer(path);
            size_t n = 0;
            int reps = 0;
            auto t0 = std::chrono::steady_clock::now();
            double sec = 0;
            const std::vector<int> first = t->encode(text, true, false);
            while (sec < 0.3) {
                const std::vector<int> ids = t->encode(text, true, false);
                QVERIFY(ids == first);   // deterministic, whatever the caches hold after earlier calls
                n += ids.size();
                ++reps;
                sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            }
            // Every id is in the vocabulary, and the text comes back (byte fallback: lossless).
            for (int id : first) QVERIFY(id >= 0 && id < t->vocab_size());
            QCOMPARE(t->decode(first), text);
            qInfo("encode sample.txt (%zu bytes) with %s (%s): %zu tokens, %.2f M tokens/s, %.1f MB/s", text.size(),
                  fs::path(path).filename().c_str(), t->kind().c_str(), n / size_t(reps), double(n) / sec / 1e6,
                  double(text.size()) * reps / sec / 1e6);
        }
    }

    // ---- Hugging Face byte-level BPE ----
    void hfMergeOrder() {
        HfSpec s;
        s.words = {"ab", "bc"};
        s.merges = {{"a", "b"}, {"b", "c"}};
        auto t = load_tokenizer(write_hf(s, "hf-order1"));
        QCOMPARE(t->kind(), std::string("hf-bpe"));
        QCOMPARE(t->vocab_size(), 258);
        QCOMPARE(t->encode("abc", false, false), (std::vector<int>{256, 'c'}));
        s.merges = {{"b", "c"}, {"a", "b"}};   // the other rank order
        auto t2 = load_tokenizer(write_hf(s, "hf-order2"));
        QCOMPARE(t2->encode("abc", false, false), (std::vector<int>{'a', 257}));
        s.array_merges = true;                 // [a, b] pairs instead of "a b"
        auto t3 = load_tokenizer(write_hf(s, "hf-order3"));
        QCOMPARE(t3->encode("abc", false, false), (std::vector<int>{'a', 257}));
        // Same pair twice: leftmost first ("aaa" -> "aa" "a").
        HfSpec r;
        r.words = {"aa"};
        r.merges = {{"a", "a"}};
        auto t4 = load_tokenizer(write_hf(r, "hf-order4"));
        QCOMPARE(t4->encode("aaa", false, false), (std::vector<int>{256, 'a'}));
        QCOMPARE(t4->encode("aaaa", false, false), (std::vector<int>{256, 256}));
    }

    void hfGpt2Split() {
        HfSpec s;
        s.words = {" t", "he", " the", "  ", "'t", "n'", " d"};
        s.merges = {{" ", "t"}, {"h", "e"}, {" t", "he"}, {" ", " "}, {"'", "t"}, {"n", "'"}};
        auto t = load_tokenizer(write_hf(s, "hf-gpt2"));
        auto id = [&](const std::string& w) { return word_id(s, w); };
        // Chunks: "the" " the" " " " the" " don" "'t" (the 2-space run leaves its last space to
        // the next word; "n'" never merges across the contraction split; " d" is not a merge).
        QCOMPARE(t->encode("the the  the don't", false, false),
                 (std::vector<int>{'t', id("he"), id(" the"), ' ', id(" the"), ' ', 'd', 'o', 'n', id("'t")}));
        // Whitespace at the end stays one chunk: "  " merges; "\n" is its own chunk.
        QCOMPARE(t->encode("a  ", false, false), (std::vector<int>{'a', id("  ")}));
        QCOMPARE(t->encode("a\n the", false, false), (std::vector<int>{'a', '\n', id(" the")}));
        // Numbers and punctuation split from letters: " 42" and "!?" are chunks of their own.
        QCOMPARE(t->encode("he42!?", false, false), (std::vector<int>{id("he"), '4', '2', '!', '?'}));
        QCOMPARE(t->decode(t->encode("the the  the don't", false, false)), std::string("the the  the don't"));
        QCOMPARE(t->bos_id(), -1);
        QCOMPARE(t->eos_id(), -1);
    }

    void hfLlama3AndQwen2Split() {
        HfSpec s;
        s.words = {"34", "12"};
        s.merges = {{"3", "4"}, {"1", "2"}};
        auto gpt2 = load_tokenizer(write_hf(s, "hf-digits-gpt2"));
        QCOMPARE(gpt2->encode("12345", false, false), (std::vector<int>{256 + 1, 256, '5'}));
        const std::string l3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
        s.pre_tokenizer = {{"type", "Sequence"},
                           {"pretokenizers",
                            {{{"type", "Split"}, {"pattern", {{"Regex", l3}}}, {"behavior", "Isolated"}, {"invert", false}},
                             {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
        auto llama3 = load_tokenizer(write_hf(s, "hf-digits-l3"));
        // \p{N}{1,3}: "123" "45" -> "3 4" cannot merge across the split.
        QCOMPARE(llama3->encode("12345", false, false), (std::vector<int>{256 + 1, '3', '4', '5'}));
        // "[^\r\n\p{L}\p{N}]?\p{L}+": "(hi" is one chunk; "\n\n" stays together.
        QCOMPARE(llama3->decode(llama3->encode("(hi) 12345\n\n  x", false, false)), std::string("(hi) 12345\n\n  x"));
        std::string q2 = l3;
        q2.replace(q2.find("\\p{N}{1,3}"), 10, "\\p{N}");
        s.pre_tokenizer["pretokenizers"][0]["pattern"]["Regex"] = q2;
        auto qwen2 = load_tokenizer(write_hf(s, "hf-digits-q2"));
        QCOMPARE(qwen2->encode("12345", false, false), (std::vector<int>{'1', '2', '3', '4', '5'}));
    }

    void hfSpecialTokensAndBosEos() {
        HfSpec s;
        s.words = {"he"};
        s.merges = {{"h", "e"}};
        s.added = {"<|endoftext|>", "<|im_start|>", "<|im_start|>x"};
        // GPT-2 style: no tokenizer_config.json -> eos <|endoftext|>, no bos.
        auto t = load_tokenizer(write_hf(s, "hf-special"));
        const int eot = 257, ims = 258, imsx = 259;
        QCOMPARE(t->vocab_size(), 260);
        QCOMPARE(t->bos_id(), -1);
        QCOMPARE(t->eos_id(), eot);
        QCOMPARE(t->encode("hi<|endoftext|>there", false, false),
                 (std::vector<int>{'h', 'i', eot, 't', 256, 'r', 'e'}));
        // Longest added token wins; added tokens are matched before BPE and decode verbatim.
        QCOMPARE(t->encode("<|im_start|>x<|im_start|>", false, true), (std::vector<int>{imsx, ims, eot}));
        QCOMPARE(t->decode({ims, 'h', 'i'}), std::string("<|im_start|>hi"));
        QCOMPARE(t->encode("he", true, true), (std::vector<int>{256, eot}));
        // tokenizer_config.json decides.
        auto t2 = load_tokenizer(write_hf(s, "hf-special-cfg",
                                          R"({"bos_token": {"content": "<|im_start|>"}, "eos_token": "<|endoftext|>"})"));
        QCOMPARE(t2->bos_id(), ims);
        QCOMPARE(t2->eos_id(), eot);
        QCOMPARE(t2->encode("he", true, true), (std::vector<int>{ims, 256, eot}));
        QCOMPARE(t2->decode({ims, 256, eot}), std::string("he"));
        auto t3 = load_tokenizer(write_hf(s, "hf-special-null", R"({"bos_token": null, "eos_token": "<|im_start|>"})"));
        QCOMPARE(t3->bos_id(), -1);
        QCOMPARE(t3->eos_id(), ims);
        // Llama-style names without a config.
        HfSpec l;
        l.added = {"<s>", "</s>"};
        auto t4 = load_tokenizer(write_hf(l, "hf-special-s"));
        QCOMPARE(t4->bos_id(), 256);
        QCOMPARE(t4->eos_id(), 257);
    }

    void hfRoundTrip() {
        HfSpec s;
        s.words = {" t", "he", " the", "in", "ing", " a", "an", " an", "nd", " and", "Ã", "\xC3\xA9", "  ", "e\xCC"};
        s.merges = {{" ", "t"}, {"h", "e"}, {" t", "he"}, {"i", "n"}, {"in", "g"}, {" ", "a"}, {"a", "n"},
                    {" a", "n"}, {"n", "d"}, {" an", "d"}, {"\xC3", "\xA9"}, {" ", " "}};
        auto t = load_tokenizer(write_hf(s, "hf-rt"));
        std::vector<std::string> texts = varied_texts();
        texts.push_back("invalid UTF-8 \xFF\xFE bytes \xC3 alone");
        texts.push_back(std::string("nul \0 inside", 12));
        for (const auto& x : texts) {
            auto ids = t->encode(x, false, false);
            QVERIFY2(t->decode(ids) == x, ("'" + x + "' -> " + ids_str(ids)).c_str());
            std::string pieces;
            for (size_t k = 0; k < ids.size(); ++k) pieces += t->piece(k ? ids[k - 1] : -1, ids[k]);
            QCOMPARE(pieces, x);
        }
        // é (C3 A9) merges into one token; "the and" uses the merged words.
        QCOMPARE(t->encode("é", false, false), (std::vector<int>{word_id(s, "\xC3\xA9")}));
        QCOMPARE(t->encode(" the and", false, false), (std::vector<int>{word_id(s, " the"), word_id(s, " and")}));
        // add_prefix_space: "the" is encoded as " the".
        s.pre_tokenizer["add_prefix_space"] = true;
        auto tp = load_tokenizer(write_hf(s, "hf-rt-prefix"));
        QCOMPARE(tp->encode("the", false, false), (std::vector<int>{word_id(s, " the")}));
    }

    // ---- errors ----
    void errorsNameTheFile() {
        std::string dir = loftq::test::make_temp_dir("tok-err");
        EXPECT_ERROR(load_tokenizer(dir + "/missing.bin"), "missing.bin", "no such file");
        EXPECT_ERROR(load_tokenizer(""), "no tokenizer path");
        // A folder / model file with nothing beside it: what was looked for.
        EXPECT_ERROR(load_tokenizer(dir), "no tokenizer found", "tokenizer.json", "tokenizer.model", "tokenizer.bin",
                     "tok*.bin", dir);
        write_file(dir + "/model.safetensors", std::string(100, 'x'));
        EXPECT_ERROR(load_tokenizer(dir + "/model.safetensors"), "model.safetensors", "no tokenizer found", "tok*.bin");
        // Truncated llama2.c tokenizer: file and token index.
        auto toks = llama2c_base({{"ab", -1.f}, {"abc", -2.f}});
        std::string bytes = llama2c_bytes(toks);
        write_file(dir + "/tok261.bin", bytes.substr(0, bytes.size() - 2));
        EXPECT_ERROR(load_tokenizer(dir + "/tok261.bin"), "tok261.bin", "truncated", "token 260");
        write_file(dir + "/tok261.bin", bytes.substr(0, bytes.size() - 6));   // inside the 8-byte header
        EXPECT_ERROR(load_tokenizer(dir + "/tok261.bin"), "tok261.bin", "truncated", "token 260");
        std::string bad = bytes;
        int32_t neg = -5;
        std::memcpy(bad.data() + 4 + 4, &neg, 4);   // token 0's length
        write_file(dir + "/tokenizer.bin", bad);
        EXPECT_ERROR(load_tokenizer(dir + "/tokenizer.bin"), "tokenizer.bin", "token 0", "length -5");
        write_file(dir + "/tokenizer.bin", std::string("\xff\xff\xff\xff", 4) + "garbage");
        EXPECT_ERROR(load_tokenizer(dir + "/tokenizer.bin"), "tokenizer.bin", "max_token_length");
        // The folder search reports the broken file when nothing else loads.
        EXPECT_ERROR(load_tokenizer(dir), "tokenizer.bin");
        // Not a SentencePiece model.
        write_file(dir + "/tokenizer.model", "this is not protobuf");
        EXPECT_ERROR(load_tokenizer(dir + "/tokenizer.model"), "tokenizer.model", "not a SentencePiece model");
        write_file(dir + "/tokenizer.model", std::string("\x0a\x05hello\x12\xff", 9));
        EXPECT_ERROR(load_tokenizer(dir + "/tokenizer.model"), "tokenizer.model");
        // tokenizer.json: bad JSON, other model types, other pre-tokenizers.
        write_file(dir + "/tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
        EXPECT_ERROR(load_tokenizer(dir + "/tokenizer.json"), "tokenizer.json", "invalid JSON");
        write_file(dir + "/tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
        EXPECT_ERROR(load_tokenizer(dir + "/tokenizer.json"), "tokenizer.json", "WordPiece", "not supported");
        write_file(dir + "/tokenizer.json",
                   R"({"pre_tokenizer": {"type": "Metaspace"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
        EXPECT_ERROR(load_tokenizer(dir + "/tokenizer.json"), "tokenizer.json", "Metaspace", "tokenizer.model");
    }

    // A Llama 2 HF folder: SentencePiece-style tokenizer.json beside tokenizer.model -> the latter.
    void folderPrefersWorkingTokenizer() {
        if (shared_.empty()) QSKIP("../shared not found (set LOFTQ_SHARED_DIR): folder fallback not tested");
        std::string dir = loftq::test::make_temp_dir("tok-folder");
        write_file(dir + "/tokenizer.json",
                   R"({"pre_tokenizer": {"type": "Metaspace"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
        write_file(dir + "/tokenizer.model", read_file(tok32k_model_));
        write_file(dir + "/config.json", "{\"model_type\": \"llama\"}");
        auto t = load_tokenizer(dir);
        QCOMPARE(t->kind(), std::string("sentencepiece"));
        auto t2 = load_tokenizer(dir + "/config.json");
        QCOMPARE(t2->kind(), std::string("sentencepiece"));
        // A llama2.c checkpoint takes its tok<vocab>.bin even beside another tokenizer.bin.
        std::string l2dir = loftq::test::make_temp_dir("tok-l2c-folder");
        write_file(l2dir + "/stories260K.bin", read_file(shared_ + "/models/stories260K/stories260K.bin"));
        write_file(l2dir + "/tokenizer.bin", read_file(tok32k_bin_));
        write_file(l2dir + "/tok512.bin", read_file(tok512_));
        QCOMPARE(load_tokenizer(l2dir + "/stories260K.bin")->vocab_size(), 512);
        QCOMPARE(load_tokenizer(l2dir)->vocab_size(), 32000);
        // A truncated copy of the real tok512.bin names the file and the token.
        std::string b = read_file(tok512_);
        write_file(dir + "/tok512.bin", b.substr(0, 3000));
        EXPECT_ERROR(load_tokenizer(dir + "/tok512.bin"), "tok512.bin", "truncated", "token ");
    }
};

QTEST_MAIN(TestTokenizer)
#include "test_tokenizer.moc"
