"""What the citizen is told about the human queue: where they stand, service hours, call-backs."""

from __future__ import annotations

import re

from bot.escalation import Escalation, EscalationService
from bot.messages import Button, ButtonsMessage, RichMessage, TextMessage, payload

CALLBACK_BUTTON = Button(title="请工作人员回电", payload=payload("callback"))
# Mainland mobile numbers, and landlines with an area code.
PHONE = re.compile(r"(?<!\d)(?:\+?86[-\s]?)?(1[3-9]\d(?:[-\s]?\d{4}){2}|0\d{2,3}-?\d{7,8})(?!\d)")


def queue_notice(escalations: EscalationService, escalation: Escalation) -> str:
    standing = escalations.standing(escalation)
    ahead = standing.position - 1
    where = f"您前面还有{ahead}位，" if ahead else "您是下一位，"
    return (
        f"已为您转接人工客服（{standing.queue.name}），{where}预计等待约{standing.minutes}分钟。"
        "等待时可以继续输入，工作人员接入后能看到您和我的全部对话，您不用重复说明。"
    )


def after_hours_notice(hours: str) -> str:
    return (
        f"现在不是人工服务时间（{hours}）。您可以直接留言，工作人员上班后会第一时间查看并回复；"
        "也可以留下手机号码，我们上班后给您回电。"
    )


# Asking for a person in so many words: honoured even while Rasa is down.
ASKS_FOR_PERSON = re.compile(r"转人工|接人工|找人工|人工客服|人工服务|人工坐席")


def handoff_replies(escalations: EscalationService, escalation: Escalation | None, opening: str) -> list[RichMessage]:
    """What the citizen is told when handed to a person: where they stand, or the hours and a call-back."""
    if escalation is None:
        return [TextMessage(text=opening + "正在为您转接人工客服，请稍候。")]
    if not escalation.after_hours:
        return [TextMessage(text=opening + queue_notice(escalations, escalation))]
    hours = escalations.standing(escalation).queue.hours_text()
    return [ButtonsMessage(text=opening + after_hours_notice(hours), buttons=[CALLBACK_BUTTON])]


def phone_in(text: str) -> str | None:
    match = PHONE.search(text)
    return re.sub(r"[-\s]", "", match.group(1)) if match else None
