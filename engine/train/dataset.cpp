// dataset.cpp: fine-tuning examples from a file, as (tokens, targets) rows of length T.
//
// Plain text: documents are runs of lines separated by blank (empty or whitespace-only) lines,
//   joined with "\n" (CRLF read as LF); each is encoded with BOS (with EOS instead when the
//   tokenizer has no BOS), all are concatenated into one stream and cut into windows of T+1
//   tokens at stride T (so every next-token pair is scored exactly once): tokens = w[0..T-1],
//   targets = w[1..T]. The last, shorter window is padded: tokens 0, targets -1.
// JSONL (or a .json array of objects): the first record decides the format:
//   {"text"}                      -> jsonl-text:     BOS text EOS, every target scored;
//   {"question", "answer"}        -> jsonl-qa:       "Question: {q}\nAnswer: " + answer + EOS;
//   {"instruction", "output"} (+ optional "input") -> jsonl-instruct: Alpaca's prompt
//     "### Instruction:\n{i}\n\n[### Input:\n{in}\n\n]### Response:\n" + output + EOS.
//   The example is encode(prompt + completion) with BOS and EOS, so merges across the seam are
//   the tokenizer's natural ones; the targets scored are those after the longest common prefix
//   of that and encode(prompt) (with BOS): the completion's tokens, including a token that
//   straddles the seam (SentencePiece's "▁" + word). One record per row, cut to T+1 tokens
//   (the start kept) and padded; a row with no scored target (prompt fills T) is dropped and
//   counted in a warning. Blank lines are skipped; a bad line throws naming file and line.
// Split: max_examples keeps the first N records/windows; then round(eval_fraction * n) of them
//   (at least 1 when eval_fraction > 0 and n >= 2, at most n - 1) chosen by a seeded
//   Fisher-Yates shuffle are held out. Train and eval keep file order (the trainer shuffles).
// Leaves out: chat templates, packing several JSONL records into one row, streaming huge files.
#include "train/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.h"
#include "core/fsutil.h"
#include "core/rng.h"

namespace loftq {
namespace {

using json = nlohmann::json;

struct Parsed {
    std::vector<Example> examples;
    std::string format;
    std::vector<std::string> warnings;
};

// Rows of length T from full[0..n): tokens = full[t], targets = full[t+1] where t+1 >= first.
Example make_example(const int* full, size_t n, size_t first, int T) {
    Example e;
    e.tokens.assign(size_t(T), 0);
    e.targets.assign(size_t(T), -1);
    for (size_t t = 0; t < size_t(T) && t < n; ++t) {
        e.tokens[t] = full[t];
        if (t + 1 < n && t + 1 >= first) e.targets[t] = full[t + 1];
    }
    return e;
}

bool has_target(const Example& e) {
    return std::any_of(e.targets.begin(), e.targets.end(), [](int v) { return v >= 0; });
}

std::string_view trim_cr(std::string_view l) {
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    return l;
}

bool is_blank(std::string_view l) { return l.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos; }

// Calls fn(line_number, line) for each line (1-based, CR stripped).
void for_each_line(std::string_view text, const std::function<void(int, std::string_view)>& fn) {
    int no = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        size_t end = nl == std::string_view::npos ? text.size() : nl;
        fn(++no, trim_cr(text.substr(pos, end - pos)));
        pos = end + 1;
    }
}

// "line 3" / "lines 3, 5, 9, ..." (`noun` is "line" or "item").
std::string lines_list(const std::string& noun, const std::vector<int>& lines) {
    std::string s = noun + (lines.size() > 1 ? "s " : " ");
    for (size_t i = 0; i < lines.size() && i < 10; ++i) s += (i ? ", " : "") + std::to_string(lines[i]);
    if (lines.size() > 10) s += ", ...";
    return s;
}

Parsed parse_text(const std::string& path, const std::string& text, const Tokenizer& tok, int T) {
    const bool eos_sep = tok.bos_id() < 0;
    std::vector<int> stream;
    std::string doc;
    int docs = 0;
    auto flush = [&] {
        if (doc.empty()) return;
        std::vector<int> ids = tok.encode(doc, true, eos_sep);
        stream.insert(stream.end(), ids.begin(), ids.end());
        doc.clear();
        ++docs;
    };
    for_each_line(text, [&](int, std::string_view line) {
        if (is_blank(line)) {
            flush();
            return;
        }
        if (!doc.empty()) doc += '\n';
        doc.append(line);
    });
    flush();
    if (docs == 0) throw Error(path, "", "empty file: no text");
    if (stream.size() < 2)
        throw Error(path, "", "too little text: " + std::to_string(stream.size()) + " token(s), need at least 2");
    Parsed p;
    p.format = "text";
    for (size_t s = 0; s + 1 < stream.size(); s += size_t(T)) {
        size_t n = std::min(size_t(T) + 1, stream.size() - s);
        p.examples.push_back(make_example(stream.data() + s, n, 1, T));
    }
    return p;
}

// One JSON record (a JSONL line or a .json array item) -> an example.
class RecordReader {
public:
    RecordReader(const std::string& path, const Tokenizer& tok, int T) : path_(path), tok_(tok), T_(T) {}

