"""Follow-up aspects (要多久 / 在哪里办 / 要钱吗 …): which part of the current item a question is about.

Keyword rules, checked in order; the first aspect whose words appear wins. They
only run on follow-ups (Rasa's ask_followup intent) and on service questions,
where the item itself is known from the conversation or from retrieval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from knowledge_base.schema import Entry
from knowledge_base.text import normalise

FORM_WORDS = {
    "original": "原件",
    "copy": "复印件",
    "original_and_copy": "原件及复印件",
    "electronic": "电子版",
    "form": "表格",
}


def _materials(entry: Entry) -> str:
    lines = [f"{n}. {m.name}（{FORM_WORDS[m.form]}{m.count}份）" for n, m in enumerate(entry.materials, 1)]
    return f"办理「{entry.title}」一般需要：\n" + "\n".join(lines)


def _progress(entry: Entry) -> str:
    return (
        f"「{entry.title}」的办理进度可以登录 {entry.online_link} 在“我的办件”里查询，"
        f"也可以到受理窗口凭受理回执查询。办结时限：{entry.time_limit}"
    )


def _online(entry: Entry) -> str:
    if entry.steps.online:
        steps = "\n".join(f"{n}. {s}" for n, s in enumerate(entry.steps.online, 1))
        return f"「{entry.title}」可以网上办理（{entry.online_link}）：\n{steps}"
    return f"「{entry.title}」目前需要到窗口办理：{entry.where}"


@dataclass(frozen=True)
class Aspect:
    name: str
    words: tuple[str, ...]
    answer: Callable[[Entry], str]


ASPECTS = (
    Aspect("progress", ("进度", "到哪一步", "办到哪", "审核到", "审批到", "办好了没", "结果出来"), _progress),
    Aspect(
        "time_limit",
        ("多久", "多长时间", "几天", "时限", "多少天", "几个工作日", "什么时候能拿", "什么时候拿", "多快", "要等"),
        lambda e: f"「{e.title}」的办理时限：{e.time_limit}",
    ),
    Aspect(
        "fees",
        ("钱", "费用", "收费", "免费", "交费", "缴费", "工本费", "花多少"),
        lambda e: f"「{e.title}」的收费：{e.fees}",
    ),
    Aspect(
        "hours",
        ("几点", "上班", "下班", "营业时间", "办公时间", "周末", "星期六", "周六", "节假日", "中午"),
        lambda e: f"「{e.title}」的办理时间：{e.hours}",
    ),
    Aspect(
        "where",
        ("哪里", "哪儿", "哪办", "地点", "地址", "去哪", "哪个窗口", "哪个部门", "在哪"),
        lambda e: f"「{e.title}」的办理地点：{e.where}",
    ),
    Aspect("online", ("网上", "线上", "手机", "app", "小程序", "网办", "不用跑", "邮寄"), _online),
    Aspect(
        "conditions",
        ("条件", "资格", "符合", "能不能办", "可以办吗", "能办吗", "谁可以"),
        lambda e: f"办理「{e.title}」的条件：\n" + "\n".join(f"· {c}" for c in e.conditions),
    ),
    Aspect("materials", ("材料", "带什么", "带啥", "资料", "证件", "准备什么", "准备啥", "要什么", "清单"), _materials),
)


def detect(text: str) -> Aspect | None:
    norm = normalise(text).lower()
    for aspect in ASPECTS:
        if any(word in norm for word in aspect.words):
            return aspect
    return None
