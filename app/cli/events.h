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
EventWriter* events();                    // null without --events
void close_events(int code, const std::string& error);

}  // namespace loftq::cli
