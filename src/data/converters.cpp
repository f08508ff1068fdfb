// `cairn pairs` converters, see converters.h.
#include "data/converters.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <unordered_map>

#include "cairn/data.h"
#include "cairn/errors.h"

namespace cairn {
namespace {

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

std::string need_string(const nlohmann::json& j, const char* k, const std::string& file, long line) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) throw DataError(file, line, std::string("missing field \"") + k + "\"");
  if (!it->is_string()) throw DataError(file, line, std::string("field \"") + k + "\" must be a string");
  return it->get<std::string>();
}

template <class Fn>
void for_each_record(const std::string& path, const Fn& fn, bool lenient = false) {
  LineReader in(path);
  std::string line;
  while (in.next(line)) {
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    fn(lenient ? parse_json_line_lenient(line, path, in.line_number()) : parse_json_line(line, path, in.line_number()),
       in.line_number());
  }
}

std::string fmt(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", 100 * x);
  return b;
}

}  // namespace

nlohmann::json parse_json_line_lenient(const std::string& line, const std::string& file, long line_no) {
  try {
    return parse_json_line(line, file, line_no);
  } catch (const DataError&) {
    if (line.find("NaN") == std::string::npos && line.find("Infinity") == std::string::npos) throw;
  }
  std::string fixed;
  fixed.reserve(line.size());
  bool in_str = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_str) {
      fixed += c;
      if (c == '\\' && i + 1 < line.size()) fixed += line[++i];
      else if (c == '"') in_str = false;
      continue;
    }
    if (c == '"') in_str = true;
    for (const char* tok : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::strlen(tok);
      if (line.compare(i, n, tok) == 0) {
        fixed += "null";
        i += n;
        break;
      }
    }
    if (i < line.size()) fixed += line[i];
  }
  return parse_json_line(fixed, file, line_no);
}

ConvertResult convert_alpaca_eval(const std::string& path) {
  struct Group {
    std::string instruction, o1, o2;
    double sum_p2 = 0;
    int n = 0;
    std::set<std::string> annotators;
  };
  std::vector<Group> groups;
  std::unordered_map<std::string, size_t> index;
  ConvertResult r;
  for_each_record(path, [&](const nlohmann::json& j, long line) {
    ++r.counts["records"];
    const std::string ins = need_string(j, "instruction", path, line);
    const std::string o1 = need_string(j, "output_1", path, line), o2 = need_string(j, "output_2", path, line);
    if (blank(o1) || blank(o2) || blank(ins)) return void(++r.counts["dropped_empty_output"]);
    auto pit = j.find("preference");
    double pref = NAN;
    if (pit != j.end() && pit->is_number()) pref = pit->get<double>();
    if (!std::isfinite(pref)) return void(++r.counts["dropped_missing_preference"]);
    if (pref < 1 || pref > 2) return void(++r.counts["dropped_preference_out_of_range"]);
    std::string key = ins;
    key += '\x1f' + o1 + '\x1f' + o2;
    auto [it, fresh] = index.emplace(std::move(key), groups.size());
    if (fresh) groups.push_back(Group{ins, o1, o2, 0.0, 0, {}});
    Group& g = groups[it->second];
    g.sum_p2 += pref - 1.0;
    ++g.n;
    if (j.contains("annotator") && j["annotator"].is_string()) g.annotators.insert(j["annotator"].get<std::string>());
  }, /*lenient=*/true);
  for (const Group& g : groups) {
    const double p2 = g.sum_p2 / g.n;
    if (p2 == 0.5) {
      ++r.counts["dropped_tie"];
      continue;
    }
    const bool two = p2 > 0.5;
    nlohmann::ordered_json p;
    p["prompt"] = g.instruction;
    p["chosen"] = two ? g.o2 : g.o1;
    p["rejected"] = two ? g.o1 : g.o2;
    p["label"] = two ? p2 : 1.0 - p2;
    p["id"] = "alpaca-eval-" + std::to_string(r.pairs.size());
    p["n_judgments"] = g.n;
    r.pairs.push_back(std::move(p));
  }
  r.counts["pairs"] = r.pairs.size();
  r.summary = std::to_string(r.counts["records"]) + " judgments → " + std::to_string(r.pairs.size()) + " pairs (" +
              std::to_string(groups.size()) + " unique output pairs); dropped: " +
              std::to_string(r.counts["dropped_missing_preference"]) + " NaN/null/missing preference, " +
              std::to_string(r.counts["dropped_preference_out_of_range"]) + " out of range, " +
              std::to_string(r.counts["dropped_empty_output"]) + " empty output, " +
              std::to_string(r.counts["dropped_tie"]) + " exact ties";
  return r;
}

