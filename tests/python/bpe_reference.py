"""Hugging Face references for tests/test_bpe_tokenizer.cpp (tokenizers 0.19.1, transformers 4.44.2, gguf-py).

  bpe_reference.py encode TEXTS.json OUT.json TOKENIZER.json [TOKENIZER.json ...] [--special-limit N]
      ids of every text with tokenizers.Tokenizer.from_file (add_special_tokens False; and True for the
      first N texts), truncation and padding off. TEXTS.json: {"hex": [utf-8 bytes as hex, ...]}; bytes
      that are not valid UTF-8 are decoded with errors="replace" (U+FFFD per maximal ill-formed subpart,
      what cairn does). OUT.json: {"results": [{"tokenizer", "error", "ids", "ids_special",
      "missing_bytes"}]}; error is the load error, when tokenizers refuses the file.
  bpe_reference.py gguf-dump GGUF OUT_DIR
      reads the tokenizer metadata of a GGUF (gguf.GGUFReader) and writes OUT_DIR/spec.json (tokens,
      merges, token types, special ids, add_bos/add_eos, pre) and the Hugging Face tokenizer built from
      them as SmolLM2's published tokenizer.json is configured (BPE, unk_token null; pre-tokenizer
      Sequence[Digits(individual_digits), ByteLevel(add_prefix_space false, use_regex)]; control tokens
      as special added tokens; ByteLevel decoder), with a tokenizer_config.json naming BOS/EOS/pad.
  bpe_reference.py transformers-gguf GGUF TEXTS.json OUT.json
      transformers' own GGUF tokenizer conversion (AutoTokenizer.from_pretrained(dir, gguf_file=name)):
      {"loaded", "error", "class", "pre_tokenizer", "bos", "eos", "ids", "ids_special", "numeric"}
      (numeric: whether a text holds a character of category N).
  bpe_reference.py train KIND DATA.jsonl.gz VOCAB_SIZE OUT.json
      trains a tokenizer.json on the judgments' texts. KIND gpt2: ByteLevel pre-tokenizer, special
      <|endoftext|>. KIND llama3: Split(Llama-3 regex, Isolated) + ByteLevel(use_regex false),
      ignore_merges, specials <|begin_of_text|> <|end_of_text|>, TemplateProcessing adding the BOS.
"""
import gzip
import json
import os
import sys
import unicodedata

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def read_texts(path):
    with open(path, encoding="utf-8") as f:
        return [bytes.fromhex(h).decode("utf-8", errors="replace") for h in json.load(f)["hex"]]


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)
    os.replace(tmp, path)


def encode(args):
    from tokenizers import Tokenizer
    texts_path, out_path, paths = args[0], args[1], args[2:]
    limit = None
    if "--special-limit" in paths:
        i = paths.index("--special-limit")
        limit = int(paths[i + 1])
        paths = paths[:i] + paths[i + 2:]
    texts = read_texts(texts_path)
    byte_chars = bytes_to_unicode()
    results = []
    for p in paths:
        r = {"tokenizer": p, "error": None, "ids": [], "ids_special": [], "missing_bytes": []}
        try:
            tok = Tokenizer.from_file(p)
        except Exception as e:  # tokenizers refuses the file: the test compares the refusal
            r["error"] = str(e) or type(e).__name__
            results.append(r)
            continue
        tok.no_truncation()
        tok.no_padding()
        r["ids"] = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
        some = texts if limit is None else texts[:limit]
        r["ids_special"] = [e.ids for e in tok.encode_batch(some, add_special_tokens=True)]
        vocab = tok.get_vocab(with_added_tokens=False)
        r["missing_bytes"] = [b for b in range(256) if byte_chars[b] not in vocab]
        results.append(r)
    write_json(out_path, {"results": results})


