// `cairn bench attention`: for every shape of the sweep, each implementation is first VALIDATED
// against the naive double-accumulation reference on the same random inputs (max abs / rel error;
// a mismatch fails the run with exit 1), then timed (warm-up, median of repeats). Sequences longer
// than --max-ref-seq are validated on their first --max-ref-seq tokens (the same inputs, truncated),
// since the reference is O(N²) in double. FLOPs follow FlashAttention: forward 4·B·H·N²·d, halved
// when causal; backward 2.5× forward. Memory: the extra bytes each implementation allocates.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include "cairn/errors.h"
#include "cairn/io.h"
#include "cli/command.h"
#include "cli/common.h"
#include "bench/probes/probes.h"
#include "cairn/backend.h"
#include "cpu/attention.h"
#include "util/threads.h"
#include "util/rng.h"
#include "util/timing.h"

namespace cairn::cli {
namespace {

std::vector<int> int_list(const std::string& s, const char* flag) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    try {
      v.push_back(std::stoi(tok));
    } catch (const std::exception&) {
      throw UsageError(std::string("--") + flag + ": not a number: '" + tok + "'");
    }
    if (v.back() < 1) throw UsageError(std::string("--") + flag + " values must be ≥ 1");
  }
  if (v.empty()) throw UsageError(std::string("--") + flag + " is empty");
  return v;
}

struct Problem {
  int B, H, KV, N, d;  // KV key/value heads (grouped-query attention when KV < H)
  bool causal;
  std::vector<int32_t> cu;
  std::vector<float> qkv, dout, out, lse, dqkv;
  Problem(int B_, int H_, int KV_, int N_, int d_, bool causal_, uint64_t seed)
      : B(B_), H(H_), KV(KV_), N(N_), d(d_), causal(causal_) {
    for (int s = 0; s <= B; ++s) cu.push_back(s * N);
    const size_t C = static_cast<size_t>(H) * d, W = static_cast<size_t>(H + 2 * KV) * d, T = static_cast<size_t>(B) * N;
    qkv.resize(T * W), dout.resize(T * C), out.resize(T * C), lse.resize(T * H), dqkv.resize(T * W);
    Rng r(seed);
    for (auto& x : qkv) x = static_cast<float>(2 * r.uniform() - 1);
    for (auto& x : dout) x = static_cast<float>(2 * r.uniform() - 1);
  }
  // The same inputs with every sequence cut to its first M tokens.
  Problem prefix(int M) const {
    Problem p(B, H, KV, M, d, causal, 0);
    const size_t C = static_cast<size_t>(H) * d, W = static_cast<size_t>(H + 2 * KV) * d;
    for (int s = 0; s < B; ++s) {
      std::copy_n(qkv.begin() + static_cast<size_t>(s) * N * W, static_cast<size_t>(M) * W, p.qkv.begin() + static_cast<size_t>(s) * M * W);
      std::copy_n(dout.begin() + static_cast<size_t>(s) * N * C, static_cast<size_t>(M) * C, p.dout.begin() + static_cast<size_t>(s) * M * C);
    }
    return p;
  }
  void forward(cpu::AttnImpl impl) { cpu::attention_forward(impl, out.data(), lse.data(), qkv.data(), cu.data(), B, H, KV, d, causal); }
  void backward(cpu::AttnImpl impl) {
    cpu::attention_backward(impl, dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), cu.data(), B, H, KV, d, causal);
  }
};

struct Err {
  double abs = 0, rel = 0;
};
Err compare(const std::vector<float>& a, const std::vector<float>& ref) {
  Err e;
  double scale = 0;
  for (float r : ref) scale = std::max(scale, static_cast<double>(std::fabs(r)));
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - ref[i]);
    e.abs = std::isnan(d) ? INFINITY : std::max(e.abs, d);
  }
  e.rel = e.abs / std::max(scale, 1e-30);
  return e;
}

