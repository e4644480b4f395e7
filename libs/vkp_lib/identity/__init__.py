"""Who is calling, proven: the hub's authentication.

- `keys`: JSON Web Key Sets from a file or a URL, cached, refreshed on an unknown key id at most
  once per interval.
- `tokens`: JWT access tokens (vendors' HelseID-style tokens, and the hub's own service tokens)
  verified into a `Principal`.
- `dpop`: sender-constrained tokens (RFC 9449): the proof of possession of the bound key, with
  replayed proofs refused across replicas (Redis).
- `access`: the declarative map of which RPC needs which scope or the hub's service identity,
  and the authenticator the runner calls for every RPC.
- `issuer`: the service tokens a hub service presents to another, and the development issuer
  (`vkp token issue`) for local runs and tests.
"""
