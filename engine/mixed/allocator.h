// allocator.h: the best plan under a memory budget, from a sensitivity sweep (sweep.h).
//
// Problem (a multiple-choice knapsack): choose one candidate c_i per target weight i to
//   minimize  D = sum_i d(i, c_i)   subject to   fixed_bytes + sum_i bytes(i, c_i) <= budget,
// where the damage d = e^2, e the candidate's relative output error with calibration (else its
// relative weight error): the sum of each projection's noise-to-signal power, so that every
// projection's output counts alike, whatever its size.
//
// Solution: each weight's candidates are reduced to their lower convex hull in (bytes, damage);
// the hull segments, taken greedily by damage saved per byte, give the Lagrangian (LP)
// relaxation's bound and a feasible start; a depth-first branch and bound over every candidate
// (not only hull points) with that bound then closes the gap. It stops at `node_limit` nodes:
// the result then carries the remaining gap, (D - bound) / D, else it is optimal (gap 0).
// Constraints: `fixed_rank` keeps only candidates of that rank (and keep); `min_bits_ends` keeps
// only candidates of at least that many bits in the first and the last layer (keep = 16 bits).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loftq/plan.h"
#include "mixed/sweep.h"

namespace loftq {

struct AllocOptions {
    uint64_t budget_bytes = 0;         // the whole model's bytes (plan_size's total_bytes)
    bool output_error = true;          // use output errors when the sweep has them
    std::optional<int> fixed_rank;
    int min_bits_ends = 0;             // 0 = no constraint
    uint64_t node_limit = 2'000'000;   // branch-and-bound nodes before settling for the gap
};

struct Allocation {
    std::vector<int> choice;           // per sweep weight: index into its candidates
    uint64_t bytes = 0;                // fixed + chosen (equals plan_size of the resulting plan)
    double damage = 0;                 // sum of e^2
    double bound = 0;                  // lower bound on the optimal damage
    double gap = 0;                    // (damage - bound) / damage; 0 when optimal
    bool optimal = false;
    uint64_t nodes = 0;
    std::string metric;                // "output error" or "weight error"
};

// Smallest and largest bytes a plan can take under the options' constraints.
uint64_t min_plan_bytes(const SweepResult& s, const AllocOptions& o);
uint64_t max_plan_bytes(const SweepResult& s, const AllocOptions& o);
// Budget in bytes for `bits` per parameter (all parameters, LoRA included: PlanSize::bits_per_param).
uint64_t budget_for_bits(const SweepResult& s, double bits);
// Parses "2.5bits", "2.5b", "600MB", "1.2GiB", "123456" (bytes). Throws loftq::Error.
uint64_t parse_budget(const std::string& text, const SweepResult& s);

// Throws loftq::Error when the budget is below the smallest possible plan (saying that minimum).
Allocation allocate(const SweepResult& s, const AllocOptions& o);

// The allocation as an ordinary plan: `base` (targets, block, T, SVD, seed, alpha) with one
// override per sweep weight (quant + rank, or "keep").
Plan plan_from_allocation(const SweepResult& s, const Allocation& a, const Plan& base);

// The allocator's front: `points` budgets spread from the smallest to the largest plan.
struct FrontPoint {
    uint64_t bytes = 0;
    double bits_per_param = 0;
    double damage = 0;
    Allocation alloc;
};
std::vector<FrontPoint> allocation_front(const SweepResult& s, const AllocOptions& o, int points);

// Damage of a uniform setting (every weight the same candidate label, e.g. "nf3 r16"), with its
// bytes; nullopt when some weight lacks that candidate.
struct UniformPoint {
    std::string label;
    uint64_t bytes = 0;
    double damage = 0;
    std::vector<int> choice;
};
std::optional<UniformPoint> uniform_point(const SweepResult& s, const std::string& label, bool output_error = true);

// The damage of a candidate under the options (e^2).
double candidate_damage(const SweepCandidate& c, bool use_output);

}  // namespace loftq
