// rng.h: a small, portable, seedable random generator (splitmix64 seeding + xoshiro256**),
// and Gaussian samples by Box-Muller. Unlike std::normal_distribution its output is the same on
// every platform and standard library, which keeps randomized SVD results reproducible.
#pragma once
#include <cmath>
#include <cstdint>
#include <string_view>

namespace loftq {

inline uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// FNV-1a of a name: per-weight seeds are seed ^ hash(name), independent of scheduling order.
inline uint64_t hash_name(std::string_view s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) { h ^= c; h *= 0x100000001b3ull; }
    return h;
}

struct Rng {
    uint64_t s[4];
    explicit Rng(uint64_t seed) {
        for (auto& v : s) v = splitmix64(seed);
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
        return result;
    }
    // Uniform in (0, 1]: never 0, so log() is safe.
    double uniform() { return (double(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0); }
    // Standard normal pair by Box-Muller; returns one, keeps the other.
    double normal() {
        if (has_spare) { has_spare = false; return spare; }
        double u1 = uniform(), u2 = uniform();
        double rad = std::sqrt(-2.0 * std::log(u1));
        spare = rad * std::sin(6.283185307179586 * u2);
        has_spare = true;
        return rad * std::cos(6.283185307179586 * u2);
    }
    bool has_spare = false;
    double spare = 0;
};

}  // namespace loftq
