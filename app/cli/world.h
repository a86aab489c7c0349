// world.h: this process's place in a run spread over processes (`mpirun -np N loftq quantize|
// finetune ...`, engine/dist): started in main() before the command line is parsed, only when a
// launcher started the process (a plain run never initializes MPI). Rank 0 prints and writes; the
// other ranks are silent but for their own errors, which every rank hears (Comm::abort_all).
#pragma once
#include <string>

#include "core/cancel.h"
#include "dist/comm.h"

namespace loftq::cli {

// Starts MPI when a launcher started this process; the size it reports (1 for a plain run).
int start_world();
// The comm of a run over more than one rank, else null.
Comm* world();
bool is_root();   // rank 0, or not spread
// "" or "loftq[rank R]: " for messages printed by a rank other than 0.
std::string rank_prefix();

// While it lives, a peer's abort cancels `token` (the command's job).
class WorldCancel {
public:
    explicit WorldCancel(CancelToken& token);
    ~WorldCancel();
    WorldCancel(const WorldCancel&) = delete;
    WorldCancel& operator=(const WorldCancel&) = delete;
};

// Ends the run on this rank after the command: on failure (`error` not empty, or cancelled) tells
// the other ranks first, then waits for every rank (finish). Returns the exit code to use.
int finish_world(int code, const std::string& error);

// Refuses a command that does not run spread over ranks (anything but quantize and finetune).
void require_single_process(const char* command);

}  // namespace loftq::cli
