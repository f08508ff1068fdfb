// Pair records (docs/formats.md#pairs): JSON line → validated, rendered Pair. See include/cairn/data.h for the
// rendering rules. Errors name file:line and the field.
#include <cmath>
#include <cstdio>
#include <limits>

#include "cairn/data.h"
#include "cairn/errors.h"

namespace cairn {
namespace {

[[noreturn]] void fail(const std::string& file, long line, const std::string& msg) { throw DataError(file, line, msg); }

const nlohmann::json& need(const nlohmann::json& j, const char* field, const std::string& file, long line) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) fail(file, line, std::string("missing field \"") + field + "\"");
  return *it;
}

double number(const nlohmann::json& j, const char* field, double dflt, const std::string& file, long line) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number()) fail(file, line, std::string("field \"") + field + "\" must be a number");
  const double v = it->get<double>();
  // finite as the float training uses, too: 1e300 is a finite double but beyond float
  if (!std::isfinite(v) || std::fabs(v) > std::numeric_limits<float>::max())
    fail(file, line, std::string("field \"") + field + "\" must be finite");
  return v;
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// Text of the response side and its own length. Implicit transcripts: the response is what follows
// the last "\n\nAssistant:".
struct Side {
  std::string text;
  int64_t response_chars = 0;
  bool empty = false;  // the response part is empty or only whitespace (scored like any text)
};

// The messages of a list (roles checked; "human" is an alias of "user").
std::vector<Message> messages_of(const nlohmann::json& messages, const std::string& file, long line, const char* field) {
  if (!messages.is_array()) fail(file, line, std::string("field \"") + field + "\" must be a list of messages");
  std::vector<Message> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string where = std::string("\"") + field + "\"[" + std::to_string(i) + "]";
    if (!m.is_object()) fail(file, line, where + " must be an object with \"role\" and \"content\"");
    auto r = m.find("role"), c = m.find("content");
    if (r == m.end() || !r->is_string()) fail(file, line, where + ": missing string field \"role\"");
    if (c == m.end() || !c->is_string()) fail(file, line, where + ": missing string field \"content\"");
    std::string role = r->get<std::string>();
    if (role == "human") role = "user";
    if (role != "user" && role != "assistant" && role != "system")
      fail(file, line, where + ": unknown role \"" + role + "\" (expected user, assistant or system)");
    out.push_back({role, c->get<std::string>()});
  }
  return out;
}

// One side of a record as text. With the plain template the rules of docs/formats.md#rendering
// apply to the strings as given; any other template renders the conversation the record holds
// (text transcripts are split into messages first, docs/formats.md#chat-templates).
Side render_side(const nlohmann::json& j, const char* field, const std::string& file, long line,
                 const ChatTemplate& tmpl) {
  const nlohmann::json& resp = need(j, field, file, line);
  auto pit = j.find("prompt");
  const bool has_prompt = pit != j.end() && !pit->is_null();
  Side s;
  std::string response_part;
  std::vector<Message> conv;
  if (resp.is_string()) {
    const std::string& r = resp.get_ref<const std::string&>();
    if (!has_prompt) {
      s.text = r;
      const size_t at = r.rfind("\n\nAssistant:");
      response_part = at == std::string::npos ? r : r.substr(at + 12);
      if (!tmpl.plain()) conv = tmpl.read_text(r);
      if (tmpl.rendered(r)) response_part = conv.empty() ? "" : conv.back().content;
    } else if (pit->is_string()) {
      const std::string& prompt = pit->get_ref<const std::string&>();
      s.text = render_prompt_response(prompt, r);
      response_part = r;
      if (!tmpl.plain())
        conv = prompt.rfind("\n\nHuman:", 0) == 0 ? parse_transcript(prompt + r)
                                                  : std::vector<Message>{{"user", prompt}, {"assistant", r}};
    } else if (pit->is_array()) {
      conv = messages_of(*pit, file, line, "prompt");
      s.text = tmpl.plain() ? ChatTemplate().render(conv) + "\n\nAssistant: " + r : "";
      conv.push_back({"assistant", r});
      response_part = r;
    } else {
      fail(file, line, "field \"prompt\" must be a string or a list of messages");
    }
  } else if (resp.is_array()) {
    if (has_prompt) {
      if (!pit->is_array()) fail(file, line, "field \"prompt\" must be a list of messages when \"" + std::string(field) + "\" is");
      conv = messages_of(*pit, file, line, "prompt");
    }
    for (Message& m : messages_of(resp, file, line, field)) {
      response_part += m.content;
      conv.push_back(std::move(m));
    }
    if (tmpl.plain()) s.text = ChatTemplate().render(conv);
  } else {
    fail(file, line, std::string("field \"") + field + "\" must be a string or a list of messages");
  }
  s.empty = blank(response_part);
  if (!tmpl.plain()) s.text = tmpl.render(conv);
  s.response_chars = utf8_length(response_part);
  return s;
}

}  // namespace

