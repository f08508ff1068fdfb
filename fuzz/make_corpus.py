#!/usr/bin/env python3
"""Regenerates the seed corpus of the libFuzzer harnesses, fuzz/corpus/<harness>/ (docs/fuzzing.md).

  .venv/bin/python fuzz/make_corpus.py [--cairn build/cairn] [--shared /work/shared/data]

Seeds come from real files, cut small (the whole corpus stays well under 1 MB): the shortest records of
the bundled data (data/) and of the shared AlpacaEval annotations (--shared, skipped when absent), the
config.json and safetensors files of a tiny `cairn train` run (gpt2 and llama), GGUF files written with
gguf-py, tokenizer.json files trained with Hugging Face tokenizers, and SmolLM2's chat template (read
from the GGUF that scripts/get_smollm2.sh fetches, when present). Deterministic. Files named regress-*
(inputs that once crashed a harness) are never touched; every other file of a corpus folder is
rewritten.
"""
import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SMOLLM2 = os.path.expanduser("~/.cache/cairn/SmolLM2-135M-Instruct.Q4_1.gguf")


def shortest_lines(path, n):
    with gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    return sorted(lines, key=lambda l: (len(l), l))[:n]


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        g.write(data)
    return buf.getvalue()


class Corpus:
    def __init__(self, name):
        self.dir = os.path.join(CORPUS, name)
        os.makedirs(self.dir, exist_ok=True)
        for f in os.listdir(self.dir):
            if not f.startswith("regress-"):
                os.remove(os.path.join(self.dir, f))

    def add(self, name, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        with open(os.path.join(self.dir, "seed-" + name), "wb") as f:
            f.write(data)


def lines(*records):
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records)


def run(*cmd):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}")


def tiny_runs(cairn, tmp, alpaca):
    """config.json + model.safetensors (+ optimizer.safetensors) of two tiny runs, gpt2 and llama."""
    pairs = os.path.join(tmp, "pairs.jsonl")
    src = os.path.join(tmp, "alpaca.jsonl")
    with open(src, "w", encoding="utf-8") as f:
        f.write(lines(*shortest_lines(alpaca, 200)))
    run(cairn, "pairs", "--from", "alpaca-eval", "--input", src, "--output", pairs)
    tok = os.path.join(tmp, "tok.model")
    run(cairn, "tokenizer", "train", "--input", pairs, "--out", tok, "--vocab-size", "512")
    runs = {}
    for arch in ("gpt2", "llama"):
        out = os.path.join(tmp, "run-" + arch)
        run(cairn, "train", "--train", pairs, "--valid", pairs, "--out", out, "--tokenizer", tok, "--arch", arch,
            "--d-model", "8", "--n-layers", "1", "--n-heads", "2", "--d-ff", "16", "--max-seq-len", "16",
            "--steps", "2", "--batch-pairs", "2", "--threads", "1")
        runs[arch] = {f: open(os.path.join(out, f), "rb").read()
                      for f in ("config.json", "model.safetensors", "optimizer.safetensors")}
    return pairs, runs


def half_safetensors():
    from safetensors.numpy import save
    rng = np.random.default_rng(0)
    return save({"a.f16": rng.standard_normal((3, 4)).astype(np.float16),
                 "b.f32": rng.standard_normal((2,)).astype(np.float32),
                 "c.scalar": np.array(1.5, dtype=np.float32)}, metadata={"format": "pt"})


