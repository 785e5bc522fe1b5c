"""Make the tiny Qwen2 fixtures and transformers goldens for lamarck's eval tests.

Run once (needs torch, transformers, tokenizers, safetensors):
    /work/pyenv/bin/python tools/eval/make_fixture.py
Writes tests/fixtures/eval/{tokenizer,tiny-tied,tiny-sharded}/ and golden.json.
Tests read only the committed outputs; they never run Python.

Golden values are transformers' own: per-token log-probabilities of lm-eval style
(context, continuation) requests (context/continuation split reimplemented from
lm-eval's `HFLM._encode_pair`), in f32 and bf16, and greedy generations.
"""
import json
import os
import shutil

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, Regex
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "eval")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Question: What is the capital of France?\nAnswer: Paris",
    "The quick brown fox jumps over the lazy dog. A stitch in time saves nine.",
    "Question: 12 + 30 = ?\nAnswer: 42. Numbers 0 1 2 3 4 5 6 7 8 9 and sums like 17+25=42.",
    "Rivers flow to the sea; mountains rise toward the sky. Plants need water and light.",
    "Which animal is a mammal? whale, shark, trout, octopus. The whale breathes air.",
] * 20


def make_tokenizer(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "chat_template": CHAT_TEMPLATE, "model_max_length": 256,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    return tok.get_vocab_size()


def make_model(vocab, tied, seed):
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, rope_theta=10000.0, rms_norm_eps=1e-6,
                      tie_word_embeddings=tied, eos_token_id=0, bos_token_id=0)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return model


def encode_pair(tok, context, continuation):
    """lm-eval HFLM._encode_pair, with add_special_tokens=False as HFLM does for causal LMs."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


REQUESTS = [
    ("Question: What is the capital of France?\nAnswer:", " Paris"),
    ("Question: What is the capital of France?\nAnswer:", " Berlin"),
    ("Question: 12 + 30 = ?\nAnswer: ", "42"),
    ("Which animal is a mammal?", " the whale breathes air"),
    ("", "The quick brown fox"),
    ("A stitch in time", " saves nine."),
    ("Rivers flow to the sea;", " mountains rise toward the sky. Plants need water and light."),
]
# A multiple-choice task over the fixture: tests/fixtures/eval/tasks/mc.yaml reads
# tasks/mc/test.jsonl; the goldens hold transformers' log-likelihood of every choice.
MC_DOCS = [
    {"question": "What is the capital of France?", "choices": ["Paris", "Berlin", "a city on the Seine"], "answer": 0},
    {"question": "Which animal is a mammal?", "choices": ["whale", "shark", "the whale breathes air", "trout"], "answer": 2},
    {"question": "12 + 30 = ?", "choices": ["42", "17", "forty-two"], "answer": 2},
    {"question": "What do plants need?", "choices": ["water and light", "sand", "the sky"], "answer": 0},
]
MC_TEXT = "Question: {q}\nAnswer:"
PROMPTS = ["Question: What is the capital of France?\nAnswer:", "The quick brown"]


def loglik(model, ctx, cont, eos):
    ctx = ctx if ctx else [eos]
    ids = torch.tensor([(ctx + cont)[:-1]])
    with torch.no_grad():
        logits = model(ids).logits.float()
    logp = torch.log_softmax(logits[0, -len(cont):], dim=-1)
    tok_lp = [logp[i, t].item() for i, t in enumerate(cont)]
    greedy = all(int(logp[i].argmax()) == t for i, t in enumerate(cont))
    return tok_lp, greedy


def goldens(model, tok, eos):
    out = {"requests": [], "generations": []}
    bf16 = make_bf16(model)
    for ctx_s, cont_s in REQUESTS:
        ctx, cont = encode_pair(tok, ctx_s, cont_s)
        lp, greedy = loglik(model, ctx, cont, eos)
        lp16, _ = loglik(bf16, ctx, cont, eos)
        out["requests"].append({"context": ctx_s, "continuation": cont_s, "context_ids": ctx,
                                "continuation_ids": cont, "token_logprobs": lp,
                                "loglikelihood": sum(lp), "is_greedy": greedy,
                                "loglikelihood_bf16": sum(lp16)})
    out["mc"] = []
    for doc in MC_DOCS:
        lls = []
        for c in doc["choices"]:
            ctx, cont = encode_pair(tok, MC_TEXT.format(q=doc["question"]), " " + c)
            lls.append(sum(loglik(model, ctx, cont, eos)[0]))
        out["mc"].append(lls)
    for p in PROMPTS:
        ids = tok(p, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            gen = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                                 eos_token_id=None, pad_token_id=eos)
        new = gen[0, len(ids):].tolist()
        out["generations"].append({"prompt": p, "prompt_ids": ids, "generated_ids": new,
                                   "generated_text": tok.decode(new)})
    return out


def make_bf16(model):
    import copy
    return copy.deepcopy(model).to(torch.bfloat16)


def main():
    tok_dir = os.path.join(ROOT, "tokenizer")
    vocab = make_tokenizer(tok_dir)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tok_dir, "tokenizer.json"),
                                  eos_token="<|endoftext|>")
    eos = tok.eos_token_id
    golden = {"vocab_size": vocab, "eos_token_id": eos, "models": {}}
    for name, tied, seed, shard in [("tiny-tied", True, 1, None), ("tiny-sharded", False, 2, "60KB")]:
        model = make_model(vocab, tied, seed)
        d = os.path.join(ROOT, name)
        shutil.rmtree(d, ignore_errors=True)
        kw = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(d, safe_serialization=True, **kw)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_dir, f), os.path.join(d, f))
        if name == "tiny-sharded":
            # The older config.json style: top-level rope_theta, torch_dtype, a sliding window.
            cpath = os.path.join(d, "config.json")
            cfg = json.load(open(cpath))
            rp = cfg.pop("rope_parameters", None) or {}
            cfg["rope_theta"] = rp.get("rope_theta", 10000.0)
            cfg.pop("dtype", None)
            cfg["torch_dtype"] = "float32"
            cfg["sliding_window"] = 4096
            cfg["use_sliding_window"] = False
            json.dump(cfg, open(cpath, "w"), indent=2)
        golden["models"][name] = goldens(model, tok, eos)
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    os.makedirs(os.path.join(ROOT, "tasks", "mc"), exist_ok=True)
    with open(os.path.join(ROOT, "tasks", "mc", "test.jsonl"), "w") as f:
        for doc in MC_DOCS:
            f.write(json.dumps(doc) + "\n")
    with open(os.path.join(ROOT, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
    print("vocab", vocab, "written to", ROOT)


if __name__ == "__main__":
    main()
