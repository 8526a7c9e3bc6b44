"""The rejection-sampling workbench: a rejection-sampling stage's kept and removed candidates,
the filter funnel, spot checks by a second person, and the freeze of the kept set into a curation
dataset version (four eyes: who spot-checked does not freeze alone unless the project allows it)."""
