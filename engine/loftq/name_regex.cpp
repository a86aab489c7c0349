// name_regex.cpp: see name_regex.h.
#include "loftq/name_regex.h"

#include <re2/re2.h>

#include "core/error.h"

namespace loftq {

NameRegex::NameRegex(const std::string& pattern, const std::string& where) {
    RE2::Options o;
    o.set_log_errors(false);
    o.set_max_mem(8 << 20);   // a pattern whose automaton needs more is refused, not slow
    auto re = std::make_shared<const re2::RE2>(pattern, o);
    if (!re->ok()) {
        std::string shown = pattern.size() > 200 ? pattern.substr(0, 200) + "..." : pattern;
        throw Error(where, "", "invalid regex '" + shown + "': " + re->error());
    }
    re_ = std::move(re);
}

bool NameRegex::search(const std::string& text) const { return re_ && RE2::PartialMatch(text, *re_); }
bool NameRegex::full_match(const std::string& text) const { return re_ && RE2::FullMatch(text, *re_); }

}  // namespace loftq
