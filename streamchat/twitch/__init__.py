"""Twitch: the shapes of its Helix API and the data streamchat takes from it."""
