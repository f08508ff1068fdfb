// Chat templates, see include/cairn/chat_template.h.
#include "cairn/chat_template.h"

#include <algorithm>
#include <stdexcept>

namespace cairn {

ChatTemplate ChatTemplate::by_name(const std::string& name, const std::string& default_system) {
  if (name != "plain" && name != "chatml" && name != "llama3")
    throw std::invalid_argument("unknown chat template '" + name + "' (plain, chatml or llama3)");
  ChatTemplate t;
  t.name_ = name, t.default_system_ = default_system;
  return t;
}

ChatTemplate ChatTemplate::detect(const std::string& src) {
  if (src.find("<|im_start|>") != std::string::npos) {
    // A default system message: the literal between "<|im_start|>system\n" and "<|im_end|>" that the
    // template emits when messages[0] is not a system message.
    std::string sys;
    const std::string open = "<|im_start|>system\n";
    const size_t cond = src.find("!= 'system'"), at = src.find(open);
    if (cond != std::string::npos && at != std::string::npos && at > cond) {
      const size_t end = src.find("<|im_end|>", at);
      if (end != std::string::npos) sys = src.substr(at + open.size(), end - at - open.size());
      if (sys.find_first_of("{}'\"") != std::string::npos)
        throw std::invalid_argument("the model's ChatML template computes its default system message; pass --chat-template chatml");
    }
    return by_name("chatml", sys);
  }
  if (src.find("<|start_header_id|>") != std::string::npos) return by_name("llama3");
  throw std::invalid_argument("the model's chat template is not one cairn knows (ChatML, Llama 3)");
}

std::string ChatTemplate::render(const std::vector<Message>& msgs) const {
  std::string out;
  if (name_ == "plain") {
    for (const Message& m : msgs)
      out += (m.role == "user" ? "\n\nHuman: " : m.role == "assistant" ? "\n\nAssistant: " : "\n\nSystem: ") + m.content;
    return out;
  }
  const bool has_system = !msgs.empty() && msgs.front().role == "system";
  if (name_ == "chatml") {
    if (!has_system && !default_system_.empty()) out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
    for (const Message& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    return out;
  }
  for (const Message& m : msgs) out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + m.content + "<|eot_id|>";
  return out;
}

namespace {

// The markup of one message of a non-plain template: open + role + role_end + [skip] + content + close.
struct Markup {
  const char *open, *role_end, *skip, *close;
};
Markup markup_of(const std::string& name) {
  if (name == "chatml") return {"<|im_start|>", "\n", "", "<|im_end|>"};
  return {"<|start_header_id|>", "<|end_header_id|>", "\n\n", "<|eot_id|>"};
}

}  // namespace

bool ChatTemplate::rendered(const std::string& text) const {
  return !plain() && text.find(markup_of(name_).open) != std::string::npos;
}

std::vector<Message> ChatTemplate::read_text(const std::string& t) const {
  if (!rendered(t)) return parse_transcript(t);
  const Markup mk = markup_of(name_);
  const size_t open_len = std::char_traits<char>::length(mk.open);
  const size_t role_end_len = std::char_traits<char>::length(mk.role_end);
  const size_t skip_len = std::char_traits<char>::length(mk.skip);
  std::vector<Message> out;
  for (size_t at = t.find(mk.open); at != std::string::npos;) {
    const size_t begin = at + open_len;
    const size_t next = t.find(mk.open, begin);
    const size_t stop = next == std::string::npos ? t.size() : next;  // this message's text ends here at the latest
    Message m;
    const size_t role_end = t.find(mk.role_end, begin);
    if (role_end == std::string::npos || role_end > stop) {
      m.role = t.substr(begin, stop - begin);  // a header without content
    } else {
      m.role = t.substr(begin, role_end - begin);
      size_t c = role_end + role_end_len;
      if (c + skip_len <= stop && t.compare(c, skip_len, mk.skip) == 0) c += skip_len;
      m.content = t.substr(c, std::min(stop, t.find(mk.close, c)) - c);
    }
    out.push_back(std::move(m));
    at = next;
  }
  return out;
}

std::vector<Message> parse_transcript(const std::string& text) {
  static const std::pair<const char*, const char*> kMarkers[] = {
      {"\n\nHuman:", "user"}, {"\n\nAssistant:", "assistant"}, {"\n\nSystem:", "system"}};
  std::vector<Message> out;
  size_t pos = 0;
  const char* role = "assistant";
  while (true) {
    size_t next = std::string::npos, mlen = 0;
    const char* next_role = nullptr;
    for (const auto& [marker, r] : kMarkers) {
      const size_t at = text.find(marker, pos);
      if (at < next) next = at, mlen = std::char_traits<char>::length(marker), next_role = r;
    }
    std::string part = text.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!(pos == 0 && part.empty())) out.push_back({role, part});
    if (next == std::string::npos) break;
    pos = next + mlen;
    if (pos < text.size() && text[pos] == ' ') ++pos;
    role = next_role;
  }
  return out;
}

}  // namespace cairn
