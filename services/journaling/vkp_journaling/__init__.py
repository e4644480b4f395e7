"""The journaling service of the VKP hub."""
