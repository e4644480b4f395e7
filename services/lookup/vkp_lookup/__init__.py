"""The lookup service of the VKP hub."""
