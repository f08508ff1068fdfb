// How a conversation becomes model text (docs/formats.md#chat-templates). A pair or scoring record is
// first read as a list of messages (role system | user | assistant), then rendered by a template:
//   plain   the rendering rule of docs/formats.md#rendering ("\n\nHuman: …\n\nAssistant: …"), used by
//           from-scratch models; texts that are already transcripts are used as given
//   chatml  "<|im_start|>{role}\n{content}<|im_end|>\n" per message (SmolLM2, Qwen, …), with the
//           template's default system message when the conversation has none
//   llama3  "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>" per message (the
//           Llama 3 tokenizer adds "<|begin_of_text|>" itself, as BOS)
// The reward is read at the last token of the rendered conversation.
#pragma once
#include <string>
#include <vector>

namespace cairn {

struct Message {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  ChatTemplate() = default;  // plain
  // "plain" | "chatml" | "llama3"; std::invalid_argument on anything else.
  static ChatTemplate by_name(const std::string& name, const std::string& default_system = "");
  // The template of a model's own Jinja chat template source, recognised by its markers (and the
  // default system message, if it inserts one); std::invalid_argument when it is none cairn knows.
  static ChatTemplate detect(const std::string& jinja_source);

  const std::string& name() const { return name_; }
  const std::string& default_system() const { return default_system_; }
  bool plain() const { return name_ == "plain"; }
  std::string render(const std::vector<Message>& messages) const;

  // Whether `text` is a conversation already rendered in this template: it holds the template's
  // message opener ("<|im_start|>" for chatml, "<|start_header_id|>" for llama3; never for plain).
  // What an RL loop sends (OpenRLHF's /get_reward queries: the policy's rendering, decoded with its
  // special tokens) is such a text.
  bool rendered(const std::string& text) const;
  // The messages of a text: a rendered one (see rendered()) is read back message by message — text
  // outside the messages (padding, BOS/EOS tokens, the newline between ChatML messages) is dropped,
  // and a last message without its end marker runs to the end of the text; any other text is read as
  // a transcript (parse_transcript). render(read_text(t)) is the canonical rendering of t's conversation.
  std::vector<Message> read_text(const std::string& text) const;

 private:
  std::string name_ = "plain", default_system_;
};

// Splits a "\n\nHuman: …\n\nAssistant: …" transcript into messages (markers "\n\nHuman:",
// "\n\nAssistant:", "\n\nSystem:"; one space after a marker belongs to it). Text before the first
// marker, or a text without markers, becomes one assistant message.
std::vector<Message> parse_transcript(const std::string& text);

}  // namespace cairn
