"""Reference forward passes in Hugging Face transformers for tests/test_pretrained.cpp.

  hf_reference.py make-tiny KIND DIR SEED   KIND: llama | llama-gqa-tied | gpt2
      writes a small random model with save_pretrained (fp32) + a byte-level BPE tokenizer.json
  hf_reference.py hidden DIR IDS.json OUT.json [--gguf FILE]
      runs the model on each id sequence and writes the final (normed) hidden state at the last
      position of each sequence. With --gguf the weights come from that GGUF file instead, dequantized
      with gguf-py and un-permuted with transformers' own GGUF helper, into a LlamaModel built from its
      metadata (DIR is unused then).
  hf_reference.py seqcls DIR TEXTS.json OUT.json
      AutoModelForSequenceClassification + AutoTokenizer of an exported directory: logits per text
  hf_reference.py chat TEMPLATE.jinja CONVERSATIONS.json OUT.json
      transformers' apply_chat_template of each conversation (a list of {role, content}), as text
"""
import json
import sys

import numpy as np
import torch


def tiny_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = ["The quick brown fox jumps over the lazy dog.", "Reward models rank answers.",
             "Hello, world! 12345", "A constitution lists principles."] * 50
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.save(path)
    return tok.get_vocab_size()


def make_tiny(kind, out, seed):
    torch.manual_seed(seed)
    vocab = tiny_tokenizer(out + "/tokenizer.json") + 5  # a few unused rows, as real models have
    if kind.startswith("llama"):
        from transformers import LlamaConfig, LlamaForCausalLM
        gqa = "gqa" in kind
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=48, intermediate_size=76, num_hidden_layers=3,
                          num_attention_heads=6, num_key_value_heads=2 if gqa else 6, max_position_embeddings=64,
                          rms_norm_eps=1e-5, rope_theta=1000.0, tie_word_embeddings="tied" in kind,
                          bos_token_id=0, eos_token_id=0)
        model = LlamaForCausalLM(cfg)
    else:
        from transformers import GPT2Config, GPT2LMHeadModel
        cfg = GPT2Config(vocab_size=vocab, n_embd=40, n_layer=3, n_head=5, n_positions=64, n_inner=None,
                         bos_token_id=0, eos_token_id=0)
        model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # O(1) weights, so every part of the network matters in the comparison
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p) if name.endswith("weight") else 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.save_pretrained(out, safe_serialization=True)


def gguf_llama(path):
    import gguf
    from transformers import LlamaConfig, LlamaModel
    try:  # transformers 4.x
        from transformers.modeling_gguf_pytorch_utils import reverse_permute_weights
    except ImportError:  # 5.x moved it into the llama tensor processor
        from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
        reverse_permute_weights = LlamaTensorProcessor()._reverse_permute_weights
    r = gguf.GGUFReader(path)

    def field(k):
        f = r.fields[k]
        return f.parts[f.data[0]][0]

    n_head, n_kv = int(field("llama.attention.head_count")), int(field("llama.attention.head_count_kv"))
    cfg = LlamaConfig(vocab_size=int(field("llama.vocab_size")), hidden_size=int(field("llama.embedding_length")),
                      intermediate_size=int(field("llama.feed_forward_length")),
                      num_hidden_layers=int(field("llama.block_count")), num_attention_heads=n_head,
                      num_key_value_heads=n_kv, max_position_embeddings=int(field("llama.context_length")),
                      rms_norm_eps=float(field("llama.attention.layer_norm_rms_epsilon")),
                      rope_theta=float(field("llama.rope.freq_base")), tie_word_embeddings=True)
    names = {"token_embd": "embed_tokens", "output_norm": "norm", "attn_norm": "input_layernorm",
             "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
             "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    sd = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
        parts = t.name.split(".")
        if parts[0] == "blk":
            key, kind = f"layers.{parts[1]}.{names[parts[2]]}.weight", parts[2]
        elif parts[0] == "output":
            continue
        else:
            key, kind = f"{names[parts[0]]}.weight", parts[0]
        if kind == "attn_q":
            w = reverse_permute_weights(w, n_head, n_head)
        elif kind == "attn_k":
            w = reverse_permute_weights(w, n_head, n_kv)
        sd[key] = torch.from_numpy(np.array(w, dtype=np.float32))  # a writable copy
    model = LlamaModel(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model


def hidden(model_dir, ids_path, out_path, gguf_path=None):
    from transformers import AutoModel
    if gguf_path:
        model = gguf_llama(gguf_path)
    else:
        model = AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    seqs = json.load(open(ids_path))
    rows = []
    with torch.no_grad():
        for ids in seqs:
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
            rows.append(out.hidden_states[-1][0, -1].double().tolist())
    json.dump(rows, open(out_path, "w"))


def seqcls(model_dir, texts_path, out_path):
    """AutoModelForSequenceClassification + AutoTokenizer from an exported directory: logits per text."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32)
    model.eval()
    rows = []
    with torch.no_grad():
        for t in json.load(open(texts_path)):
            enc = tok(t, return_tensors="pt")
            rows.append(model(**enc).logits[0].double().tolist())
    json.dump(rows, open(out_path, "w"))


def chat(template_source, conversations_path, out_path):
    """transformers' apply_chat_template (Jinja) of each conversation, as text."""
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))
    tok.chat_template = open(template_source).read()
    out = [tok.apply_chat_template(c, tokenize=False) for c in json.load(open(conversations_path))]
    json.dump(out, open(out_path, "w"))


if __name__ == "__main__":
    if sys.argv[1] == "make-tiny":
        make_tiny(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "hidden":
        g = sys.argv[sys.argv.index("--gguf") + 1] if "--gguf" in sys.argv else None
        hidden(sys.argv[2], sys.argv[3], sys.argv[4], g)
    elif sys.argv[1] in ("seqcls", "chat"):
        (seqcls if sys.argv[1] == "seqcls" else chat)(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: see the docstring")