    void add(const json& j, int line, const std::string& where) {
        if (!j.is_object()) throw Error(path_, "", where + ": expected a JSON object, got " + std::string(j.type_name()));
        if (format_.empty()) {
            if (j.contains("text")) format_ = "jsonl-text";
            else if (j.contains("question") && j.contains("answer")) format_ = "jsonl-qa";
            else if (j.contains("instruction") && j.contains("output")) format_ = "jsonl-instruct";
            else {
                std::string keys;
                for (auto it = j.begin(); it != j.end(); ++it) keys += (keys.empty() ? "" : ", ") + it.key();
                throw Error(path_, "", where + ": unknown record format (keys: " + (keys.empty() ? "none" : keys) +
                                           "); expected \"text\", \"question\"+\"answer\" or \"instruction\"+\"output\"");
            }
            first_where_ = where;
        }
        std::string prompt, completion;
        if (format_ == "jsonl-text") {
            completion = field(j, "text", where, false);
        } else if (format_ == "jsonl-qa") {
            prompt = "Question: " + field(j, "question", where, false) + "\nAnswer: ";
            completion = field(j, "answer", where, false);
        } else {
            const std::string input = field(j, "input", where, true);
            prompt = "### Instruction:\n" + field(j, "instruction", where, false) + "\n\n";
            if (!input.empty()) prompt += "### Input:\n" + input + "\n\n";
            prompt += "### Response:\n";
            completion = field(j, "output", where, false);
        }
        const std::vector<int> full = tok_.encode(prompt + completion, true, true);
        size_t first = 1;
        if (!prompt.empty()) {
            const std::vector<int> pre = tok_.encode(prompt, true, false);
            size_t k = 0;
            while (k < pre.size() && k < full.size() && pre[k] == full[k]) ++k;
            first = std::max<size_t>(k, 1);
        }
        ++records_;
        const size_t n = std::min(full.size(), size_t(T_) + 1);
        Example e = make_example(full.data(), n, first, T_);
        if (!has_target(e)) {
            dropped_.push_back(line);
            return;
        }
        if (full.size() > size_t(T_) + 1) truncated_.push_back(line);
        examples_.push_back(std::move(e));
    }

    Parsed finish(const std::string& noun) {
        if (records_ == 0) throw Error(path_, "", "empty file: no JSON records");
        Parsed p;
        p.format = format_;
        const std::string T = std::to_string(T_);
        if (!truncated_.empty())
            p.warnings.push_back(path_ + ": " + std::to_string(truncated_.size()) + " example(s) longer than seq " + T +
                                 " were cut to " + T + " tokens (" + lines_list(noun, truncated_) + ")");
        if (!dropped_.empty())
            p.warnings.push_back(path_ + ": " + std::to_string(dropped_.size()) +
                                 " example(s) dropped: the prompt alone fills seq " + T + " (" +
                                 lines_list(noun, dropped_) + ")");
        if (examples_.empty())
            throw Error(path_, "", "no usable examples: the prompt alone fills seq " + T + " in all " +
                                       std::to_string(records_) + " records; raise seq");
        p.examples = std::move(examples_);
        return p;
    }

private:
    std::string field(const json& j, const char* key, const std::string& where, bool optional) const {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) {
            if (optional) return {};
            throw Error(path_, "", where + ": missing \"" + key + "\" (format " + format_ + ", detected at " +
                                       first_where_ + ")");
        }
        if (!it->is_string()) throw Error(path_, "", where + ": \"" + key + "\" must be a string, got " + it->type_name());
        return it->get<std::string>();
    }

    const std::string& path_;
    const Tokenizer& tok_;
    int T_;
    std::string format_, first_where_;
    std::vector<Example> examples_;
    std::vector<int> truncated_, dropped_;
    int records_ = 0;
};

