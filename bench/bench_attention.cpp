// Google Benchmark cases for the CPU attention ladder (naive, gemm, flash), forward and
// forward+backward, causal, B=4, H=8, d=64 at a few sequence lengths. Counters report GFLOP/s with
// the FlashAttention convention (forward 4·B·H·N²·d halved when causal; backward 2.5× forward).
//   build/bench_attention --benchmark_format=json
#include <benchmark/benchmark.h>

#include <vector>

#include "cpu/attention.h"
#include "util/rng.h"

namespace {
using cairn::cpu::AttnImpl;

struct Inputs {
  int B = 4, H = 8, N, d = 64;
  std::vector<int32_t> cu;
  std::vector<float> qkv, dout, out, lse, dqkv;
  explicit Inputs(int n) : N(n) {
    for (int s = 0; s <= B; ++s) cu.push_back(s * N);
    const size_t C = static_cast<size_t>(H) * d, T = static_cast<size_t>(B) * N;
    qkv.resize(T * 3 * C), dout.resize(T * C), out.resize(T * C), lse.resize(T * H), dqkv.resize(T * 3 * C);
    cairn::Rng r(1);
    for (auto& x : qkv) x = static_cast<float>(2 * r.uniform() - 1);
    for (auto& x : dout) x = static_cast<float>(2 * r.uniform() - 1);
  }
  double fwd_flops() const { return 4.0 * B * H * static_cast<double>(N) * N * d * 0.5; }
};

void BM_Attention(benchmark::State& st, AttnImpl impl, bool backward) {
  Inputs in(static_cast<int>(st.range(0)));
  for (auto _ : st) {
    cairn::cpu::attention_forward(impl, in.out.data(), in.lse.data(), in.qkv.data(), in.cu.data(), in.B, in.H, in.H, in.d, true);
    if (backward)
      cairn::cpu::attention_backward(impl, in.dqkv.data(), in.dout.data(), in.qkv.data(), in.out.data(), in.lse.data(),
                                     in.cu.data(), in.B, in.H, in.H, in.d, true);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  const double flops = in.fwd_flops() * (backward ? 3.5 : 1.0);
  st.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK_CAPTURE(BM_Attention, naive_fwd, AttnImpl::Naive, false)->Arg(256)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Attention, gemm_fwd, AttnImpl::Gemm, false)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Attention, flash_fwd, AttnImpl::Flash, false)->Arg(256)->Arg(1024)->Arg(4096)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Attention, gemm_fwd_bwd, AttnImpl::Gemm, true)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Attention, flash_fwd_bwd, AttnImpl::Flash, true)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
