"""Query text normalisation and tokenisation shared by indexing and search."""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import lru_cache

import jieba
import opencc

jieba.setLogLevel(logging.WARNING)
_t2s = opencc.OpenCC("t2s")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
_WORD = re.compile(r"[\u4e00-\u9fff]+|[a-z0-9]+")

# Words that carry no topic: asking, politeness, generic verbs of "doing" paperwork.
STOPWORDS = frozenset(
    [
        "的",
        "了",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "么",
        "嘛",
        "我",
        "你",
        "您",
        "他",
        "她",
        "我们",
        "请问",
        "请",
        "问",
        "问一下",
        "一下",
        "想",
        "想问",
        "要",
        "需要",
        "怎么",
        "怎么办",
        "怎样",
        "如何",
        "什么",
        "哪些",
        "哪里",
        "哪儿",
        "在哪",
        "是",
        "有",
        "没有",
        "可以",
        "能",
        "能不能",
        "可不可以",
        "是不是",
        "还",
        "也",
        "都",
        "和",
        "与",
        "及",
        "或",
        "就",
        "办",
        "办理",
        "弄",
        "整",
        "咋",
        "啥",
        "去",
        "到",
        "在",
        "给",
        "个",
        "这",
        "那",
        "关于",
        "咨询",
        "问题",
        "谢谢",
        "你好",
        "一个",
        "现在",
        "已经",
        "应该",
        "如果",
        "因为",
        "所以",
        "但是",
        "然后",
        "时候",
    ]
)


def normalise(text: str) -> str:
    """NFKC (full-width → half-width), traditional → simplified, lower case, squeezed spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _t2s.convert(text).lower()
    return " ".join(text.split())


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    """jieba words (search mode) plus CJK character bigrams, which survive typos and odd segmentation."""
    norm = normalise(text)
    words = [w for w in jieba.lcut_for_search(norm) if _WORD.fullmatch(w) and w not in STOPWORDS]
    bigrams = [run[i : i + 2] for run in _CJK_RUN.findall(norm) for i in range(len(run) - 1)]
    return tuple(words + ["#" + b for b in bigrams if b not in STOPWORDS])
