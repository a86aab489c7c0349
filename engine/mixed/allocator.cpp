// allocator.cpp: see allocator.h.
#include "mixed/allocator.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/units.h"

namespace loftq {

double candidate_damage(const SweepCandidate& c, bool use_output) {
    const double e = use_output && c.out_error >= 0 ? c.out_error : c.error;
    return e * e;
}

namespace {

int candidate_bits(const SweepCandidate& c) { return c.keep ? 16 : quant_format(c.s.quant).bits; }

struct Item {
    int cand = 0;          // index into the weight's candidates
    uint64_t bytes = 0;
    double damage = 0;
};

// Allowed, non-dominated candidates of every weight, sorted by bytes ascending (damage then
// strictly descending).
std::vector<std::vector<Item>> allowed_items(const SweepResult& s, const AllocOptions& o, bool use_output) {
    int first = std::numeric_limits<int>::max(), last = -1;
    for (const auto& w : s.weights)
        if (w.layer >= 0) first = std::min(first, w.layer), last = std::max(last, w.layer);
    std::vector<std::vector<Item>> items(s.weights.size());
    for (size_t i = 0; i < s.weights.size(); ++i) {
        const WeightSweep& w = s.weights[i];
        std::vector<Item> all;
        for (size_t c = 0; c < w.candidates.size(); ++c) {
            const SweepCandidate& k = w.candidates[c];
            if (o.fixed_rank && !k.keep && k.s.rank != *o.fixed_rank) continue;
            if (o.min_bits_ends > 0 && w.layer >= 0 && (w.layer == first || w.layer == last) &&
                candidate_bits(k) < o.min_bits_ends)
                continue;
            all.push_back({int(c), k.bytes, candidate_damage(k, use_output)});
        }
        if (all.empty())
            throw Error("", w.name, "no sweep candidate satisfies the constraints (fixed rank / minimum bits)");
        std::sort(all.begin(), all.end(), [](const Item& a, const Item& b) {
            return a.bytes != b.bytes ? a.bytes < b.bytes : a.damage < b.damage;
        });
        for (const Item& it : all)
            if (items[i].empty() || it.damage < items[i].back().damage) items[i].push_back(it);
    }
    return items;
}

struct Segment {
    int weight = 0;
    uint64_t dbytes = 0;
    double gain = 0;       // damage saved
    double ratio = 0;      // gain per byte
};

// Lower convex hull segments of every weight, sorted by ratio (descending), per-weight order kept.
std::vector<Segment> hull_segments(const std::vector<std::vector<Item>>& items) {
    std::vector<Segment> segs;
    for (size_t i = 0; i < items.size(); ++i) {
        const auto& v = items[i];
        std::vector<size_t> h;
        for (size_t k = 0; k < v.size(); ++k) {
            // pop while the last point lies on or above the chord from h[-2] to k
            while (h.size() >= 2) {
                const Item& a = v[h[h.size() - 2]];
                const Item& b = v[h.back()];
                const Item& c = v[k];
                const double lhs = (a.damage - b.damage) * double(c.bytes - a.bytes);
                const double rhs = (a.damage - c.damage) * double(b.bytes - a.bytes);
                if (lhs <= rhs) h.pop_back(); else break;
            }
            h.push_back(k);
        }
        for (size_t k = 0; k + 1 < h.size(); ++k) {
            const Item& a = v[h[k]];
            const Item& b = v[h[k + 1]];
            Segment sg;
            sg.weight = int(i);
            sg.dbytes = b.bytes - a.bytes;
            sg.gain = a.damage - b.damage;
            sg.ratio = sg.gain / double(sg.dbytes);
            segs.push_back(sg);
        }
    }
    std::stable_sort(segs.begin(), segs.end(), [](const Segment& a, const Segment& b) { return a.ratio > b.ratio; });
    return segs;
}

}  // namespace

uint64_t min_plan_bytes(const SweepResult& s, const AllocOptions& o) {
    uint64_t b = s.fixed_bytes;
    for (const auto& v : allowed_items(s, o, true)) b += v.front().bytes;
    return b;
}

uint64_t max_plan_bytes(const SweepResult& s, const AllocOptions& o) {
    uint64_t b = s.fixed_bytes;
    for (const auto& v : allowed_items(s, o, true)) b += v.back().bytes;
    return b;
}

uint64_t budget_for_bits(const SweepResult& s, double bits) {
    return uint64_t(std::floor(bits * double(s.params) / 8.0));
}

uint64_t parse_budget(const std::string& text, const SweepResult& s) {
    std::string t;
    for (char c : text)
        if (!std::isspace(static_cast<unsigned char>(c))) t += char(std::tolower(static_cast<unsigned char>(c)));
    size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(t, &pos);
    } catch (const std::exception&) {
        throw Error("budget '" + text + "': expected a number with a unit, e.g. 2.5bits, 600MB, 1.2GiB");
    }
    const std::string unit = t.substr(pos);
    if (!(v > 0)) throw Error("budget '" + text + "' must be positive");
    if (unit == "bits" || unit == "bit" || unit == "b" || unit == "bpp") return budget_for_bits(s, v);
    static const std::pair<const char*, double> kUnits[] = {{"", 1},     {"bytes", 1}, {"kb", 1e3},         {"mb", 1e6},
                                                            {"gb", 1e9}, {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}};
    for (const auto& [u, f] : kUnits)
        if (unit == u) return uint64_t(std::floor(v * f));
    throw Error("budget '" + text + "': unknown unit '" + unit + "' (bits, B, KB, MB, GB, KiB, MiB, GiB)");
}

