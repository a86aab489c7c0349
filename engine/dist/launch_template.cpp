// launch_template.cpp: the pure half of launcher.h: splitting a "Run on" template into words,
// its placeholders, where an ssh prefix ends, and quoting words for sh.
#include <cctype>
#include <string_view>

#include "core/error.h"
#include "dist/launcher.h"

namespace loftq {

namespace {

Error template_error(const std::string& templ, const std::string& what) {
    return Error("run-on template '" + templ + "': " + what);
}

// ssh(1)'s options that take an argument (OpenSSH 9): -p PORT, -i KEY, -o X=Y, ...
constexpr std::string_view kSshArgOptions = "BbcDEeFIiJLlmOoPpQRSWw";

// Replaces {n} and {nodes} in one word; any other {...} is an error.
std::string expand_word(const std::string& word, const RunTarget& t) {
    std::string out;
    for (size_t i = 0; i < word.size(); ++i) {
        if (word[i] == '}') throw template_error(t.templ, "'}' without '{'");
        if (word[i] != '{') {
            out += word[i];
            continue;
        }
        const size_t close = word.find('}', i);
        if (close == std::string::npos) throw template_error(t.templ, "'{' without '}'");
        const std::string name = word.substr(i + 1, close - i - 1);
        if (name == "n") out += std::to_string(t.ranks);
        else if (name == "nodes") out += std::to_string(t.nodes);
        else throw template_error(t.templ, "unknown placeholder {" + name + "} (expected {n} or {nodes})");
        i = close;
    }
    return out;
}

void check_counts(const RunTarget& t) {
    if (t.ranks < 1) throw template_error(t.templ, "ranks must be at least 1 (got " + std::to_string(t.ranks) + ")");
    if (t.nodes < 1) throw template_error(t.templ, "nodes must be at least 1 (got " + std::to_string(t.nodes) + ")");
}

bool is_ssh_word(const std::string& w) {
    return w == "ssh" || (w.size() > 4 && w.compare(w.size() - 4, 4, "/ssh") == 0);
}

}  // namespace

std::vector<std::string> split_template_words(const std::string& templ) {
    std::vector<std::string> words;
    std::string cur;
    bool in_word = false;
    for (size_t i = 0; i < templ.size(); ++i) {
        const char c = templ[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            if (in_word) words.push_back(cur);
            cur.clear();
            in_word = false;
        } else if (c == '\'') {
            const size_t close = templ.find('\'', i + 1);
            if (close == std::string::npos) throw template_error(templ, "unbalanced single quote");
            cur += templ.substr(i + 1, close - i - 1);
            i = close;
            in_word = true;
        } else if (c == '"') {
            size_t j = i + 1;
            for (;; ++j) {
                if (j >= templ.size()) throw template_error(templ, "unbalanced double quote");
                if (templ[j] == '"') break;
                // Inside "...", a backslash escapes only " \ $ ` (as in sh); elsewhere it stays.
                if (templ[j] == '\\' && j + 1 < templ.size() && std::string_view("\"\\$`").find(templ[j + 1]) != std::string_view::npos)
                    ++j;
                cur += templ[j];
            }
            i = j;
            in_word = true;
        } else if (c == '\\') {
            if (i + 1 >= templ.size()) throw template_error(templ, "a backslash at the end");
            cur += templ[++i];
            in_word = true;
        } else if (std::string_view(";|&<>`$()").find(c) != std::string_view::npos) {
            throw template_error(templ, std::string("'") + c +
                                            "' is not allowed unquoted (the words are arguments, not shell: put shell in a "
                                            "script on the target, or quote it)");
        } else {
            cur += c;
            in_word = true;
        }
    }
    if (in_word) words.push_back(cur);
    return words;
}

LaunchCommand parse_template(const RunTarget& t) {
    check_counts(t);
    std::vector<std::string> words = split_template_words(t.templ);
    for (auto& w : words) w = expand_word(w, t);
    LaunchCommand cmd;
    if (words.empty() || !is_ssh_word(words[0])) {
        cmd.launcher = std::move(words);
        return cmd;
    }
    // ssh [options] host [launcher...]: options until the first word that is not one (getopt's rule).
    size_t i = 1;
    for (; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w == "--") {
            ++i;
            break;
        }
        if (w.size() < 2 || w[0] != '-') break;
        for (size_t k = 1; k < w.size(); ++k) {
            const char o = w[k];
            if (o == 'N' || o == 'f')
                throw template_error(t.templ, std::string("ssh -") + o + " runs no command here; leave it out");
            if (kSshArgOptions.find(o) != std::string_view::npos) {
                if (k + 1 == w.size()) {  // the argument is the next word
                    if (++i >= words.size()) throw template_error(t.templ, std::string("ssh -") + o + " needs an argument");
                }
                break;  // else the rest of the word is the argument (-p2222)
            }
            if (!std::isalnum(static_cast<unsigned char>(o)))
                throw template_error(t.templ, "'" + w + "' is not an ssh option");
        }
    }
    if (i >= words.size()) throw template_error(t.templ, "ssh needs a host (ssh [options] host [launcher ...])");
    cmd.remote.assign(words.begin(), words.begin() + long(i) + 1);
    cmd.launcher.assign(words.begin() + long(i) + 1, words.end());
    return cmd;
}

std::string expand_template(const RunTarget& t) {
    parse_template(t);  // validates
    // Replace the placeholders in the text itself, keeping the user's quoting.
    std::string out;
    for (size_t i = 0; i < t.templ.size(); ++i) {
        if (t.templ[i] == '{') {
            const size_t close = t.templ.find('}', i);
            out += expand_word(t.templ.substr(i, close - i + 1), t);
            i = close;
        } else {
            out += t.templ[i];
        }
    }
    return out;
}

std::string shell_quote(const std::string& word) {
    std::string q = "'";
    for (char c : word) {
        if (c == '\'') q += "'\\''";
        else q += c;
    }
    return q + "'";
}

std::string shell_join(const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) {
        if (!s.empty()) s += ' ';
        s += shell_quote(w);
    }
    return s;
}

const char* run_state_name(RunState s) {
    switch (s) {
        case RunState::Running: return "running";
        case RunState::Detached: return "detached";
        case RunState::Finished: return "finished";
    }
    return "running";
}

}  // namespace loftq