ConvertResult convert_cai(const std::string& path) {
  ConvertResult r;
  std::set<std::string> seen;
  long rec = 0;
  for_each_record(path, [&](const nlohmann::json& j, long line) {
    ++r.counts["records"];
    const std::string prompt = need_string(j, "prompt", path, line);
    std::string prev = need_string(j, "initial", path, line);
    const std::string initial = prev;
    auto cyc = j.find("cycles");
    if (cyc == j.end() || !cyc->is_array()) throw DataError(path, line, "missing list field \"cycles\"");
    std::vector<std::pair<long, nlohmann::json>> cycles;
    for (size_t i = 0; i < cyc->size(); ++i) {
      const auto& c = (*cyc)[i];
      if (!c.is_object()) throw DataError(path, line, "cycles[" + std::to_string(i) + "] must be an object");
      long k = static_cast<long>(i) + 1;
      if (auto it = c.find("cycle"); it != c.end() && it->is_number_integer()) k = it->get<long>();
      cycles.push_back({k, c});
    }
    std::stable_sort(cycles.begin(), cycles.end(), [](auto& a, auto& b) { return a.first < b.first; });
    auto emit = [&](const std::string& chosen, const std::string& rejected, const std::string& principle, const std::string& tag) {
      if (chosen == rejected) return void(++r.counts["skipped_identical"]);
      if (blank(chosen) || blank(rejected)) return void(++r.counts["skipped_empty"]);
      std::string key = prompt + '\x1f' + chosen + '\x1f' + rejected;
      if (!seen.insert(std::move(key)).second) return void(++r.counts["skipped_duplicate"]);
      nlohmann::ordered_json p;
      p["prompt"] = prompt, p["chosen"] = chosen, p["rejected"] = rejected;
      if (!principle.empty()) p["principle"] = principle;
      p["id"] = "cai-" + std::to_string(rec) + "-" + tag;
      r.pairs.push_back(std::move(p));
    };
    for (const auto& [k, c] : cycles) {
      const std::string revised = need_string(c, "revised", path, line);
      std::string principle;
      if (auto it = c.find("principle"); it != c.end() && it->is_string()) principle = it->get<std::string>();
      emit(revised, prev, principle, "c" + std::to_string(k));
      prev = revised;
    }
    if (auto f = j.find("final"); f != j.end() && !f->is_null()) emit(need_string(j, "final", path, line), initial, "", "final");
    ++rec;
  });
  r.counts["pairs"] = r.pairs.size();
  r.summary = std::to_string(r.counts["records"]) + " CAI logs → " + std::to_string(r.pairs.size()) + " pairs; skipped: " +
              std::to_string(r.counts["skipped_identical"]) + " identical texts, " +
              std::to_string(r.counts["skipped_duplicate"]) + " duplicates, " + std::to_string(r.counts["skipped_empty"]) + " empty";
  return r;
}