Parsed parse_jsonl(const std::string& path, const std::string& text, const Tokenizer& tok, int T) {
    RecordReader rr(path, tok, T);
    for_each_line(text, [&](int no, std::string_view line) {
        if (is_blank(line)) return;
        const std::string where = "line " + std::to_string(no);
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception& e) {
            throw Error(path, "", where + ": invalid JSON: " + e.what());
        }
        rr.add(j, no, where);
    });
    return rr.finish("line");
}

Parsed parse_json_array(const std::string& path, const std::string& text, const Tokenizer& tok, int T) {
    json arr;
    try {
        arr = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(path, "", std::string("invalid JSON: ") + e.what());
    }
    RecordReader rr(path, tok, T);
    int i = 0;
    for (const auto& j : arr) {
        ++i;
        rr.add(j, i, "item " + std::to_string(i));
    }
    return rr.finish("item");
}

// JSONL by extension, or when the first non-blank line is a JSON object with a known field.
bool looks_jsonl(const std::string& path, std::string_view text) {
    std::string ext = std::filesystem::path(path).extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (ext == ".jsonl" || ext == ".ndjson" || ext == ".json") return true;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view line = trim_cr(text.substr(pos, (nl == std::string_view::npos ? text.size() : nl) - pos));
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        if (is_blank(line)) continue;
        size_t f = line.find_first_not_of(" \t");
        if (line[f] != '{') return false;
        try {
            json j = json::parse(line);
            return j.is_object() && (j.contains("text") || j.contains("question") || j.contains("instruction"));
        } catch (const json::exception&) {
            return false;
        }
    }
    return false;
}

Parsed parse_file(const std::string& path, const Tokenizer& tok, const DatasetOptions& opt) {
    if (opt.seq < 1) throw Error(path, "", "seq must be at least 1 (got " + std::to_string(opt.seq) + ")");
    if (!(opt.eval_fraction >= 0.0 && opt.eval_fraction <= 0.5))
        throw Error(path, "", "eval_fraction must be within 0..0.5 (got " + std::to_string(opt.eval_fraction) + ")");
    if (opt.max_examples < 0)
        throw Error(path, "", "max_examples must be >= 0 (got " + std::to_string(opt.max_examples) + ")");
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw Error(path, "", "is a folder; expected a .txt or .jsonl data file");
    std::string text = read_text_file(path);
    if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);   // UTF-8 BOM
    if (is_blank(text)) throw Error(path, "", "empty file: no examples");
    Parsed p;
    if (looks_jsonl(path, text)) {
        size_t f = text.find_first_not_of(" \t\r\n");
        p = text[f] == '[' ? parse_json_array(path, text, tok, opt.seq) : parse_jsonl(path, text, tok, opt.seq);
    } else {
        p = parse_text(path, text, tok, opt.seq);
    }
    if (opt.max_examples > 0 && int64_t(p.examples.size()) > opt.max_examples) p.examples.resize(size_t(opt.max_examples));
    return p;
}

}  // namespace

Dataset load_dataset(const std::string& path, const Tokenizer& tok, const DatasetOptions& opt) {
    Parsed p = parse_file(path, tok, opt);
    Dataset d;
    d.format = p.format;
    d.warnings = std::move(p.warnings);
    const size_t n = p.examples.size();
    size_t n_eval = 0;
    if (opt.eval_fraction > 0 && n >= 2)
        n_eval = std::clamp<size_t>(size_t(std::llround(opt.eval_fraction * double(n))), 1, n - 1);
    std::vector<char> held(n, 0);
    if (n_eval > 0) {
        std::vector<size_t> idx(n);
        std::iota(idx.begin(), idx.end(), size_t(0));
        Rng rng(opt.seed);
        for (size_t i = n - 1; i > 0; --i) std::swap(idx[i], idx[size_t(rng.next() % (i + 1))]);
        for (size_t k = 0; k < n_eval; ++k) held[idx[k]] = 1;
    }
    d.train.reserve(n - n_eval);
    d.eval.reserve(n_eval);
    for (size_t i = 0; i < n; ++i) (held[i] ? d.eval : d.train).push_back(std::move(p.examples[i]));
    for (const auto& e : d.train)
        d.scored_tokens += std::count_if(e.targets.begin(), e.targets.end(), [](int v) { return v >= 0; });
    return d;
}

std::vector<Example> load_examples(const std::string& path, const Tokenizer& tok, const DatasetOptions& opt,
                                   std::vector<std::string>* warnings) {
    DatasetOptions o = opt;
    o.eval_fraction = 0;
    Parsed p = parse_file(path, tok, o);
    if (warnings) warnings->insert(warnings->end(), p.warnings.begin(), p.warnings.end());
    return std::move(p.examples);
}

}  // namespace loftq