std::string svg_plot(const nlohmann::json& rows, const std::string& metric, const std::string& title) {
  // log-log: x = sequence length, y = time (ms); one polyline per implementation.
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  double xmin = 1e300, xmax = 0, ymin = 1e300, ymax = 0;
  for (const auto& r : rows) {
    if (!r.contains(metric) || r[metric].is_null()) continue;
    const double x = r["seq_len"].get<double>(), y = r[metric].get<double>();
    series[r["impl"].get<std::string>() + " d" + std::to_string(r["head_dim"].get<int>())].push_back({x, y});
    xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymin = std::min(ymin, y), ymax = std::max(ymax, y);
  }
  const double W = 720, H = 480, L = 80, R = 170, T = 40, Bm = 60;
  if (series.empty()) return "";
  if (xmax <= xmin) xmax = xmin * 2;
  if (ymax <= ymin) ymax = ymin * 2;
  const double lx0 = std::floor(std::log10(xmin)), lx1 = std::ceil(std::log10(xmax)), ly0 = std::floor(std::log10(ymin)),
               ly1 = std::ceil(std::log10(ymax));
  auto px = [&](double x) { return L + (std::log10(x) - lx0) / (lx1 - lx0) * (W - L - R); };
  auto py = [&](double y) { return H - Bm - (std::log10(y) - ly0) / (ly1 - ly0) * (H - T - Bm); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif' font-size='12'>\n"
    << "<rect width='100%' height='100%' fill='white'/>\n<text x='" << W / 2 << "' y='22' text-anchor='middle' font-size='15'>" << title << "</text>\n";
  for (double e = lx0; e <= lx1; ++e)
    s << "<line x1='" << px(std::pow(10, e)) << "' y1='" << T << "' x2='" << px(std::pow(10, e)) << "' y2='" << H - Bm
      << "' stroke='#ddd'/><text x='" << px(std::pow(10, e)) << "' y='" << H - Bm + 18 << "' text-anchor='middle'>1e" << e << "</text>\n";
  for (double e = ly0; e <= ly1; ++e)
    s << "<line x1='" << L << "' y1='" << py(std::pow(10, e)) << "' x2='" << W - R << "' y2='" << py(std::pow(10, e))
      << "' stroke='#ddd'/><text x='" << L - 8 << "' y='" << py(std::pow(10, e)) + 4 << "' text-anchor='end'>1e" << e << "</text>\n";
  s << "<text x='" << (L + W - R) / 2 << "' y='" << H - 15 << "' text-anchor='middle'>sequence length N (log)</text>\n"
    << "<text transform='translate(20," << (T + H - Bm) / 2 << ") rotate(-90)' text-anchor='middle'>time, ms (log)</text>\n";
  const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  int k = 0;
  for (auto& [name, pts] : series) {
    const char* c = colors[k % 8];
    s << "<polyline fill='none' stroke='" << c << "' stroke-width='2' points='";
    for (auto& [x, y] : pts) s << px(x) << "," << py(y) << " ";
    s << "'/>\n";
    for (auto& [x, y] : pts) s << "<circle cx='" << px(x) << "' cy='" << py(y) << "' r='3' fill='" << c << "'/>\n";
    s << "<text x='" << W - R + 10 << "' y='" << T + 18 * k + 10 << "' fill='" << c << "'>" << name << "</text>\n";
    ++k;
  }
  s << "</svg>\n";
  return s.str();
}

int scale_demo(bool as_json) {
  // For random q, k ~ N(0, I_d) and N = 1024 keys: softmax(q·k) vs softmax(q·k/√d).
  const int N = 1024, queries = 256;
  Rng r(3);
  nlohmann::json rows = nlohmann::json::array();
  if (!as_json) std::printf("%6s  %22s  %22s\n%6s  %10s %11s  %10s %11s\n", "", "without 1/sqrt(d)", "with 1/sqrt(d)", "d", "max weight",
                            "entropy", "max weight", "entropy");
  for (int d : {16, 32, 64, 128, 256, 512}) {
    double stats[2][2] = {{0, 0}, {0, 0}};  // [scaled][max, entropy]
    std::vector<double> k(static_cast<size_t>(N) * d), q(d), s(N);
    for (auto& x : k) x = r.normal();
    for (int qi = 0; qi < queries; ++qi) {
      for (auto& x : q) x = r.normal();
      for (int j = 0; j < N; ++j) {
        double dot = 0;
        for (int e = 0; e < d; ++e) dot += q[e] * k[static_cast<size_t>(j) * d + e];
        s[j] = dot;
      }
      for (int scaled = 0; scaled < 2; ++scaled) {
        const double f = scaled ? 1.0 / std::sqrt(static_cast<double>(d)) : 1.0;
        double mx = -1e300, z = 0, ent = 0, pmax = 0;
        for (double v : s) mx = std::max(mx, v * f);
        for (double v : s) z += std::exp(v * f - mx);
        for (double v : s) {
          const double p = std::exp(v * f - mx) / z;
          pmax = std::max(pmax, p);
          if (p > 0) ent -= p * std::log(p);
        }
        stats[scaled][0] += pmax / queries, stats[scaled][1] += ent / queries;
      }
    }
    rows.push_back({{"d", d}, {"unscaled_max_weight", stats[0][0]}, {"unscaled_entropy", stats[0][1]},
                    {"scaled_max_weight", stats[1][0]}, {"scaled_entropy", stats[1][1]}});
    if (!as_json) std::printf("%6d  %10.3f %11.3f  %10.3f %11.3f\n", d, stats[0][0], stats[0][1], stats[1][0], stats[1][1]);
  }
  if (as_json) std::cout << nlohmann::json{{"bench", "attention_scale_demo"}, {"keys", N}, {"max_entropy", std::log(N)}, {"rows", rows}}.dump() << "\n";
  else std::printf("(uniform attention over %d keys has entropy %.3f; without the scale the largest logit's lead grows like √d\n"
                   " and attention collapses onto one key, whose softmax gradient then vanishes)\n", N, std::log(static_cast<double>(N)));
  return 0;
}

// --device cuda: the GPU ladder (naive reference, flash) on bf16 (default) or fp32 inputs.
// --tokens T keeps B·N = T across the sweep (batch = T / N), --model-dim D sets heads = D / d, as
// FlashAttention's own benchmarks do.
int run_cuda(const cxxopts::ParseResult& a, bool as_json) {
  make_backend("cuda");  // says plainly why not: no CUDA backend built, or no device
  const std::string dtype = a["dtype"].as<std::string>();
  if (dtype != "bf16" && dtype != "fp32") throw UsageError("--dtype must be bf16 or fp32");
  const bool causal = a["causal"].as<bool>(), backward = a.count("backward") > 0;
  const int reps = a["repeats"].as<int>(), warm = a["warmup"].as<int>();
  if (reps < 1 || warm < 0) throw UsageError("--repeats must be ≥ 1");
  const double peak = a.count("no-sgemm") ? 0.0 : cuda_bf16_gemm_tflops();
  nlohmann::json rows = nlohmann::json::array();
  bool all_ok = true;
  if (!as_json)
    std::printf("cairn bench attention — %s, %s, %s%s\n%-6s %3s %3s %6s %4s %9s %9s %9s %8s %11s %8s %9s\n",
                cuda_device_name().c_str(), dtype.c_str(), causal ? "causal" : "full",
                peak > 0 ? (", cuBLAS bf16 GEMM " + std::to_string(static_cast<int>(peak)) + " TFLOP/s").c_str() : "", "impl",
                "B", "H", "N", "d", "err out", "err grad", "fwd ms", "TFLOP/s", "fwd+bwd ms", "TFLOP/s", "extra MiB");
  for (int d : int_list(a["head-dim"].as<std::string>(), "head-dim"))
    for (int N : int_list(a["seq-len"].as<std::string>(), "seq-len")) {
      CudaAttnCase c;
      c.batch = a.count("tokens") ? std::max(1, a["tokens"].as<int>() / N) : a["batch"].as<int>();
      c.heads = a.count("model-dim") ? std::max(1, a["model-dim"].as<int>() / d) : a["heads"].as<int>();
      c.seq_len = N, c.head_dim = d, c.causal = causal, c.backward = backward, c.bf16 = dtype == "bf16";
      c.warmup = warm, c.repeats = reps, c.time_naive = N <= a["max-naive-seq"].as<int>(), c.seed = 1000 + N + d;
      const double fwd_flops = 4.0 * c.batch * c.heads * double(N) * N * d * (causal ? 0.5 : 1.0);
      for (const CudaAttnResult& r : bench_attention_cuda(c)) {
        nlohmann::json row = {{"impl", r.impl}, {"batch", c.batch}, {"heads", c.heads}, {"seq_len", N}, {"head_dim", d},
                              {"causal", causal}, {"dtype", dtype}, {"valid", r.valid}, {"err_out", r.err_out},
                              {"err_dq", r.err_dq}, {"err_dk", r.err_dk}, {"err_dv", r.err_dv},
                              {"max_abs_err_lse", r.max_abs_lse}, {"extra_bytes", r.extra_bytes}};
        all_ok &= r.valid;
        if (r.fwd_ms > 0) {
          row["fwd_ms"] = r.fwd_ms, row["fwd_tflops"] = fwd_flops / r.fwd_ms / 1e9;
          if (peak > 0) row["fwd_fraction_of_gemm_peak"] = fwd_flops / r.fwd_ms / 1e9 / peak;
        }
        if (r.fwd_bwd_ms > 0) {
          row["fwd_bwd_ms"] = r.fwd_bwd_ms, row["fwd_bwd_tflops"] = 3.5 * fwd_flops / r.fwd_bwd_ms / 1e9;
          row["bwd_ms"] = r.fwd_bwd_ms - r.fwd_ms, row["bwd_tflops"] = 2.5 * fwd_flops / (r.fwd_bwd_ms - r.fwd_ms) / 1e9;
          if (peak > 0) row["fwd_bwd_fraction_of_gemm_peak"] = 3.5 * fwd_flops / r.fwd_bwd_ms / 1e9 / peak;
        }
        rows.push_back(row);
        if (!as_json) {
          const double eg = std::max({r.err_dq, r.err_dk, r.err_dv});
          std::printf("%-6s %3d %3d %6d %4d %9.2e %9.2e", r.impl.c_str(), c.batch, c.heads, N, d, r.err_out, eg);
          if (r.fwd_ms > 0) std::printf(" %9.3f %8.1f", r.fwd_ms, fwd_flops / r.fwd_ms / 1e9);
          else std::printf(" %9s %8s", "-", "-");
          if (r.fwd_bwd_ms > 0) std::printf(" %11.3f %8.1f", r.fwd_bwd_ms, 3.5 * fwd_flops / r.fwd_bwd_ms / 1e9);
          else std::printf(" %11s %8s", "-", "-");
          std::printf(" %9.1f%s%s\n", r.extra_bytes / 1048576.0, r.impl == "naive" ? "   (reference)" : "",
                      r.valid ? "" : "   MISMATCH");
        }
      }
    }
  nlohmann::json j = {{"bench", "attention"}, {"device", cuda_device_name()}, {"dtype", dtype},
                      {"bf16_gemm_tflops", peak},
                      {"flop_convention", "forward 4*B*H*N^2*d (halved when causal), backward 2.5x forward"},
                      {"all_valid", all_ok}, {"rows", rows}};
  if (a.count("plot")) {
    const std::string svg = svg_plot(rows, backward ? "fwd_bwd_ms" : "fwd_ms",
                                     std::string("cairn attention (GPU), ") + (backward ? "forward+backward" : "forward") + (causal ? ", causal" : ""));
    write_file_atomic(a["plot"].as<std::string>(), svg);
  }
  if (as_json) std::cout << j.dump() << "\n";
  if (!all_ok) std::fprintf(stderr, "error: an implementation disagrees with the reference (see err columns)\n");
  return all_ok ? 0 : 1;
}

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Validate, then time, the attention implementations (forward, and forward+backward).");
  o.add_options()
    ("batch", "sequences", cxxopts::value<int>()->default_value("4"))
    ("heads", "attention (query) heads", cxxopts::value<int>()->default_value("8"))
    ("kv-heads", "cpu: key/value heads, grouped-query attention (default: --heads)", cxxopts::value<int>())
    ("seq-len", "sequence length(s), comma-separated", cxxopts::value<std::string>()->default_value("1024"))
    ("head-dim", "head size(s), comma-separated", cxxopts::value<std::string>()->default_value("64"))
    ("causal", "causal mask (--causal=false for full attention)", cxxopts::value<bool>()->default_value("true"))
    ("backward", "also time forward+backward")
    ("impl", "implementations: naive,gemm,flash", cxxopts::value<std::string>()->default_value("naive,gemm,flash"))
    ("repeats", "timed repeats (median reported)", cxxopts::value<int>()->default_value("5"))
    ("warmup", "untimed runs first", cxxopts::value<int>()->default_value("1"))
    ("max-ref-seq", "validate on at most this prefix of each sequence", cxxopts::value<int>()->default_value("1024"))
    ("max-naive-seq", "do not time naive above this length", cxxopts::value<int>()->default_value("2048"))
    ("max-gemm-seq", "do not run gemm above this length (T² memory)", cxxopts::value<int>()->default_value("8192"))
    ("threads", "CPU threads (0: all cores)", cxxopts::value<int>()->default_value("0"))
    ("device", "cpu|cuda", cxxopts::value<std::string>()->default_value("cpu"))
    ("dtype", "cuda: bf16|fp32 storage of q, k, v, out and gradients", cxxopts::value<std::string>()->default_value("bf16"))
    ("tokens", "cuda: batch = tokens / seq-len for each length of the sweep", cxxopts::value<int>())
    ("model-dim", "cuda: heads = model-dim / head-dim", cxxopts::value<int>())
    ("plot", "write an SVG of time vs sequence length (log-log)", cxxopts::value<std::string>())
    ("scale-demo", "show why attention scores are scaled by 1/sqrt(d)")
    ("no-sgemm", "skip the SGEMM ceiling probe")
    ("json", "print one JSON object")
    ("h,help", "show this help");
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << "\nFLOPs (FlashAttention convention): forward 4·B·H·N²·d, halved when causal; backward 2.5× forward.\n";
    return 0;
  }
  const bool as_json = a.count("json") > 0;
  if (a.count("scale-demo")) return scale_demo(as_json);
  const std::string device = a["device"].as<std::string>();
  if (device == "cuda") return run_cuda(a, as_json);
  if (device != "cpu") throw UsageError("--device must be cpu or cuda");
  ThreadScope threads(threads_option(a));
  const int B = a["batch"].as<int>(), H = a["heads"].as<int>(), reps = a["repeats"].as<int>(), warm = a["warmup"].as<int>();
  const int KV = a.count("kv-heads") ? a["kv-heads"].as<int>() : H;
  if (B < 1 || H < 1 || reps < 1 || warm < 0) throw UsageError("--batch, --heads, --repeats must be ≥ 1");
  if (KV < 1 || H % KV != 0) throw UsageError("--kv-heads must divide --heads");
  const bool causal = a["causal"].as<bool>(), backward = a.count("backward") > 0;
  std::vector<cpu::AttnImpl> impls;
  {
    std::stringstream ss(a["impl"].as<std::string>());
    std::string t;
    while (std::getline(ss, t, ',')) try {
        impls.push_back(cpu::parse_attn_impl(t));
      } catch (const std::invalid_argument& e) {
        throw UsageError(e.what());
      }
  }
  const double sgemm = a.count("no-sgemm") ? 0.0 : cpu_sgemm_gflops(threads_option(a));
  nlohmann::json rows = nlohmann::json::array();
  bool all_ok = true;
  if (!as_json)
    std::printf("cairn bench attention — B %d, H %d, %s, %d threads%s\n%-6s %6s %4s %9s %9s %10s %9s %11s %9s %10s\n", B, H,
                causal ? "causal" : "full", omp_get_max_threads(),
                sgemm > 0 ? (", SGEMM " + std::to_string(static_cast<int>(sgemm)) + " GFLOP/s").c_str() : "", "impl", "N", "d",
                "max abs", "max rel", "fwd ms", "GFLOP/s", "fwd+bwd ms", "GFLOP/s", "extra MiB");
  for (int d : int_list(a["head-dim"].as<std::string>(), "head-dim"))
    for (int N : int_list(a["seq-len"].as<std::string>(), "seq-len")) {
      Problem p(B, H, KV, N, d, causal, 1000 + N + d);
      const int M = std::min(N, a["max-ref-seq"].as<int>());
      Problem ref = p.prefix(M);
      ref.forward(cpu::AttnImpl::Naive);
      if (backward) ref.backward(cpu::AttnImpl::Naive);
      const double fwd_flops = 4.0 * B * H * static_cast<double>(N) * N * d * (causal ? 0.5 : 1.0);
      for (cpu::AttnImpl impl : impls) {
        nlohmann::json row = {{"impl", cpu::attn_impl_name(impl)}, {"batch", B}, {"heads", H}, {"seq_len", N}, {"head_dim", d},
                              {"causal", causal}, {"validated_on_seq_len", M}};
        if ((impl == cpu::AttnImpl::Naive && N > a["max-naive-seq"].as<int>()) ||
            (impl == cpu::AttnImpl::Gemm && N > a["max-gemm-seq"].as<int>())) {
          row["skipped"] = "too slow or too much memory at this length";
          rows.push_back(row);
          if (!as_json) std::printf("%-6s %6d %4d   (skipped at this length)\n", cpu::attn_impl_name(impl), N, d);
          continue;
        }
        // 1. validate on the (prefix of the) same inputs
        Problem v = p.prefix(M);
        v.forward(impl);
        Err e = compare(v.out, ref.out);
        if (backward) {
          v.backward(impl);
          Err eb = compare(v.dqkv, ref.dqkv);
          e.abs = std::max(e.abs, eb.abs), e.rel = std::max(e.rel, eb.rel);
        }
        const bool ok = e.rel <= 1e-4;
        all_ok &= ok;
        row["max_abs_err"] = e.abs, row["max_rel_err"] = e.rel, row["valid"] = ok;
        // 2. time
        std::vector<double> tf, tb;
        for (int i = 0; i < warm + reps; ++i) {
          const double t0 = now_seconds();
          p.forward(impl);
          const double t1 = now_seconds();
          if (backward) p.backward(impl);
          const double t2 = now_seconds();
          if (i >= warm) tf.push_back(t1 - t0), tb.push_back(t2 - t0);
        }
        const double mf = median(tf);
        row["fwd_ms"] = mf * 1e3, row["fwd_gflops"] = fwd_flops / mf / 1e9;
        std::vector<int32_t> cu = p.cu;
        row["extra_bytes"] = cpu::attention_workspace_bytes(impl, cu.data(), B, H, d, !backward);
        if (sgemm > 0) row["fwd_fraction_of_sgemm"] = fwd_flops / mf / 1e9 / sgemm;
        if (backward) {
          const double mb = median(tb);
          row["fwd_bwd_ms"] = mb * 1e3, row["fwd_bwd_gflops"] = 3.5 * fwd_flops / mb / 1e9;
          if (sgemm > 0) row["fwd_bwd_fraction_of_sgemm"] = 3.5 * fwd_flops / mb / 1e9 / sgemm;
        }
        if (!as_json) {
          std::printf("%-6s %6d %4d %9.2e %9.2e %10.2f %9.1f", cpu::attn_impl_name(impl), N, d, e.abs, e.rel, mf * 1e3,
                      fwd_flops / mf / 1e9);
          if (backward) std::printf(" %11.2f %9.1f", row["fwd_bwd_ms"].get<double>(), row["fwd_bwd_gflops"].get<double>());
          else std::printf(" %11s %9s", "-", "-");
          std::printf(" %10.2f%s\n", row["extra_bytes"].get<double>() / 1048576.0, ok ? "" : "   MISMATCH");
        }
        rows.push_back(row);
      }
    }
  nlohmann::json j = {{"bench", "attention"}, {"device", "cpu"}, {"threads", omp_get_max_threads()}, {"sgemm_gflops", sgemm},
                      {"flop_convention", "forward 4*B*H*N^2*d (halved when causal), backward 2.5x forward"},
                      {"all_valid", all_ok}, {"peak_rss_mib", peak_rss_mib()}, {"rows", rows}};
  if (a.count("plot")) {
    const std::string svg = svg_plot(rows, backward ? "fwd_bwd_ms" : "fwd_ms",
                                     std::string("cairn attention, ") + (backward ? "forward+backward" : "forward") + (causal ? ", causal" : ""));
    write_file_atomic(a["plot"].as<std::string>(), svg);
  }
  if (as_json) std::cout << j.dump() << "\n";
  if (!all_ok) std::fprintf(stderr, "error: an implementation disagrees with the reference (see max rel err)\n");
  return all_ok ? 0 : 1;
}

CAIRN_COMMAND("bench attention", "validate and time the attention implementations", run);

}  // namespace
}  // namespace cairn::cli
