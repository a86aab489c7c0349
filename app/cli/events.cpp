// events.cpp: see events.h.
#include "cli/events.h"

#include <memory>

#include "cli/world.h"

namespace loftq::cli {

namespace {
std::string g_path;
std::unique_ptr<EventWriter> g_events;
}  // namespace

void add_events_option(CLI::App* sub) {
    sub->add_option("--events", g_path, "Write the run's events as JSON lines to this file (- = stdout), ending with an exit line")
        ->each([](const std::string& p) {
            if (is_root() && !g_events) g_events = std::make_unique<EventWriter>(p);
        });
}

void open_events_early(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        std::string path;
        if (a == "--events" && i + 1 < argc) path = argv[i + 1];
        else if (a.rfind("--events=", 0) == 0) path = a.substr(9);
        if (!path.empty() && is_root() && !g_events) {
            g_events = std::make_unique<EventWriter>(path);
            return;
        }
    }
}

EventWriter* events() { return g_events.get(); }

void close_events(int code, const std::string& error) {
    if (!g_events) return;
    g_events->write(exit_json(code, error));
    g_events.reset();
}

}  // namespace loftq::cli
