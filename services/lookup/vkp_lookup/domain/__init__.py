"""The lookup service's pure rules: the service need (tjenstlig behov) and the alarm window."""
