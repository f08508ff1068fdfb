// The pair parser and renderers (src/data/pairs.cpp, src/data/chat_template.cpp) on each line of the
// input, as `cairn train` / `score` / `eval` read a JSONL file: parse_json_line, parse_pair and
// render_score_record under each chat template, plus parse_transcript, ChatTemplate::read_text (a
// rendering reads back to itself) and ChatTemplate::detect.
#include <cmath>
#include <stdexcept>

#include "cairn/chat_template.h"
#include "cairn/data.h"
#include "fuzz.h"

using namespace cairn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ChatTemplate kTemplates[] = {ChatTemplate(), ChatTemplate::by_name("chatml", "You are helpful."),
                                            ChatTemplate::by_name("llama3")};
  long line_no = 0;
  for (std::string_view piece : fuzz::split_lines(fuzz::as_view(data, size))) {
    const std::string line(piece);
    ++line_no;
    for (const Message& m : parse_transcript(line))
      fuzz::check(m.role == "user" || m.role == "assistant" || m.role == "system", "parse_transcript role " + m.role);
    try {
      ChatTemplate::detect(line);
    } catch (const std::invalid_argument&) {  // documented: not a template cairn knows
    }
    // A rendered conversation reads back to itself: render(read_text(x)) is a fixed point, unless a
    // message holds the template's own markers as text (then the rendering is ambiguous).
    for (const ChatTemplate& t : {kTemplates[1], kTemplates[2]}) {
      const char* open = t.name() == "chatml" ? "<|im_start|>" : "<|start_header_id|>";
      const char* close = t.name() == "chatml" ? "<|im_end|>" : "<|eot_id|>";
      const std::vector<Message> msgs = t.read_text(line);
      bool ambiguous = false;
      for (const Message& m : msgs)
        ambiguous |= m.content.find(open) != std::string::npos || m.content.find(close) != std::string::npos;
      const std::string once = t.render(msgs);
      fuzz::check(ambiguous || t.render(t.read_text(once)) == once, t.name() + ": render(read_text(x)) is not a fixed point");
    }
    nlohmann::json j;
    if (!fuzz::expect_data_error([&] { j = parse_json_line(line, "input.jsonl", line_no); })) continue;
    fuzz::check(j.is_object(), "parse_json_line returned a non-object");
    for (const ChatTemplate& t : kTemplates) {
      fuzz::expect_data_error([&] {
        const Pair p = parse_pair(j, "input.jsonl", line_no, t);
        // docs/formats.md#bad-input: label a probability, weight > 0, margin finite (as the floats training uses)
        fuzz::check(p.label >= 0 && p.label <= 1, "label " + std::to_string(p.label) + " outside [0, 1]");
        fuzz::check(p.weight > 0 && std::isfinite(p.weight), "weight " + std::to_string(p.weight) + " not finite and > 0");
        fuzz::check(std::isfinite(p.margin), "margin " + std::to_string(p.margin) + " not finite");
        // docs/formats.md#rendering: an empty response is text like any other, flagged and counted
        fuzz::check(p.chosen_chars >= 0 && p.rejected_chars >= 0, "a negative response length");
        fuzz::check(p.empty_response || (p.chosen_chars > 0 && p.rejected_chars > 0),
                    "a zero-length response not flagged as empty");
      });
      fuzz::expect_data_error([&] { render_score_record(j, "input.jsonl", line_no, t); });
    }
  }
  return 0;
}
