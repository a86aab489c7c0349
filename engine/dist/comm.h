// comm.h: the processes of one distributed run, as the engine sees them: ranks 0..size-1 that
// send each other byte messages, a collective or two built on those, and an abort that reaches
// every rank. Two implementations: MPI (comm_mpi.h, a run started by mpirun / srun) and threads in
// one process (comm_threads.h: the tests' stand-in, same semantics). Rank 0 is the root: it
// writes every output file; the others only compute and send.
//
// Threads: any thread may call any method; an implementation serializes its own calls.
// Abort: abort_all(why) tells every other rank (once) and cancels this process's token (set by
// set_cancel); a rank that receives an abort cancels its token too, so the running job stops at
// its next cancel point. Every blocking call polls, and throws loftq::Cancelled once the token is
// set, so that no rank waits forever on one that stopped.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/cancel.h"

namespace loftq {

// Message tags (one space for both implementations).
enum class CommTag : int { Abort = 1, Weight = 2, Ring = 3, Value = 4 };

class Comm {
public:
    virtual ~Comm() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    bool root() const { return rank() == 0; }

    // The token a peer's abort cancels (the job's); set before the job starts.
    virtual void set_cancel(CancelToken* token) = 0;
    // Tells every other rank to stop (the first call only) and cancels this rank's token.
    virtual void abort_all(const std::string& why) = 0;
    // Why this run was aborted ("" while it was not): the first abort seen, a peer's or our own.
    virtual std::string abort_reason() const = 0;

    // Point to point. send returns when `bytes` may be reused; recv fills exactly `bytes` from `from`.
    virtual void send(int to, CommTag tag, const void* data, size_t bytes) = 0;
    // The same, taking the bytes over (no copy where the transport keeps its own: a large message).
    virtual void send(int to, CommTag tag, std::string&& bytes) { send(to, tag, bytes.data(), bytes.size()); }
    virtual void recv(int from, CommTag tag, void* data, size_t bytes) = 0;
    // Blocks until a message with `tag` from any rank arrives; returns its bytes and sender.
    virtual std::string recv_any(CommTag tag, int* from) = 0;
    // Sends to `to` while receiving from `from` (a ring step: no deadlock when every rank does it).
    virtual void sendrecv(int to, const void* sdata, size_t sbytes, int from, void* rdata, size_t rbytes) = 0;

    // Ends the run on this rank: waits (at most `timeout_s`) until every rank got here, receiving
    // and dropping whatever still arrives, so that no sender is left blocked. False on timeout.
    virtual bool finish(double timeout_s) = 0;
};

// Sum of `n` floats across all ranks, in place, the same bits on every rank, in a fixed order
// (ring_allreduce.h): the result of a run does not depend on message timing.
void allreduce_sum(Comm& comm, float* data, size_t n);
// Sum of a few doubles across ranks in rank order (0 + 1 + ... + N-1), the same on every rank.
void allreduce_sum(Comm& comm, double* data, size_t n);

}  // namespace loftq
