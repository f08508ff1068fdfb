// Chat templates, see include/cairn/chat_template.h.
#include "cairn/chat_template.h"

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
