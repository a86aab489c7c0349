// tokenizer_hf_bpe.cpp: a Hugging Face tokenizer.json whose model is byte-level BPE (GPT-2,
// Qwen2, Llama 3 style): added tokens matched verbatim first, then the pre-tokenizer split, each
// piece's bytes mapped through GPT-2's bytes_to_unicode, then BPE merges by rank (lowest first,
// leftmost on ties), then the vocabulary. Decode maps the byte-level characters back to bytes.
//
// Pre-tokenizer: ByteLevel(use_regex) = GPT-2's split regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// or a Sequence [Split(regex), ByteLevel(use_regex=false)] whose regex is Llama 3's / Qwen2's
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+          (Qwen2: \p{N} instead of \p{N}{1,3})
// both by hand-written scanners. Character classes are approximated: ASCII letters/digits as
// usual, Unicode White_Space as \s, every other non-ASCII code point counts as a letter.
// bos/eos: tokenizer_config.json beside the file ("bos_token", "eos_token": a string or
// {"content": ...}, null = none), else the usual added-token names.
// Leaves out: normalizers (Qwen2's NFC), post-processor templates, added-token lstrip/rstrip/
// single_word flags, dropout, SentencePiece-style (Metaspace, byte_fallback) tokenizer.json.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "core/fsutil.h"
#include "train/tokenizer_formats.h"

