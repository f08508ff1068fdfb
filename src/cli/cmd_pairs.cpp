// `cairn pairs`: converts upstream preference data to cairn pair JSONL (see src/data/converters.h).
// The output appears atomically when the whole input converted; a bad line leaves no output file.
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>

#include <cxxopts.hpp>

#include "cairn/errors.h"
#include "cairn/io.h"
#include "cli/command.h"
#include "cli/common.h"
#include "data/converters.h"

namespace cairn::cli {
namespace {

int run(int argc, char** argv) {
  cxxopts::Options o(argv[0], "Turn AlpacaEval annotations, CAI critique→revise logs or position-swapped AI judgments into preference pairs.");
  o.add_options()
    ("from", "alpaca-eval | cai | judgments", cxxopts::value<std::string>())
    ("input", "input JSONL (.gz ok)", cxxopts::value<std::string>())
    ("output", "output pairs JSONL", cxxopts::value<std::string>())
    ("disagreement", "judgments whose swapped verdicts disagree: soft | keep | drop",
     cxxopts::value<std::string>()->default_value("soft"))
    ("json", "print the summary counts as one JSON object on stdout")
    ("h,help", "show this help");
  auto a = o.parse(argc, argv);
  if (a.count("help")) {
    std::cout << o.help() << R"(
Formats (one JSON object per line):
  alpaca-eval  {"instruction","output_1","output_2","preference" in [1,2],"annotator",...}
               → one pair per unique (instruction, output_1, output_2); label = mean P(favoured output)
  cai          {"prompt","initial","cycles":[{"cycle","principle","critique","revised"}],"final"}
               → revised_k ≻ revised_(k-1) (revised_0 = initial) with that cycle's principle; final ≻ initial
  judgments    {"prompt","response_a","response_b","judgments":[{"order":"ab"|"ba","winner":"a"|"b"|"tie"}]}
               → one pair, label = the winner's vote share (tie = 1/2 each); position bias reported
)";
    return 0;
  }
  for (const char* k : {"from", "input", "output"})
    if (!a.count(k)) throw UsageError(std::string("--") + k + " is required");
  const std::string from = a["from"].as<std::string>(), in = a["input"].as<std::string>();
  const std::map<std::string, std::function<ConvertResult()>> converters = {
      {"alpaca-eval", [&] { return convert_alpaca_eval(in); }},
      {"cai", [&] { return convert_cai(in); }},
      {"judgments", [&] { return convert_judgments(in, a["disagreement"].as<std::string>()); }}};
  const auto convert = converters.find(from);
  if (convert == converters.end()) throw UsageError("--from must be alpaca-eval, cai or judgments");
  check_output_not_input(a["output"].as<std::string>(), {in});
  AtomicWriter w(a["output"].as<std::string>());  // a bad --output fails before the conversion
  const ConvertResult r = convert->second();
  for (const auto& p : r.pairs) w.write(p.dump() + "\n");
  w.commit();
  std::fprintf(stderr, "%s\n", r.summary.c_str());
  if (a.count("json")) std::cout << nlohmann::json(r.counts).dump() << "\n";
  return 0;
}

CAIRN_COMMAND("pairs", "convert AlpacaEval / CAI logs / swapped AI judgments to preference pairs", run);

}  // namespace
}  // namespace cairn::cli