def tiny_gguf(path):
    """A llama-shaped GGUF: the metadata cairn's importer reads, a 20-token BPE vocabulary and one tensor of
    each float type plus Q8_0 and Q4_K (quantized from seeded random values)."""
    import gguf
    from gguf import GGMLQuantizationType as Q
    w = gguf.GGUFWriter(path, "llama")
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_feed_forward_length(16)
    w.add_context_length(32)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + list("abcdehilnorst") + ["Ġ", "he", "Ġt", "in"]
    w.add_token_list(toks)
    w.add_token_merges(["h e", "Ġ t", "i n"])
    w.add_token_types([3, 3, 3] + [1] * (len(toks) - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    w.add_array("t.nested", [[1, 2], ["x"], [[0.5]]])
    w.add_bool("t.bool", True)
    rng = np.random.default_rng(0)
    w.add_tensor("f32", rng.standard_normal((2, 4)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((3,)).astype(np.float16))
    bf16 = gguf.quants.quantize(rng.standard_normal((2, 2)).astype(np.float32), Q.BF16)
    w.add_tensor("bf16", bf16, raw_shape=bf16.shape, raw_dtype=Q.BF16)
    q8 = gguf.quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), Q.Q8_0)
    w.add_tensor("q8_0", q8, raw_shape=q8.shape, raw_dtype=Q.Q8_0)
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    q4k[0, 0:4] = np.frombuffer(np.array([0.01, 0.002], dtype=np.float16).tobytes(), dtype=np.uint8)
    w.add_tensor("q4_k", q4k, raw_shape=q4k.shape, raw_dtype=Q.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def trained_tokenizer(kind, alpaca, tmp):
    out = os.path.join(tmp, kind + ".json")
    subprocess.run([sys.executable, os.path.join(ROOT, "tests", "python", "bpe_reference.py"), "train", kind,
                    alpaca, "300", out], check=True)
    with open(out, encoding="utf-8") as f:
        return json.dumps(json.load(f), ensure_ascii=False, separators=(",", ":"))


def smollm2_chat_template():
    if not os.path.exists(SMOLLM2):
        return None
    import gguf
    r = gguf.GGUFReader(SMOLLM2)
    f = r.fields.get("tokenizer.chat_template")
    return bytes(f.parts[f.data[0]]).decode("utf-8") if f else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", default=os.path.join(ROOT, "build", "cairn"))
    ap.add_argument("--shared", default="/work/shared/data")
    a = ap.parse_args()
    alpaca = os.path.join(ROOT, "data", "alpaca-eval", "train.jsonl.gz")
    shared = os.path.join(a.shared, "alpaca-eval-annotations", "train.jsonl.gz")
    short = shortest_lines(alpaca, 4)
    score = shortest_lines(os.path.join(ROOT, "data", "samples", "score_sample.jsonl"), 3)

    with tempfile.TemporaryDirectory() as tmp:
        pairs_file, runs = tiny_runs(a.cairn, tmp, alpaca)
        real_pairs = shortest_lines(pairs_file, 3)

        c = Corpus("line_reader")
        c.add("alpaca.jsonl", lines(*short))
        c.add("alpaca.jsonl.gz", gz(lines(*short).encode()))
        c.add("alpaca-truncated.jsonl.gz", gz(lines(*short).encode())[:200])
        # two members with zero padding between and after them; a plain line appended to a member
        c.add("two-members-padded.jsonl.gz", gz(lines(*short[:2]).encode()) + b"\0\0" + gz(lines(*short[2:]).encode()) + b"\0")
        c.add("gzip-then-plain.jsonl.gz", gz(lines(*short[:2]).encode()) + lines(*short[2:]).encode())
        c.add("score-crlf.jsonl", "\r\n".join(score))
        c.add("blank-lines.jsonl", "\n \t\n" + lines(score[0]) + "\n")

        c = Corpus("pairs")
        c.add("real-pairs.jsonl", lines(*real_pairs))
        c.add("score-records.jsonl", lines(*score))
        c.add("shapes.jsonl", lines(
            {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."},
            {"prompt": "\n\nHuman: Name a colour.\n\nAssistant:", "chosen": " Blue.", "rejected": " Seven."},
            {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
             "chosen": [{"role": "assistant", "content": "4"}], "rejected": [{"role": "assistant", "content": "5"}],
             "label": 0.9, "margin": 0.5, "weight": 2, "principle": "honest", "id": 7},
            {"prompt": [{"role": "human", "content": "Hi"}], "chosen": "Hello", "rejected": "Bye", "id": "x"},
            {"text": "\n\nHuman: Hi\n\nAssistant: Hello"}))
        template = smollm2_chat_template()
        if template:
            c.add("smollm2-chat-template.txt", template)

        c = Corpus("converters")
        c.add("alpaca-eval.jsonl", lines(*short, short[0]))
        if os.path.exists(shared):
            nan = [l for l in shortest_lines(shared, 20000) if '"preference": NaN' in l or '"preference": null' in l]
            c.add("alpaca-eval-shared.jsonl", lines(*shortest_lines(shared, 2), *nan[:1]))
        c.add("cai.jsonl", lines(
            {"prompt": "P", "initial": "r0", "cycles": [
                {"cycle": 2, "principle": "honest", "critique": "c2", "revised": "r2"},
                {"cycle": 1, "principle": "harmless", "critique": "c1", "revised": "r1"}], "final": "r2"},
            {"prompt": "P", "initial": "r0", "cycles": []}))
        c.add("judgments.jsonl", lines(
            {"prompt": "P1", "response_a": "A1", "response_b": "B1",
             "judgments": [{"order": "ab", "winner": "b"}, {"order": "ba", "winner": "b"}]},
            {"prompt": "P2", "response_a": "A2", "response_b": "B2", "id": 2,
             "judgments": [{"order": "ab", "winner": "a"}, {"order": "ba", "winner": "b"}, {"order": "ab", "winner": "tie"}]}))

        st, rd = Corpus("safetensors"), Corpus("run_dir")
        for arch, f in runs.items():
            st.add(arch + "-model.safetensors", f["model.safetensors"])
            rd.add(arch + "-run", f["config.json"] + b"\0" + f["model.safetensors"])
        st.add("gpt2-optimizer.safetensors", runs["gpt2"]["optimizer.safetensors"])
        st.add("half.safetensors", half_safetensors())
        st.add("empty.safetensors", b"\x08\0\0\0\0\0\0\0{}      ")

        c = Corpus("gguf")
        path = os.path.join(tmp, "tiny.gguf")
        tiny_gguf(path)
        c.add("tiny-llama.gguf", open(path, "rb").read())

        c = Corpus("bpe_tokenizer")
        text = " ".join(json.loads(real_pairs[0])["chosen"].split()[:40]) + " 12345 <|endoftext|> \u4e16\u754c \xe9"
        c.add("gpt2", trained_tokenizer("gpt2", alpaca, tmp) + "\0\0" + text)
        c.add("llama3-with-config", trained_tokenizer("llama3", alpaca, tmp) + "\0" +
              json.dumps({"eos_token": "<|end_of_text|>", "pad_token": {"content": "<|begin_of_text|>"}}) + "\0" +
              "<|begin_of_text|>" + text)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(CORPUS) for f in fs)
    print(f"fuzz/corpus: {total} bytes")


if __name__ == "__main__":
    main()