int64_t utf8_length(std::string_view s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string render_prompt_response(const std::string& prompt, const std::string& response) {
  if (prompt.rfind("\n\nHuman:", 0) == 0) return prompt + response;
  return "\n\nHuman: " + prompt + "\n\nAssistant: " + response;
}

std::string render_messages(const nlohmann::json& messages, const std::string& file, long line, const char* field) {
  return ChatTemplate().render(messages_of(messages, file, line, field));
}

nlohmann::json parse_json_line(const std::string& text, const std::string& file, long line) {
  // nlohmann parses iteratively but copies and dumps recursively: a line of 100k nested brackets would
  // overflow the stack later (an "id" is dumped, a converter copies its record), so depth is bounded here.
  constexpr int kMaxDepth = 256;
  const nlohmann::json::parser_callback_t bounded = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxDepth) fail(file, line, "JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text, bounded);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number beyond double
    std::string what = e.what();
    const auto* pe = dynamic_cast<const nlohmann::json::parse_error*>(&e);
    if (pe && what.find("UTF-8") != std::string::npos)
      fail(file, line, "text is not valid UTF-8 (byte " + std::to_string(pe->byte) + ")");
    const size_t at = what.find("] ");
    what = at == std::string::npos ? what : what.substr(at + 2);
    const size_t last = what.find("; last read");
    fail(file, line, "invalid JSON: " + what.substr(0, last));
  }
  if (!j.is_object()) fail(file, line, "expected a JSON object");
  return j;
}

Pair parse_pair(const nlohmann::json& j, const std::string& file, long line, const ChatTemplate& tmpl) {
  Pair p;
  p.line = line;
  Side c = render_side(j, "chosen", file, line, tmpl), r = render_side(j, "rejected", file, line, tmpl);
  p.chosen = std::move(c.text), p.chosen_chars = c.response_chars;
  p.rejected = std::move(r.text), p.rejected_chars = r.response_chars;
  p.empty_response = c.empty || r.empty;
  const double label = number(j, "label", 1.0, file, line);
  if (label < 0 || label > 1) fail(file, line, "field \"label\" must be a probability in [0, 1]");
  p.label = static_cast<float>(label);
  p.weight = static_cast<float>(number(j, "weight", 1.0, file, line));
  if (!(p.weight > 0)) fail(file, line, "field \"weight\" must be > 0");  // as a float: 1e-300 is 0
  p.margin = static_cast<float>(number(j, "margin", 0.0, file, line));
  if (auto it = j.find("principle"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) fail(file, line, "field \"principle\" must be a string");
    p.principle = it->get<std::string>();
  }
  if (auto it = j.find("id"); it != j.end() && !it->is_null())
    p.id = it->is_string() ? it->get<std::string>() : it->dump();
  return p;
}

std::vector<Pair> read_pairs(const std::string& path, bool skip_bad, ReadStats* stats, const ChatTemplate& tmpl) {
  ReadStats local;
  ReadStats& st = stats ? *stats : local;
  std::vector<Pair> out;
  LineReader in(path);
  std::string line;
  while (in.next(line)) {
    ++st.lines;
    if (line.find_first_not_of(" \t") == std::string::npos) {
      ++st.blank;
      continue;
    }
    try {
      out.push_back(parse_pair(parse_json_line(line, path, in.line_number()), path, in.line_number(), tmpl));
      ++st.pairs;
      st.empty_responses += out.back().empty_response;
    } catch (const DataError& e) {
      if (!skip_bad) throw;
      if (st.skipped < 5) std::fprintf(stderr, "skipping %s\n", e.what());
      ++st.skipped;
    }
  }
  return out;
}

ScoreText render_score_record(const nlohmann::json& j, const std::string& file, long line, const ChatTemplate& tmpl) {
  ScoreText s;
  if (auto t = j.find("text"); t != j.end() && !t->is_null()) {
    if (!t->is_string()) fail(file, line, "field \"text\" must be a string");
    s.text = t->get<std::string>();
    s.response_chars = utf8_length(s.text);
    if (tmpl.plain()) return s;
    const std::vector<Message> conv = tmpl.read_text(s.text);
    if (tmpl.rendered(s.text)) s.response_chars = conv.empty() ? 0 : utf8_length(conv.back().content);
    s.text = tmpl.render(conv);
    return s;
  }
  if (j.find("response") == j.end()) fail(file, line, "missing field \"response\" (or \"text\")");
  Side side = render_side(j, "response", file, line, tmpl);
  s.text = std::move(side.text);
  s.response_chars = side.response_chars;
  return s;
}

}  // namespace cairn
