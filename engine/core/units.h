// units.h: byte counts as people read them, for messages from the engine and the CLI.
#pragma once
#include <string>

namespace loftq {

// Decimal units with two decimals: "512 B", "1.50 kB", "12.60 GB" (1 kB = 1000 B). The
// workbench shows the same (widgets/plot_style.h format_bytes_decimal calls this).
std::string human_bytes(double bytes);

}  // namespace loftq
