// json_read.h: JSON from outside (safetensors headers, config.json, shard indexes, plans, packed
// metadata), parsed with the limits that keep a hostile file a message, never a crash:
//   depth   at most kMaxJsonDepth nested arrays/objects (deeper input is refused while parsing:
//           printing or comparing a deeper value would recurse once per level and can overflow
//           the stack, e.g. an error message that quotes the value with dump());
//   keys    a key repeated in one object is refused (JSON parsers disagree on which one wins; the
//           safetensors library refuses duplicate tensor names the same way).
// Errors are loftq::Error naming the file, the byte offset and what was wrong.
#pragma once
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace loftq {

inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON value; `what` names the source in messages ("header", "plan", ...).
nlohmann::json parse_json_checked(std::string_view text, const std::string& file, const std::string& what = "JSON");
nlohmann::ordered_json parse_ordered_json_checked(std::string_view text, const std::string& file,
                                                  const std::string& what = "JSON");
// read_text_file + parse_json_checked.
nlohmann::json read_json_file(const std::string& path, const std::string& what = "JSON");

}  // namespace loftq
