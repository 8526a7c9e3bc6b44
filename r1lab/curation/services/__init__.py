"""Curation writes, one module per concern:

- `queue_counts`: the annotators' done / remaining counters and their recount
- `projects`: projects, their annotators, the assignments that fill each example's overlap
- `examples`: an example's life: create, edit (revisions, labels), submit, review (four eyes)
- `step_labels`: an annotator's verdicts on the steps of an example's reasoning
- `import_jobs`: file imports: validate, then check and write every row in one transaction;
  `import_extras`: the revisions, labels and step verdicts an exported version brings back
- `versions`: dataset versions: freeze, export as JSONL, use records (lineage); `version_exports`:
  the other exports (stepwise JSONL, a Hugging Face datasets folder, Argilla records)
- `errors`: why a write was refused; `bulk`: many rows at once (COPY on PostgreSQL)

Within curation, import from the module that holds the function. Re-exported here: what other
apps call (rollouts sends completions and freezes kept sets; pipelines exports a version for
SFT and records its use).
"""
from r1lab.curation.services.errors import FourEyesError
from r1lab.curation.services.examples import example_create, example_submit, examples_bulk_approve
from r1lab.curation.services.projects import project_create
from r1lab.curation.services.versions import (
    dataset_version_export_path,
    dataset_version_freeze,
    dataset_version_record_use,
)

__all__ = [
    "FourEyesError",
    "dataset_version_export_path",
    "dataset_version_freeze",
    "dataset_version_record_use",
    "example_create",
    "examples_bulk_approve",
    "example_submit",
    "project_create",
]
