// world.cpp: see world.h.
#include "cli/world.h"

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <memory>

#include "core/error.h"
#include "dist/comm_mpi.h"
#include "dist/gpu_per_rank.h"

namespace loftq::cli {

namespace {
std::unique_ptr<Comm> g_world;
}

namespace {
// Several ranks on one machine with a GPU each: local rank L takes GPU L (gpu_per_rank.h), set
// before anything starts CUDA. The launcher's word for the local rank: Open MPI's, or Slurm's.
void pick_gpu() {
    if (std::getenv("CUDA_VISIBLE_DEVICES")) return;
    auto env_int = [](std::initializer_list<const char*> names) {
        for (const char* n : names)
            if (const char* v = std::getenv(n); v && *v) return std::atoi(v);
        return -1;
    };
    const int local_rank = env_int({"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"});
    const int local_size = env_int({"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE", "MPI_LOCALNRANKS"});
    const std::string gpu = gpu_for_local_rank(local_rank, local_size, count_nvidia_devices());
    if (!gpu.empty()) ::setenv("CUDA_VISIBLE_DEVICES", gpu.c_str(), 1);
}
}  // namespace

int start_world() {
    if (mpi_launched_size() <= 0) return 1;
    pick_gpu();
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