def gguf_fields(path):
    import gguf
    r = gguf.GGUFReader(path)

    def get(name):
        f = r.fields.get(name)
        if f is None:
            return None
        t = f.types[0]
        if t == gguf.GGUFValueType.ARRAY:
            if f.types[-1] == gguf.GGUFValueType.STRING:
                return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            return [f.parts[i][0].item() for i in f.data]
        if t == gguf.GGUFValueType.STRING:
            return bytes(f.parts[f.data[0]]).decode("utf-8")
        return f.parts[f.data[0]][0].item()

    return get


def gguf_dump(args):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    path, out_dir = args
    get = gguf_fields(path)
    tokens = get("tokenizer.ggml.tokens")
    merges = get("tokenizer.ggml.merges")
    types = get("tokenizer.ggml.token_type") or [1] * len(tokens)

    def special_id(key):
        v = get(key)
        return -1 if v is None else int(v)

    spec = {
        "model": get("tokenizer.ggml.model"),
        "pre": get("tokenizer.ggml.pre") or "default",
        "tokens": tokens, "merges": merges, "token_types": [int(t) for t in types],
        "bos_id": special_id("tokenizer.ggml.bos_token_id"), "eos_id": special_id("tokenizer.ggml.eos_token_id"),
        "pad_id": special_id("tokenizer.ggml.padding_token_id"), "unk_id": special_id("tokenizer.ggml.unknown_token_id"),
        "add_bos": bool(get("tokenizer.ggml.add_bos_token") or False),
        "add_eos": bool(get("tokenizer.ggml.add_eos_token") or False),
    }
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "spec.json"), spec)

    # SmolLM2's published tokenizer.json, rebuilt from the GGUF's vocabulary.
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ")) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, dropout=None, unk_token=None, fuse_unk=False,
                               byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False, single_word=False, lstrip=False,
                                       rstrip=False) for i, t in enumerate(types) if t == 3])
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {"tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": False,
           "bos_token": tokens[spec["bos_id"]], "eos_token": tokens[spec["eos_id"]],
           "pad_token": tokens[spec["pad_id"]], "unk_token": tokens[spec["unk_id"]],
           "chat_template": get("tokenizer.chat_template")}
    write_json(os.path.join(out_dir, "tokenizer_config.json"), cfg)


def transformers_gguf(args):
    path, texts_path, out_path = args
    texts = read_texts(texts_path)
    out = {"loaded": False, "error": None}
    try:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))
    except Exception as e:
        out["error"] = "%s: %s" % (type(e).__name__, e)
        write_json(out_path, out)
        return
    backend = json.loads(tok.backend_tokenizer.to_str())
    out.update({"loaded": True, "class": type(tok).__name__, "pre_tokenizer": backend.get("pre_tokenizer"),
                "bos": tok.bos_token_id, "eos": tok.eos_token_id,
                "ids": tok(texts, add_special_tokens=False)["input_ids"],
                "ids_special": tok(texts[:50], add_special_tokens=True)["input_ids"],
                "numeric": [any(unicodedata.category(ch)[0] == "N" for ch in t) for t in texts]})
    write_json(out_path, out)


def judgment_texts(path):
    texts = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            for k in ("instruction", "output_1", "output_2"):
                if isinstance(r.get(k), str):
                    texts.append(r[k])
    return list(dict.fromkeys(texts))


def train(args):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    kind, data, vocab_size, out_path = args[0], args[1], int(args[2]), args[3]
    texts = judgment_texts(data)
    tok = Tokenizer(models.BPE())
    if kind == "gpt2":
        specials = ["<|endoftext|>"]
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    elif kind == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>"]
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    else:
        raise SystemExit("unknown kind " + kind)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if kind == "gpt2":
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
            special_tokens=[("<|begin_of_text|>", bos)])
    j = json.loads(tok.to_str())
    if kind == "llama3":
        j["model"]["ignore_merges"] = True  # as Meta-Llama-3's tokenizer.json
    Tokenizer.from_str(json.dumps(j))  # still loads
    write_json(out_path, j)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"encode": encode, "gguf-dump": gguf_dump, "transformers-gguf": transformers_gguf, "train": train}[cmd](args)


if __name__ == "__main__":
    main()