namespace loftq {
namespace {

using json = nlohmann::json;

enum class Split { None, Gpt2, Llama3, Qwen2 };
enum class Cat { Letter, Number, Space, Other };

bool is_unicode_space(uint32_t c) {
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

Cat category(uint32_t c) {
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return Cat::Letter;
        if (c >= '0' && c <= '9') return Cat::Number;
        if (c == ' ' || (c >= '\t' && c <= '\r')) return Cat::Space;
        return Cat::Other;
    }
    return is_unicode_space(c) ? Cat::Space : Cat::Letter;
}

void append_utf8(std::string& s, uint32_t c) {
    if (c < 0x80) {
        s += char(c);
    } else if (c < 0x800) {
        s += char(0xC0 | (c >> 6));
        s += char(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        s += char(0xE0 | (c >> 12));
        s += char(0x80 | ((c >> 6) & 0x3F));
        s += char(0x80 | (c & 0x3F));
    } else {
        s += char(0xF0 | (c >> 18));
        s += char(0x80 | ((c >> 12) & 0x3F));
        s += char(0x80 | ((c >> 6) & 0x3F));
        s += char(0x80 | (c & 0x3F));
    }
}

// Decodes one code point at s[i] (lenient: an invalid byte is U+FFFD, length 1).
uint32_t next_cp(std::string_view s, size_t i, size_t& len) {
    const uint8_t c = uint8_t(s[i]);
    int n = utf8_len(c);
    if (n == 1 || i + size_t(n) > s.size()) {
        len = 1;
        return c < 0x80 ? c : 0xFFFD;
    }
    uint32_t cp = c & (0xFF >> (n + 1));
    for (int k = 1; k < n; ++k) {
        const uint8_t d = uint8_t(s[i + size_t(k)]);
        if ((d & 0xC0) != 0x80) {
            len = 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (d & 0x3F);
    }
    len = size_t(n);
    return cp;
}

// GPT-2 bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards.
struct ByteMap {
    uint32_t to_cp[256];
    int16_t to_byte[512];
    ByteMap() {
        std::fill(std::begin(to_byte), std::end(to_byte), int16_t(-1));
        int n = 0;
        for (int b = 0; b < 256; ++b) {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            to_cp[b] = printable ? uint32_t(b) : uint32_t(256 + n++);
            to_byte[to_cp[b]] = int16_t(b);
        }
    }
};
const ByteMap& byte_map() {
    static const ByteMap m;
    return m;
}

// Pre-tokenizer scanners over code points; each returns the end of the chunk starting at i.
class Scanner {
public:
    Scanner(const std::vector<uint32_t>& cp, Split mode) : cp_(cp), n_(cp.size()), mode_(mode) {}

    size_t next(size_t i) const {
        if (mode_ == Split::Gpt2) return gpt2(i);
        return llama3(i);
    }

private:
    Cat cat(size_t i) const { return category(cp_[i]); }
    size_t run(size_t i, Cat c) const {
        while (i < n_ && cat(i) == c) ++i;
        return i;
    }
    static uint32_t lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }
    size_t contraction(size_t i, bool any_case) const {
        if (cp_[i] != '\'' || i + 1 >= n_) return 0;
        uint32_t a = any_case ? lower(cp_[i + 1]) : cp_[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 >= n_) return 0;
        uint32_t b = any_case ? lower(cp_[i + 2]) : cp_[i + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        return 0;
    }
    // \s+(?!\S) | \s+ at a whitespace character.
    size_t spaces(size_t i) const {
        size_t k = run(i, Cat::Space);
        if (k == n_) return k;
        return k - i >= 2 ? k - 1 : i + 1;
    }
    size_t gpt2(size_t i) const {
        if (size_t e = contraction(i, false)) return e;
        size_t s = (cp_[i] == ' ' && i + 1 < n_) ? i + 1 : i;   //  ?
        Cat c = cat(s);
        if (c != Cat::Space) return run(s, c);                  // \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
        return spaces(i);
    }
    size_t llama3(size_t i) const {
        if (size_t e = contraction(i, true)) return e;
        const uint32_t c0 = cp_[i];
        const Cat c = cat(i);
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (c != Cat::Letter && c != Cat::Number && c0 != '\r' && c0 != '\n' && i + 1 < n_ && cat(i + 1) == Cat::Letter)
            return run(i + 1, Cat::Letter);
        if (c == Cat::Letter) return run(i, Cat::Letter);
        if (c == Cat::Number) {                                  // \p{N}{1,3} (Qwen2: \p{N})
            size_t k = run(i, Cat::Number);
            return std::min(k, i + (mode_ == Split::Qwen2 ? 1 : 3));
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        size_t s = (c0 == ' ' && i + 1 < n_) ? i + 1 : i;
        if (cat(s) == Cat::Other) {
            size_t k = run(s, Cat::Other);
            while (k < n_ && (cp_[k] == '\r' || cp_[k] == '\n')) ++k;
            return k;
        }
        // \s*[\r\n]+
        size_t k = run(i, Cat::Space);
        for (size_t m = k; m > i; --m)
            if (cp_[m - 1] == '\r' || cp_[m - 1] == '\n') return m;
        return spaces(i);
    }

    const std::vector<uint32_t>& cp_;
    size_t n_;
    Split mode_;
};

struct Added {
    std::string content;
    int id;
};

class HfBpeTokenizer final : public Tokenizer {
public:
    std::vector<int> encode(const std::string& text, bool bos, bool eos) const override {
        std::vector<int> out;
        out.reserve(text.size() / 3 + 4);
        if (bos && bos_ >= 0) out.push_back(bos_);
        // Added tokens first (longest match at the earliest position), BPE on the text between.
        size_t seg = 0, i = 0;
        while (i < text.size()) {
            const Added* hit = nullptr;
            for (int a : by_first_[uint8_t(text[i])]) {
                const std::string& c = added_[size_t(a)].content;
                if (text.compare(i, c.size(), c) == 0) {
                    hit = &added_[size_t(a)];
                    break;
                }
            }
            if (!hit) {
                ++i;
                continue;
            }
            encode_plain(std::string_view(text).substr(seg, i - seg), out);
            out.push_back(hit->id);
            i += hit->content.size();
            seg = i;
        }
        encode_plain(std::string_view(text).substr(seg), out);
        if (eos && eos_ >= 0) out.push_back(eos_);
        return out;
    }

    std::string decode(const std::vector<int>& ids) const override {
        std::string out;
        int prev = -1;
        for (int id : ids) {
            out += piece(prev, id);
            prev = id;
        }
        return out;
    }

    std::string piece(int, int id) const override {
        if (id < 0 || id >= vocab_size() || id == bos_ || id == eos_) return {};
        auto a = added_by_id_.find(id);
        if (a != added_by_id_.end()) return added_[size_t(a->second)].content;
        const std::string& t = tokens_[size_t(id)];
        std::string out;
        out.reserve(t.size());
        const ByteMap& bm = byte_map();
        for (size_t i = 0; i < t.size();) {
            size_t len;
            uint32_t cp = next_cp(t, i, len);
            if (cp < 512 && bm.to_byte[cp] >= 0) out += char(bm.to_byte[cp]);
            else out.append(t, i, len);   // not a byte-level character: as it is
            i += len;
        }
        return out;
    }

    int vocab_size() const override { return int(tokens_.size()); }
    int bos_id() const override { return bos_; }
    int eos_id() const override { return eos_; }
    std::string kind() const override { return "hf-bpe"; }

    void load(const std::string& path);

private:
    void encode_plain(std::string_view text, std::vector<int>& out) const {
        if (text.empty()) return;
        std::string prefixed;
        if (add_prefix_space_ && text[0] != ' ') {
            prefixed = " ";
            prefixed.append(text);
            text = prefixed;
        }
        std::vector<uint32_t> cps;
        std::vector<size_t> offs;   // byte offset of each code point, plus the end
        cps.reserve(text.size());
        offs.reserve(text.size() + 1);
        for (size_t i = 0; i < text.size();) {
            size_t len;
            cps.push_back(next_cp(text, i, len));
            offs.push_back(i);
            i += len;
        }
        offs.push_back(text.size());
        if (split_ == Split::None) {
            encode_chunk(text, out);
            return;
        }
        Scanner sc(cps, split_);
        for (size_t i = 0; i < cps.size();) {
            size_t j = sc.next(i);
            if (j <= i) j = i + 1;
            encode_chunk(text.substr(offs[i], offs[j] - offs[i]), out);
            i = j;
        }
    }

    void encode_chunk(std::string_view bytes, std::vector<int>& out) const {
        if (ignore_merges_) {
            std::string s;
            for (char b : bytes) append_utf8(s, byte_map().to_cp[uint8_t(b)]);
            auto it = vocab_.find(s);
            if (it != vocab_.end()) {
                out.push_back(it->second);
                return;
            }
        }
        std::vector<int> sym;
        sym.reserve(bytes.size());
        for (char b : bytes) {
            int id = byte_id_[uint8_t(b)];
            if (id < 0) id = unk_;
            if (id >= 0) sym.push_back(id);
        }
        merge_pairs(sym, [&](int a, int b) {
            MergeCandidate c;
            auto it = merges_.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
            if (it != merges_.end()) {
                c.priority = -double(it->second.first);
                c.merged = it->second.second;
            }
            return c;
        });
        out.insert(out.end(), sym.begin(), sym.end());
    }

    int find_token(const std::string& s) const {
        for (const auto& a : added_)
            if (a.content == s) return a.id;
        auto it = vocab_.find(s);
        return it == vocab_.end() ? -1 : it->second;
    }

    std::unordered_map<std::string, int, StringHash, std::equal_to<>> vocab_;
    std::vector<std::string> tokens_;                               // id -> byte-level text
    std::unordered_map<uint64_t, std::pair<int, int>> merges_;     // (a, b) -> (rank, merged id)
    int byte_id_[256];
    std::vector<Added> added_;
    std::unordered_map<int, int> added_by_id_;                      // id -> index in added_
    std::vector<int> by_first_[256];                                // added_ indices, longest first
    Split split_ = Split::Gpt2;
    bool add_prefix_space_ = false, ignore_merges_ = false;
    int bos_ = -1, eos_ = -1, unk_ = -1;
};

// A token named in tokenizer_config.json: "text" or {"content": "text"}; "" when null/absent.
std::string config_token(const json& cfg, const char* key, bool& present) {
    present = cfg.is_object() && cfg.contains(key);
    if (!present) return {};
    const json& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return {};
}

void HfBpeTokenizer::load(const std::string& path) {
    const std::string bytes = read_text_file(path);
    size_t first = bytes.find_first_not_of(" \t\r\n");
    if (bytes.compare(0, 3, "\xEF\xBB\xBF") == 0) first = bytes.find_first_not_of(" \t\r\n", 3);
    if (first == std::string::npos || bytes[first] != '{')
        throw Error(path, "", "not a tokenizer.json: expected a JSON object");
    json j;
    try {
        j = json::parse(bytes.begin() + long(first), bytes.end());
    } catch (const json::exception& e) {
        throw Error(path, "", std::string("invalid JSON: ") + e.what());
    }
    try {
        if (!j.contains("model") || !j["model"].is_object())
            throw Error(path, "", "no \"model\" object: not a Hugging Face tokenizer.json");
        const json& m = j["model"];
        const std::string type = m.value("type", std::string(m.contains("merges") ? "BPE" : ""));
        if (type != "BPE")
            throw Error(path, "", "model type '" + type + "' is not supported (byte-level BPE only)");
        if (!m.contains("vocab") || !m["vocab"].is_object())
            throw Error(path, "", "model.vocab is missing or not an object");

        // Pre-tokenizer: must be byte-level.
        const json pt = j.value("pre_tokenizer", json());
        bool byte_level = false;
        split_ = Split::None;
        auto byte_level_opts = [&](const json& p) {
            byte_level = true;
            add_prefix_space_ = p.value("add_prefix_space", true);
            if (p.value("use_regex", true) && split_ == Split::None) split_ = Split::Gpt2;
        };
        if (pt.is_object() && pt.value("type", "") == "ByteLevel") {
            byte_level_opts(pt);
        } else if (pt.is_object() && pt.value("type", "") == "Sequence" && pt.contains("pretokenizers")) {
            for (const auto& p : pt["pretokenizers"]) {
                const std::string t = p.value("type", "");
                if (t == "Split" && p.contains("pattern")) {
                    const json& pat = p["pattern"];
                    std::string re = pat.is_object() ? pat.value("Regex", pat.value("String", "")) : "";
                    if (re.find("\\p{N}{1,3}") != std::string::npos) split_ = Split::Llama3;
                    else if (re.find("\\p{N}|") != std::string::npos) split_ = Split::Qwen2;
                    else split_ = Split::Gpt2;   // approximation for other patterns
                } else if (t == "ByteLevel") {
                    byte_level_opts(p);
                }
            }
        }
        if (!byte_level) {
            std::string what = pt.is_null() ? "none" : pt.value("type", "?");
            throw Error(path, "", "pre-tokenizer '" + what + "' is not supported: only byte-level BPE "
                                  "(GPT-2, Qwen2, Llama 3); for a SentencePiece model use its tokenizer.model");
        }
        ignore_merges_ = m.value("ignore_merges", false);

        int max_id = -1;
        for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
            if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 || it.value().get<int64_t>() > (1 << 24))
                throw Error(path, "", "model.vocab['" + it.key() + "'] is not a valid id");
            int id = it.value().get<int>();
            vocab_.emplace(it.key(), id);
            max_id = std::max(max_id, id);
        }
        if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
            for (const auto& a : j["added_tokens"]) {
                if (!a.contains("id") || !a.contains("content")) continue;
                int id = a["id"].get<int>();
                std::string c = a["content"].get<std::string>();
                if (id < 0 || c.empty()) continue;
                added_by_id_[id] = int(added_.size());
                added_.push_back({c, id});
                max_id = std::max(max_id, id);
            }
        }
        tokens_.assign(size_t(max_id + 1), std::string());
        for (const auto& [s, id] : vocab_) tokens_[size_t(id)] = s;
        for (const auto& a : added_)
            if (tokens_[size_t(a.id)].empty()) tokens_[size_t(a.id)] = a.content;
        for (size_t a = 0; a < added_.size(); ++a) by_first_[uint8_t(added_[a].content[0])].push_back(int(a));
        for (auto& b : by_first_)
            std::stable_sort(b.begin(), b.end(), [&](int x, int y) {
                return added_[size_t(x)].content.size() > added_[size_t(y)].content.size();
            });

        const ByteMap& bm = byte_map();
        for (int b = 0; b < 256; ++b) {
            std::string s;
            append_utf8(s, bm.to_cp[b]);
            auto it = vocab_.find(s);
            byte_id_[b] = it == vocab_.end() ? -1 : it->second;
        }
        if (m.contains("unk_token") && m["unk_token"].is_string()) unk_ = find_token(m["unk_token"].get<std::string>());

        if (m.contains("merges") && m["merges"].is_array()) {
            int rank = 0;
            for (const auto& e : m["merges"]) {
                std::string a, b;
                if (e.is_string()) {
                    const std::string s = e.get<std::string>();
                    size_t sp = s.find(' ');
                    if (sp == std::string::npos)
                        throw Error(path, "", "model.merges[" + std::to_string(rank) + "] '" + s + "' is not \"a b\"");
                    a = s.substr(0, sp);
                    b = s.substr(sp + 1);
                } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
                    a = e[0].get<std::string>();
                    b = e[1].get<std::string>();
                } else {
                    throw Error(path, "", "model.merges[" + std::to_string(rank) + "] is neither \"a b\" nor [a, b]");
                }
                auto ia = vocab_.find(a), ib = vocab_.find(b), im = vocab_.find(a + b);
                if (ia != vocab_.end() && ib != vocab_.end() && im != vocab_.end())
                    merges_.emplace((uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second),
                                    std::make_pair(rank, im->second));
                ++rank;
            }
        }

        // bos/eos: tokenizer_config.json beside, else the usual names.
        json cfg;
        const auto cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
        std::error_code ec;
        if (std::filesystem::is_regular_file(cfg_path, ec)) {
            try {
                cfg = json::parse(read_text_file(cfg_path.string()));
            } catch (const json::exception& e) {
                throw Error(cfg_path.string(), "", std::string("invalid JSON: ") + e.what());
            }
        }
        auto pick = [&](const char* key, std::initializer_list<const char*> names) {
            bool present = false;
            std::string t = config_token(cfg, key, present);
            if (present) return t.empty() ? -1 : find_token(t);
            for (const char* n : names)
                if (int id = find_token(n); id >= 0) return id;
            return -1;
        };
        bos_ = pick("bos_token", {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"});
        eos_ = pick("eos_token", {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"});
    } catch (const json::exception& e) {
        throw Error(path, "", std::string("unexpected tokenizer.json structure: ") + e.what());
    }
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_bpe_tokenizer(const std::string& path) {
    auto t = std::make_unique<HfBpeTokenizer>();
    t->load(path);
    return t;
}

}  // namespace loftq
