// units.h: byte counts as people read them, for messages from the engine and the CLI.
#pragma once
#include <string>

namespace loftq {

// Binary units with two decimals: "512 B", "1.50 KiB", "12.60 GiB".
std::string human_bytes(double bytes);

}  // namespace loftq
