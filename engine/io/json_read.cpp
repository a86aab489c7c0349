// json_read.cpp: see json_read.h. nlohmann's parser is iterative and hands each event to a
// callback with its depth; the callback enforces the limits before the value is built.
#include "io/json_read.h"

#include <set>
#include <vector>

#include "core/error.h"
#include "core/fsutil.h"

namespace loftq {

namespace {

// Thrown from the callback, caught below (nlohmann adds no position to a foreign exception).
struct LimitHit {
    std::string why;
};

template <class Json>
Json parse_checked(std::string_view text, const std::string& file, const std::string& what) {
    std::vector<std::set<std::string>> keys;   // the keys seen in each open object
    typename Json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev, Json& parsed) {
        using E = nlohmann::json::parse_event_t;
        switch (ev) {
            case E::object_start:
            case E::array_start:
                if (depth >= kMaxJsonDepth)
                    throw LimitHit{"nested more than " + std::to_string(kMaxJsonDepth) + " levels deep"};
                keys.emplace_back();  // arrays hold no keys: an empty set keeps pushes and pops paired
                break;
            case E::object_end:
            case E::array_end:
                if (!keys.empty()) keys.pop_back();
                break;
            case E::key: {
                const std::string k = parsed.template get<std::string>();
                if (!keys.empty() && !keys.back().insert(k).second) {
                    std::string shown = k.size() > 200 ? k.substr(0, 200) + "..." : k;
                    throw LimitHit{"key '" + shown + "' appears twice in one object"};
                }
                break;
            }
            case E::value:
                break;
        }
        return true;
    };
    try {
        return Json::parse(text.begin(), text.end(), cb);
    } catch (const LimitHit& h) {
        throw Error(file, "", what + " refused: " + h.why);
    } catch (const nlohmann::json::exception& e) {
        throw Error(file, "", what + " is not valid JSON: " + e.what());
    }
}

}  // namespace

nlohmann::json parse_json_checked(std::string_view text, const std::string& file, const std::string& what) {
    return parse_checked<nlohmann::json>(text, file, what);
}

nlohmann::ordered_json parse_ordered_json_checked(std::string_view text, const std::string& file, const std::string& what) {
    return parse_checked<nlohmann::ordered_json>(text, file, what);
}

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
    return parse_json_checked(read_text_file(path), path, what);
}

}  // namespace loftq
