"""What is pushed to subscribed browsers, and from where: the durable `dashboard-push`
consumer on EVENTS, which only the dashboard leader reads.

Three events push: a task dead-lettered, the hub's watchdog firing, and a critical alert
firing (`agentcom.evt.alert.fired`, recorded by the leader through the outbox). Reading them
from a durable consumer, not from the ordered consumer every replica follows, is what makes a
push survive a change of leader: an event stored while no replica leads (the leader's process
killed, its lease lost on a busy host) waits in the consumer, and the next leader sends it.
Before, the event passed every replica while none led and its push was lost.

A message is acked after `Pusher.notify` returned, so a leader killed mid-send leaves it to
be redelivered (after the consumer's ack wait) and sent again: a browser shows one
notification per `tag`, so the second replaces the first. An event older than the push TTL
when it is read is acked unsent: a push service would have dropped it by now.
"""

import logging
from datetime import timedelta

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common import clock, consumer, subjects
from agentcom_common.contracts.alert import Severity
from agentcom_dashboard import events
from agentcom_dashboard.push import Pusher

log = logging.getLogger(__name__)

CONSUMER = "dashboard-push"
ALERT_FIRED = subjects.event("alert", "fired")
PUSHED = (subjects.TASK_DEAD_LETTERED, subjects.HUB_WATCHDOG_FIRED, ALERT_FIRED)


def message_for(event: events.Event) -> tuple[dict[str, str], bool] | None:
    """The push for `event` and whether it is urgent, or None for an event not pushed."""
    data = event.data
    if event.subject == subjects.TASK_DEAD_LETTERED:
        task_id = str(data.get("task_id", ""))
        return {
            "title": "Task dead-lettered",
            "body": f"task {task_id}",
            "tag": f"dl-{task_id}",
        }, False
    if event.subject == subjects.HUB_WATCHDOG_FIRED:
        # the hub's own critical alert (its watchdog forced resting): not a rule of ours,
        # so it is pushed like a critical alert but not kept in the alert book
        message = str(data.get("message", ""))[:500]
        return {"title": "CRITICAL: hub watchdog", "body": message, "tag": "hub-watchdog"}, True
    if event.subject == ALERT_FIRED and data.get("severity") == Severity.CRITICAL.value:
        rule = str(data.get("rule_id", ""))[:200]
        body = str(data.get("message", ""))[:500]
        return {"title": f"CRITICAL: {rule}", "body": body, "tag": rule}, True
    return None


async def run(
    js: JetStreamContext, pusher: Pusher, policy: consumer.Policy, ttl: timedelta
) -> None:
    """Read `dashboard-push` and send each push; runs while this replica leads.

    Made at the stream's end the first time (a new deployment does not push its history).
    Postgres away while listing subscriptions raises, so the message is retried by `policy`.
    """

    async def handle(msg: Msg) -> None:
        event = events.decode(msg)
        found = message_for(event)
        if found is None:
            return
        if clock.now() - event.at > ttl:
            log.info("push.too_old", extra={"subject": event.subject, "seq": event.seq})
            return
        message, urgent = found
        await pusher.notify(message, urgent=urgent)

    await consumer.consume(
        js, subjects.EVENTS_STREAM, PUSHED, CONSUMER, policy, handle, batch=32, new_only=True
    )
