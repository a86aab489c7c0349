// comm_mpi.h: the processes of an MPI job (Open MPI: `mpirun -np N loftq ...`, or srun) as a Comm.
// Only the `loftq` program calls this, and only when a launcher started it: a plain run never
// initializes MPI (no singleton start-up, no daemon), so the same binary serves both.
// MPI is used at MPI_THREAD_SERIALIZED: every call is made under one mutex, and every wait is a
// poll (MPI_Test) with the mutex released in between, so a thread blocked on a peer never keeps
// the abort watcher (a thread polling for Abort messages every 2 ms) from seeing that the peer
// gave up. Sends copy their bytes, so a send abandoned by an abort never reads freed memory.
// Messages over 1 GiB go as consecutive pieces (MPI counts are ints).
#pragma once
#include <memory>
#include <string>

#include "dist/comm.h"

namespace loftq {

bool mpi_built();            // this build has MPI (LOFTQ_HAVE_MPI)
// The launcher's word that this process is one rank of a job (OMPI_COMM_WORLD_SIZE, PMIX_RANK,
// PMI_SIZE, SLURM_NTASKS with SLURM_PROCID set through srun's PMI); 0 when none.
int mpi_launched_size();
// Initializes MPI and returns this process's view of MPI_COMM_WORLD; throws loftq::Error when
// this build has no MPI. finish() finalizes MPI (and calls MPI_Abort on a timeout: the ranks that
// did not arrive are stuck or dead, and the launcher must end them).
std::unique_ptr<Comm> mpi_comm();

}  // namespace loftq
