// world.cpp: see world.h.
#include "cli/world.h"

#include <cstdio>
#include <memory>

#include "core/error.h"
#include "dist/comm_mpi.h"

namespace loftq::cli {

namespace {
std::unique_ptr<Comm> g_world;
}

int start_world() {
    if (mpi_launched_size() <= 0) return 1;
    g_world = mpi_comm();  // throws (a clear line) in a build without MPI
    if (g_world->size() <= 1) {
        g_world->finish(10);
        g_world.reset();
        return 1;
    }
    return g_world->size();
}

Comm* world() { return g_world.get(); }
bool is_root() { return !g_world || g_world->root(); }
std::string rank_prefix() { return is_root() ? "" : "[rank " + std::to_string(g_world->rank()) + "] "; }

WorldCancel::WorldCancel(CancelToken& token) {
    if (g_world) g_world->set_cancel(&token);
}
WorldCancel::~WorldCancel() {
    if (g_world) g_world->set_cancel(nullptr);
}

int finish_world(int code, const std::string& error) {
    if (!g_world) return code;
    if (code != 0) {
        const std::string here = "rank " + std::to_string(g_world->rank());
        const std::string reason = g_world->abort_reason();
        if (reason.empty()) g_world->abort_all(here + ": " + (error.empty() ? "stopped" : error));
        else if (g_world->root()) std::fprintf(stderr, "loftq: the run was stopped: %s\n", reason.c_str());
    }
    g_world->finish(60);
    g_world.reset();
    return code;
}

void require_single_process(const char* command) {
    if (g_world)
        throw Error(std::string("`loftq ") + command + "` does not run spread over processes; of the commands, only quantize and "
                    "finetune do (start this one without mpirun / srun)");
}

}  // namespace loftq::cli
