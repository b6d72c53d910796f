"""Event bus adapters: in-process (default) and NATS JetStream (production).

Both give at-least-once delivery to named (durable) consumers: a handler that raises is not
acknowledged and the message comes back. Publishers attach a deterministic message id, which
JetStream uses to drop duplicates within its window and consumers use to stay idempotent.
"""

from marginproof.bus.base import Bus, Handler, Message, Subscription, subject_matches
from marginproof.bus.inprocess import InProcessBus

__all__ = ["Bus", "Handler", "InProcessBus", "Message", "Subscription", "subject_matches"]