ConvertResult convert_judgments(const std::string& path, const std::string& disagreement) {
  if (disagreement != "soft" && disagreement != "keep" && disagreement != "drop")
    throw UsageError("--disagreement must be soft, keep or drop");
  ConvertResult r;
  long first_slot = 0, second_slot = 0, decided_judgments = 0, swapped_records = 0;
  for_each_record(path, [&](const nlohmann::json& j, long line) {
    ++r.counts["records"];
    const std::string prompt = need_string(j, "prompt", path, line);
    const std::string ra = need_string(j, "response_a", path, line), rb = need_string(j, "response_b", path, line);
    auto js = j.find("judgments");
    if (js == j.end() || !js->is_array() || js->empty()) throw DataError(path, line, "missing non-empty list \"judgments\"");
    double va = 0, vb = 0;
    std::set<char> winner_ab, winner_ba;  // non-tie winners seen in each order
    for (size_t i = 0; i < js->size(); ++i) {
      const auto& v = (*js)[i];
      const std::string where = "judgments[" + std::to_string(i) + "]";
      if (!v.is_object()) throw DataError(path, line, where + " must be an object");
      auto text = [&](const char* k) {  // "" when absent or not a string: then refused below
        auto it = v.find(k);
        return it != v.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      const std::string order = text("order"), win = text("winner");
      if (order != "ab" && order != "ba") throw DataError(path, line, where + ": \"order\" must be \"ab\" or \"ba\"");
      if (win != "a" && win != "b" && win != "tie") throw DataError(path, line, where + ": \"winner\" must be \"a\", \"b\" or \"tie\"");
      if (win == "tie") {
        va += 0.5, vb += 0.5;
        continue;
      }
      (win == "a" ? va : vb) += 1;
      (order == "ab" ? winner_ab : winner_ba).insert(win[0]);
      ++decided_judgments;
      const bool shown_first = (order == "ab") == (win == "a");
      (shown_first ? first_slot : second_slot) += 1;
    }
    const bool both_orders = !winner_ab.empty() && !winner_ba.empty();
    swapped_records += both_orders;
    std::set<char> all = winner_ab;
    all.insert(winner_ba.begin(), winner_ba.end());
    const bool disagree = both_orders && all.size() > 1;
    if (disagree) ++r.counts["disagreeing"];
    // a blank response would make a pair that parse_pair (cairn train) refuses: "empty response"
    if (blank(ra) || blank(rb)) return void(++r.counts["dropped_empty_response"]);
    const double n = static_cast<double>(js->size()), share_a = va / n;
    if (va == 0.0 + 0.5 * n && vb == 0.5 * n && all.empty()) return void(++r.counts["dropped_all_tie"]);
    double label = std::max(share_a, 1.0 - share_a);
    if (disagree) {
      if (disagreement == "drop") return void(++r.counts["dropped_disagreeing"]);
      if (disagreement == "keep") {
        if (share_a == 0.5) return void(++r.counts["dropped_no_majority"]);
        label = 1.0;
      }
    } else if (share_a == 0.5) {
      return void(++r.counts["dropped_no_majority"]);
    }
    const bool a_wins = share_a >= 0.5;
    nlohmann::ordered_json p;
    p["prompt"] = prompt;
    p["chosen"] = a_wins ? ra : rb;
    p["rejected"] = a_wins ? rb : ra;
    p["label"] = label;
    if (auto id = j.find("id"); id != j.end() && !id->is_null()) p["id"] = *id;
    r.pairs.push_back(std::move(p));
  });
  r.counts["pairs"] = r.pairs.size();
  r.counts["judgments_decided"] = decided_judgments;
  r.counts["winner_in_first_slot"] = first_slot;
  r.counts["winner_in_second_slot"] = second_slot;
  r.counts["records_judged_in_both_orders"] = swapped_records;
  const double dis_rate = swapped_records ? static_cast<double>(r.counts["disagreeing"]) / swapped_records : 0.0;
  const double first_rate = decided_judgments ? static_cast<double>(first_slot) / decided_judgments : 0.0;
  r.summary = std::to_string(r.counts["records"]) + " judged records → " + std::to_string(r.pairs.size()) +
              " pairs; position bias: swapped verdicts disagree in " + std::to_string(r.counts["disagreeing"]) + " of " +
              std::to_string(swapped_records) + " records (" + fmt(dis_rate) + "), the labeller picks the first-shown slot in " +
              fmt(first_rate) + " of decided judgments; dropped: " + std::to_string(r.counts["dropped_empty_response"]) +
              " empty response, " + std::to_string(r.counts["dropped_all_tie"]) + " all-tie, " +
              std::to_string(r.counts["dropped_no_majority"]) + " without majority, " +
              std::to_string(r.counts["dropped_disagreeing"]) + " disagreeing (--disagreement " + disagreement + ")";
  return r;
}

}  // namespace cairn
