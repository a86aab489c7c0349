// job_share.h: a quantize job spread over processes (ranks), as the job (job.cpp) sees it. Every
// rank resolves the same plan; split_weights gives each weight to one rank, balanced by work;
// each rank decomposes its own with its own threads (or GPU); the others send each finished
// weight to rank 0, which writes everything through the one exporter, so the files are those of
// a single-process run of the same plan. The transport (MPI, or threads for tests) is engine/dist
// (dist/weight_exchange.h); the job knows only this interface.
#pragma once
#include <cstdint>
#include <vector>

#include "core/cancel.h"
#include "loftq/decompose.h"
#include "loftq/plan.h"

namespace loftq {

struct WeightResult;

class WeightExchange {
public:
    virtual ~WeightExchange() = default;
    virtual int rank() const = 0;
    virtual int ranks() const = 0;
    // Not rank 0: hands a finished weight to rank 0. Returns once it is sent (its buffers may be
    // reused); throws loftq::Cancelled when the run was cancelled or aborted meanwhile.
    virtual void send(int weight, const WeightResult& r, const Decomposition& d) = 0;
    // Rank 0: the next weight another rank finished, its index returned. The decomposition comes
    // with codes, scales and factors; Q is left empty (the caller dequantizes: the same bits).
    // Throws loftq::Cancelled when `cancel` is set or the run was aborted.
    virtual int receive(WeightResult& r, Decomposition& d, const CancelToken& cancel) = 0;
    // Stops every rank (a failure here): the job calls it when rank 0 cannot go on.
    virtual void abort(const std::string& why) = 0;
};

// The rank (0..ranks-1) that decomposes each of plan.weights: the largest weights first, each to
// the rank with the least work so far (work = rows x cols x max(1, steps)), ties to the lower
// rank; deterministic, so every rank computes the same split.
std::vector<int> split_weights(const ResolvedPlan& plan, int ranks);

}  // namespace loftq
