// name_regex.h: regular expressions over tensor and module names that come from outside (plan
// rules, a PEFT adapter's rank_pattern keys), matched in time linear in the name whatever the
// pattern: RE2 (no backtracking), so that `(a+)+$` or `^(\w+\.?)+\.bias$` cannot hang the CLI or
// freeze the GUI. RE2's syntax is ECMAScript's without backreferences and lookaround; a pattern
// using those is refused with RE2's reason. Immutable once built, so it may be shared between
// threads.
#pragma once
#include <memory>
#include <string>

namespace re2 {
class RE2;
}

namespace loftq {

class NameRegex {
public:
    NameRegex() = default;
    // Throws loftq::Error(`where`, "", "invalid regex '<pattern>': <why>") for a bad pattern.
    NameRegex(const std::string& pattern, const std::string& where);
    bool search(const std::string& text) const;      // anywhere in text
    bool full_match(const std::string& text) const;  // the whole text
    bool valid() const { return re_ != nullptr; }

private:
    std::shared_ptr<const re2::RE2> re_;
};

}  // namespace loftq