Allocation allocate(const SweepResult& s, const AllocOptions& o) {
    const bool use_output = o.output_error && s.calibrated;
    const auto items = allowed_items(s, o, use_output);
    const size_t K = items.size();
    uint64_t min_bytes = s.fixed_bytes;
    for (const auto& v : items) min_bytes += v.front().bytes;
    if (o.budget_bytes < min_bytes)
        throw Error("budget " + human_bytes(double(o.budget_bytes)) + " (" + std::to_string(o.budget_bytes) +
                    " bytes) is below the smallest possible plan: " + human_bytes(double(min_bytes)) + " (" +
                    std::to_string(min_bytes) + " bytes, " + std::to_string(8.0 * double(min_bytes) / double(std::max<uint64_t>(1, s.params))) +
                    " bits per parameter)");
    const std::vector<Segment> segs = hull_segments(items);

    // Branch and bound over weights ordered by how much damage is at stake.
    std::vector<size_t> order(K);
    for (size_t i = 0; i < K; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return items[a].front().damage - items[a].back().damage > items[b].front().damage - items[b].back().damage;
    });
    std::vector<size_t> depth_of(K);
    for (size_t d = 0; d < K; ++d) depth_of[order[d]] = d;
    // suffix sums over the order: min bytes and min-bytes damage of weights at depth >= d
    std::vector<uint64_t> rest_bytes(K + 1, 0);
    std::vector<double> rest_damage(K + 1, 0);
    for (size_t d = K; d-- > 0;) {
        rest_bytes[d] = rest_bytes[d + 1] + items[order[d]].front().bytes;
        rest_damage[d] = rest_damage[d + 1] + items[order[d]].front().damage;
    }
    // LP bound of the weights at depth >= d with `slack` bytes beyond their minimum.
    auto lp_bound = [&](size_t d, uint64_t slack) {
        double v = rest_damage[d];
        for (const Segment& sg : segs) {
            if (depth_of[size_t(sg.weight)] < d) continue;
            if (sg.dbytes <= slack) {
                slack -= sg.dbytes;
                v -= sg.gain;
            } else {
                v -= sg.gain * double(slack) / double(sg.dbytes);
                break;
            }
        }
        return v;
    };

    Allocation best;
    best.metric = use_output ? "output error" : "weight error";
    best.damage = std::numeric_limits<double>::infinity();
    // Incumbent: the greedy integral solution along the hull (a weight stops at its first skip).
    {
        std::vector<size_t> pos(K, 0);      // index into items (hull points are a subset, walk by bytes)
        std::vector<bool> stopped(K, false);
        std::vector<uint64_t> cur_b(K);
        std::vector<double> cur_d(K);
        uint64_t slack = o.budget_bytes - min_bytes;
        for (size_t i = 0; i < K; ++i) cur_b[i] = items[i].front().bytes, cur_d[i] = items[i].front().damage;
        for (const Segment& sg : segs) {
            const size_t i = size_t(sg.weight);
            if (stopped[i]) continue;
            if (sg.dbytes <= slack) {
                slack -= sg.dbytes;
                cur_b[i] += sg.dbytes;
                cur_d[i] -= sg.gain;
            } else {
                stopped[i] = true;
            }
        }
        best.choice.resize(K);
        best.damage = 0;
        for (size_t i = 0; i < K; ++i) {
            // the hull point with these bytes
            for (const Item& it : items[i])
                if (it.bytes == cur_b[i]) { best.choice[i] = it.cand; break; }
            best.damage += cur_d[i];
        }
        (void)pos;
    }
    const double root_bound = lp_bound(0, o.budget_bytes - min_bytes);

    std::vector<int> cur(K, 0);
    uint64_t nodes = 0;
    bool truncated = false;
    // d: depth; used: bytes of the weights fixed so far; dmg: their damage.
    auto dfs = [&](auto&& self, size_t d, uint64_t used, double dmg) -> void {
        if (truncated) return;
        if (++nodes > o.node_limit) { truncated = true; return; }
        if (d == K) {
            if (dmg < best.damage) {
                best.damage = dmg;
                for (size_t j = 0; j < K; ++j) best.choice[order[j]] = cur[j];
            }
            return;
        }
        const uint64_t cap = o.budget_bytes - s.fixed_bytes;   // bytes for all weights
        const auto& v = items[order[d]];
        // candidates by damage ascending = bytes descending (non-dominated list reversed)
        for (size_t k = v.size(); k-- > 0;) {
            const Item& it = v[k];
            if (used + it.bytes + rest_bytes[d + 1] > cap) continue;
            const double nd = dmg + it.damage;
            const uint64_t slack = cap - used - it.bytes - rest_bytes[d + 1];
            if (nd + lp_bound(d + 1, slack) >= best.damage * (1 - 1e-12)) continue;
            cur[d] = it.cand;
            self(self, d + 1, used + it.bytes, nd);
            if (truncated) return;
        }
    };
    dfs(dfs, 0, 0, 0.0);
    best.nodes = nodes;
    best.optimal = !truncated;
    best.bound = best.optimal ? best.damage : std::min(best.damage, root_bound);
    best.gap = best.optimal || best.damage <= 0 ? 0.0 : (best.damage - best.bound) / best.damage;
    best.bytes = s.fixed_bytes;
    for (size_t i = 0; i < K; ++i) best.bytes += s.weights[i].candidates[size_t(best.choice[i])].bytes;
    // The damage as a plain sum over the chosen candidates (no accumulated rounding).
    best.damage = 0;
    for (size_t i = 0; i < K; ++i) best.damage += candidate_damage(s.weights[i].candidates[size_t(best.choice[i])], use_output);
    return best;
}

