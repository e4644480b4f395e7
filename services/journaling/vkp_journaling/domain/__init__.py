"""The journaling service's domain. Pure: no gRPC, protobuf or database here.

- `entry`: an entry and its states (the contract's event-state names), what a new one carries,
  the queue rules (which states wait, alarm steps held) and which entries RetryEntry may requeue;
- `delivery`: the outcome of one delivery attempt and what follows a failed one (retry after a
  backoff, or dead: too many attempts, too old, or refused for good);
- `audit`: the id of a delivered note's audit record, derived from its entry;
- `reasons`: the journaling service's own ErrorInfo reasons.
"""
