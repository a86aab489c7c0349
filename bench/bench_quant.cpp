// bench_quant.cpp: Google Benchmark timings of engine/quant: fused quantize_dequantize (the LoftQ
// inner loop) for every format, at a 4096 x 4096 weight (RAM-bound, 64 MiB in + 64 MiB out) and
// at 256 x 256 (256 KiB in + out, fits in L2), threads 1 and 2, block 64; plus dequantize and
// code packing alone. Bytes processed = bytes read + bytes written, so the GB/s column compares
// directly with memory bandwidth (wall time, so threads = 2 is not flattered by counting only the
// main thread's CPU). 256 x 256 stays on one thread (the split needs >= 64K elements per
// thread). Reports only; asserts nothing about time.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "core/rng.h"
#include "quant/quantizer.h"

namespace {

constexpr int kBlock = 64;

std::vector<float> gaussian(size_t n, uint64_t seed) {
    loftq::Rng rng(seed);
    std::vector<float> v(n);
    for (auto& x : v) x = float(rng.normal());
    return v;
}

// args: kind, side (a side x side weight), threads
void BM_QuantizeDequantize(benchmark::State& st) {
    const auto& f = loftq::quant_format(loftq::QuantKind(st.range(0)));
    const size_t n = size_t(st.range(1)) * size_t(st.range(1));
    const int threads = int(st.range(2));
    std::vector<float> x = gaussian(n, 1), out(n), scales(loftq::num_blocks(n, kBlock));
    std::vector<uint8_t> codes(n);
    for (auto _ : st) {
        loftq::quantize_dequantize(f, x.data(), n, kBlock, out.data(), codes.data(), scales.data(), threads);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    // read x (4 B), write out (4 B) and codes (1 B) per element, plus the scales
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n * 9 + scales.size() * 4));
    st.SetLabel(f.name);
}

// The same without the codes/scales side outputs (what the LoftQ loop needs between SVDs).
void BM_QuantizeDequantizeOutOnly(benchmark::State& st) {
    const auto& f = loftq::quant_format(loftq::QuantKind(st.range(0)));
    const size_t n = size_t(st.range(1)) * size_t(st.range(1));
    const int threads = int(st.range(2));
    std::vector<float> x = gaussian(n, 1), out(n);
    for (auto _ : st) {
        loftq::quantize_dequantize(f, x.data(), n, kBlock, out.data(), nullptr, nullptr, threads);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n * 8));
    st.SetLabel(f.name);
}

void BM_Dequantize(benchmark::State& st) {
    const auto& f = loftq::quant_format(loftq::QuantKind(st.range(0)));
    const size_t n = size_t(st.range(1)) * size_t(st.range(1));
    const int threads = int(st.range(2));
    std::vector<float> x = gaussian(n, 1), out(n), scales(loftq::num_blocks(n, kBlock));
    std::vector<uint8_t> codes(n);
    loftq::quantize(f, x.data(), n, kBlock, codes.data(), scales.data(), 2);
    for (auto _ : st) {
        loftq::dequantize(f, codes.data(), scales.data(), n, kBlock, out.data(), threads);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n * 5 + scales.size() * 4));
    st.SetLabel(f.name);
}

// args: bits, side; bytes = codes read + packed written.
void BM_Pack(benchmark::State& st) {
    const int bits = int(st.range(0));
    const size_t n = size_t(st.range(1)) * size_t(st.range(1));
    std::vector<uint8_t> codes(n), packed(loftq::packed_size(n, bits));
    loftq::Rng rng(3);
    for (auto& c : codes) c = uint8_t(rng.next() & ((1u << bits) - 1u));
    for (auto _ : st) {
        loftq::pack_codes(codes.data(), n, bits, packed.data());
        benchmark::DoNotOptimize(packed.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n + packed.size()));
}

void BM_Unpack(benchmark::State& st) {
    const int bits = int(st.range(0));
    const size_t n = size_t(st.range(1)) * size_t(st.range(1));
    std::vector<uint8_t> codes(n), packed(loftq::packed_size(n, bits), 0x5A);
    for (auto _ : st) {
        loftq::unpack_codes(packed.data(), n, bits, codes.data());
        benchmark::DoNotOptimize(codes.data());
        benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(n + packed.size()));
}

void format_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"kind", "side", "threads"});
    for (loftq::QuantKind k : loftq::all_quant_kinds())
        for (int side : {4096, 256})
            for (int threads : {1, 2}) b->Args({int64_t(k), side, threads});
    b->Unit(benchmark::kMillisecond)->UseRealTime();  // wall time: worker threads' CPU is not counted
}

void nf4_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"kind", "side", "threads"});
    for (loftq::QuantKind k : {loftq::QuantKind::NF4, loftq::QuantKind::NF2, loftq::QuantKind::INT8})
        for (int threads : {1, 2}) b->Args({int64_t(k), 4096, threads});
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

void pack_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"bits", "side"});
    for (int bits : {2, 3, 4, 8}) b->Args({bits, 4096});
    b->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_QuantizeDequantize)->Apply(format_args);
BENCHMARK(BM_QuantizeDequantizeOutOnly)->Apply(nf4_args);
BENCHMARK(BM_Dequantize)->Apply(format_args);
BENCHMARK(BM_Pack)->Apply(pack_args);
BENCHMARK(BM_Unpack)->Apply(pack_args);

BENCHMARK_MAIN();