Plan plan_from_allocation(const SweepResult& s, const Allocation& a, const Plan& base) {
    Plan p = base;
    for (size_t i = 0; i < s.weights.size(); ++i) {
        const SweepCandidate& c = s.weights[i].candidates[size_t(a.choice[i])];
        SettingsPatch patch;
        if (c.keep) {
            patch.target = false;
        } else {
            patch.quant = c.s.quant;
            patch.rank = c.s.rank;
        }
        p.overrides[s.weights[i].name] = patch;
    }
    return p;
}

std::vector<FrontPoint> allocation_front(const SweepResult& s, const AllocOptions& o, int points) {
    std::vector<FrontPoint> r;
    const uint64_t lo = min_plan_bytes(s, o), hi = max_plan_bytes(s, o);
    points = std::max(2, points);
    for (int k = 0; k < points; ++k) {
        AllocOptions ok = o;
        ok.budget_bytes = lo + uint64_t(double(hi - lo) * double(k) / double(points - 1));
        FrontPoint f;
        f.alloc = allocate(s, ok);
        f.bytes = f.alloc.bytes;
        f.damage = f.alloc.damage;
        f.bits_per_param = 8.0 * double(f.bytes) / double(std::max<uint64_t>(1, s.params));
        if (!r.empty() && r.back().bytes == f.bytes) continue;
        r.push_back(std::move(f));
    }
    return r;
}

std::optional<UniformPoint> uniform_point(const SweepResult& s, const std::string& label, bool output_error) {
    UniformPoint u;
    u.label = label;
    u.bytes = s.fixed_bytes;
    const bool use_output = output_error && s.calibrated;
    for (const auto& w : s.weights) {
        int found = -1;
        for (size_t c = 0; c < w.candidates.size(); ++c)
            if (w.candidates[c].label() == label) { found = int(c); break; }
        if (found < 0) return std::nullopt;
        u.choice.push_back(found);
        u.bytes += w.candidates[size_t(found)].bytes;
        u.damage += candidate_damage(w.candidates[size_t(found)], use_output);
    }
    return u;
}

}  // namespace loftq
