// tokenizer.cpp: load_tokenizer: which tokenizer a path means, and the search beside a model.
// A path is taken as a tokenizer file by its name and first bytes: JSON with a "model" object ->
// Hugging Face tokenizer.json; *.model starting with protobuf tag 0x0A -> SentencePiece;
// tokenizer.bin / tok*.bin, or any file that parses completely as one -> llama2.c. Anything
// else (a folder, model.safetensors, config.json, a llama2.c checkpoint like stories260K.bin)
// is a model whose folder is searched for tokenizer.json, tokenizer.model, tokenizer.bin and
// tok*.bin, and a lone .gguf's own tokenizer, in that order (a llama2.c checkpoint's
// tok<vocab>.bin before all). A file starting "GGUF" (or named *.gguf) is read for its tokenizer. A found file that
// fails to load is skipped when a later candidate loads (a SentencePiece-style tokenizer.json
// beside tokenizer.model); otherwise its error is thrown.
// Leaves out: downloading, vocab.json + merges.txt folders without tokenizer.json.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "train/tokenizer_formats.h"

namespace fs = std::filesystem;

namespace loftq {
namespace {

std::string head_bytes(const std::string& path, size_t n) {
    std::ifstream in(path, std::ios::binary);
    std::string s(n, '\0');
    in.read(s.data(), std::streamsize(n));
    s.resize(size_t(in.gcount()));
    return s;
}

bool starts_json_object(const std::string& head) {
    size_t i = head.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
    while (i < head.size() && std::strchr(" \t\r\n", head[i])) ++i;
    return i < head.size() && head[i] == '{';
}

// A JSON file that is a tokenizer (has a top-level "model" key near the start or anywhere).
bool json_is_tokenizer(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return s.find("\"model\"") != std::string::npos && s.find("\"vocab\"") != std::string::npos;
}

bool is_tok_bin_name(const std::string& name) {
    return name.size() > 7 && name.compare(0, 3, "tok") == 0 && name.compare(name.size() - 4, 4, ".bin") == 0;
}

// vocab_size from a llama2.c checkpoint header (7 int32: dim, hidden, layers, heads, kv_heads,
// vocab (negative = untied classifier), seq_len), or 0 when the file does not look like one.
int llama2c_checkpoint_vocab(const std::string& path) {
    std::string h = head_bytes(path, 28);
    if (h.size() < 28) return 0;
    int32_t v[7];
    std::memcpy(v, h.data(), 28);
    for (int i : {0, 1, 2, 3, 4, 6})
        if (v[i] <= 0 || v[i] > (1 << 20)) return 0;
    int vocab = v[5] < 0 ? -v[5] : v[5];
    return vocab > 0 && vocab < (1 << 22) ? vocab : 0;
}

std::unique_ptr<Tokenizer> load_by_name(const fs::path& p) {
    if (p.extension() == ".json") return load_hf_bpe_tokenizer(p.string());
    if (p.extension() == ".model") return load_sentencepiece_tokenizer(p.string());
    if (p.extension() == ".gguf") return load_gguf_tokenizer(p.string());
    return load_llama2c_tokenizer(p.string());
}

std::unique_ptr<Tokenizer> search_beside(const fs::path& dir, const std::string& origin, const std::string& note) {
    std::vector<fs::path> cands;
    std::error_code ec;
    for (const char* n : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"})
        if (fs::is_regular_file(dir / n, ec)) cands.push_back(dir / n);
    std::vector<fs::path> toks, ggufs;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        if (!e.is_regular_file(ec)) continue;
        if (n != "tokenizer.bin" && is_tok_bin_name(n)) toks.push_back(e.path());
        else if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
    }
    std::sort(toks.begin(), toks.end());
    cands.insert(cands.end(), toks.begin(), toks.end());
    if (ggufs.size() == 1) cands.push_back(ggufs[0]);   // a lone .gguf: the tokenizer inside it, last
    if (!origin.empty() && fs::is_regular_file(origin, ec)) {
        if (int v = llama2c_checkpoint_vocab(origin)) {   // llama2.c: tok<vocab>.bin belongs to it, first
            const std::string want = "tok" + std::to_string(v) + ".bin";
            std::stable_partition(cands.begin(), cands.end(), [&](const fs::path& t) { return t.filename() == want; });
        }
    }
    if (cands.empty())
        throw Error(origin, "", "no tokenizer found: looked for tokenizer.json, tokenizer.model, tokenizer.bin, tok*.bin, a .gguf in " +
                                    dir.string() + note + "; pass the tokenizer file explicitly");
    std::optional<Error> first_error;
    for (const auto& c : cands) {
        try {
            return load_by_name(c);
        } catch (const Error& e) {
            if (!first_error) first_error = e;
        }
    }
    throw *first_error;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
    if (path.empty()) throw Error("no tokenizer path given");
    std::error_code ec;
    const fs::path p(path);
    if (!fs::exists(p, ec)) throw Error(path, "", "no such file or folder (looking for a tokenizer)");
    if (fs::is_directory(p, ec)) return search_beside(p, path, "");
    if (!fs::is_regular_file(p, ec)) throw Error(path, "", "not a regular file (looking for a tokenizer)");

    const std::string name = p.filename().string();
    const std::string head = head_bytes(path, 64);
    fs::path dir = p.parent_path();
    if (dir.empty()) dir = ".";

    if (name == "tokenizer.json") return load_hf_bpe_tokenizer(path);
    if (p.extension() == ".json") {
        if (starts_json_object(head) && json_is_tokenizer(path)) return load_hf_bpe_tokenizer(path);
        return search_beside(dir, path, "");   // config.json and the like
    }
    if (p.extension() == ".gguf" || head.compare(0, 4, "GGUF") == 0) return load_gguf_tokenizer(path);
    if (name == "tokenizer.model" || p.extension() == ".model") return load_sentencepiece_tokenizer(path);
    if (name == "tokenizer.bin" || is_tok_bin_name(name)) return load_llama2c_tokenizer(path);
    // Any other file: a llama2.c tokenizer under another name, or a model to look beside.
    std::string note;
    if (llama2c_checkpoint_vocab(path) == 0) {
        try {
            return load_llama2c_tokenizer(path);
        } catch (const Error&) {
            note = " (" + name + " itself is not a tokenizer)";
        }
    }
    return search_beside(dir, path, note);
}

}  // namespace loftq
