// name_table.h: an enum's one table of names (value <-> name). Parsing, printing, the JSON that
// files store (plans, checkpoints, manifests, caches), the CLI's choices and the GUI's combo
// boxes all read the same table, declared once beside the enum:
//   enum class GemmMode : uint8_t { Tf32, Fp32, Bf16 };
//   inline constexpr auto kGemmModeNames =
//       name_table<GemmMode>("GEMM mode", {{GemmMode::Tf32, "tf32"}, {GemmMode::Fp32, "fp32"}, ...});
// Names match exactly (case-sensitive): they are what files hold, so renaming one breaks the
// files written before. The order is the order choices are offered in.
#pragma once
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace loftq {

template <class E>
struct EnumName {
    E value;
    const char* name;
};

template <class E, size_t N>
struct NameTable {
    const char* what;                    // what a value is, for messages: "GEMM mode"
    std::array<EnumName<E>, N> entries;

    // The value's name; "?" for a value outside the table (a cast from a bad integer).
    constexpr const char* name(E v) const {
        for (const auto& e : entries)
            if (e.value == v) return e.name;
        return "?";
    }
    // The value named `s`, or nullopt.
    constexpr std::optional<E> find(std::string_view s) const {
        for (const auto& e : entries)
            if (s == e.name) return e.value;
        return std::nullopt;
    }
    // The value named `s`; else throws loftq::Error naming the value and the choices:
    // "unknown GEMM mode 'bf8' (expected tf32, fp32 or bf16)".
    E parse(std::string_view s) const {
        if (auto v = find(s)) return *v;
        throw Error("unknown " + std::string(what) + " '" + std::string(s) + "' (expected " + choices() + ")");
    }
    // The names for a message: "tf32, fp32 or bf16" (sep ", " and last " or "), or joined by
    // `sep` alone when `last` is null ("tf32|fp32|bf16").
    std::string choices(const char* sep = ", ", const char* last = " or ") const {
        std::string s;
        for (size_t i = 0; i < N; ++i) {
            if (i > 0) s += (i + 1 == N && last) ? last : sep;
            s += entries[i].name;
        }
        return s;
    }
    constexpr auto begin() const { return entries.begin(); }
    constexpr auto end() const { return entries.end(); }
    static constexpr size_t size() { return N; }
};

// The table of `entries`, N counted from the list.
template <class E, size_t N>
constexpr NameTable<E, N> name_table(const char* what, const EnumName<E> (&entries)[N]) {
    return {what, std::to_array(entries)};
}

}  // namespace loftq
