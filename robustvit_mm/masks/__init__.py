"""Foreground masks without annotation (TokenCut)."""
