"""Curation reads, one module per concern:

- `queue`: an annotator's queue (projects with done / remaining, next example, J/K neighbours)
- `examples`: one example (the editor's read and steps, revisions, status trail), the review queue, four eyes
- `search`: the examples page's filters, full-text search and paging
- `projects`: the project list, status counts, annotators, recent imports
- `agreement`: agreement between annotators: labels, step labels, edits
- `versions`: dataset versions, their uses and rows, the SFT stage's picker

Import from the module that holds the function. Re-exported here: what other apps read
(pipelines' SFT dataset picker).
"""
from r1lab.curation.selectors.versions import dataset_versions_for_picker

__all__ = ["dataset_versions_for_picker"]
