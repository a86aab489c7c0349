// units.cpp: see units.h.
#include "core/units.h"

#include <cstdio>

namespace loftq {

std::string human_bytes(double b) {
    // Decimal units (1 kB = 1000 B), as the workbench, disk tools with --si and model hubs show
    // sizes: one family everywhere.
    const char* u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) {
        b /= 1000;
        ++i;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.2f %s", b, u[i]);
    return buf;
}

}  // namespace loftq
