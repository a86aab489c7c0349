// events.h: `--events FILE` of quantize and finetune (FILE "-" = stdout): the run's events as JSON
// lines (dist/events_json.h), then one {"event": "exit"} line with the exit code, written by
// main() however the command ended. The launcher (`--run-on`, dist/launcher.h) reads them back.
// Rank 0 alone writes them in a run spread over ranks.
#pragma once
#include <string>

#include <CLI/CLI.hpp>

#include "dist/events_json.h"

namespace loftq::cli {

// Adds --events to a subcommand; opens the file when the command starts (callback order).
void add_events_option(CLI::App* sub);
// Opens --events FILE from the raw arguments before they are parsed, so that a command line the
// parser refuses still ends its events file with the exit line (and the error).
void open_events_early(int argc, char** argv);
EventWriter* events();                    // null without --events
void close_events(int code, const std::string& error);

}  // namespace loftq::cli
