"""The registry's domain. Pure: no gRPC, protobuf or database here.

- `model`: the resources (named through `vkp_lib.names`), a change, a decision, request keys and
  pages;
- `rules`: what the contract's field rules cannot check (check digits, counties, client ids
  taken, request ids reused), an agreement's default id, a resource missing or there already;
- `updates`: field-mask updates, checked and applied;
- `decision`: the access decision, from an in-memory snapshot kept current by the changes;
- `reasons`: the registry's own ErrorInfo reasons.
"""
