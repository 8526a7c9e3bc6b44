"""Agreement between a project's annotators (the agreement page): on their labels, on their step
labels (issue 18: per step, and the same first wrong step), and on their edits of the text (issue
18: normalised edit distances between their versions and the original)."""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations

from django.db.models import Count, Exists, Max, OuterRef

from r1lab.curation import agreement
from r1lab.curation import steps as step_rules
from r1lab.curation.models import Assignment, CurationProject, Example, Label, Revision, StepLabel


# --- labels ---------------------------------------------------------------------------------------
def project_agreement(*, project: CurationProject, worst: int = 50) -> dict:
    """Per-label agreement over examples labelled by 2+ annotators, and the widest disagreements.

    Cohen's κ when exactly two annotators labelled the project's shared examples, Krippendorff's α
    otherwise (nominal for yes/no and choices, interval for scales; α is given for two as well).
    """
    schema = [q for q in project.label_schema if q["type"] in ("scale", "bool", "choice")]
    shared = (
        Label.objects.filter(example__project=project).values("example_id").annotate(n=Count("id")).filter(n__gte=2).values("example_id")
    )
    units: dict[int, dict[int, dict]] = defaultdict(dict)
    for ex_id, annotator_id, values in Label.objects.filter(example_id__in=shared).values_list("example_id", "annotator_id", "values"):
        units[ex_id][annotator_id] = values or {}
    annotators = sorted({a for coders in units.values() for a in coders})
    per_label = []
    spread: dict[int, float] = defaultdict(float)
    for q in schema:
        key = q["key"]
        by_unit = {ex: {a: v.get(key) for a, v in coders.items() if v.get(key) is not None} for ex, coders in units.items()}
        by_unit = {ex: coders for ex, coders in by_unit.items() if len(coders) >= 2}
        metric = "interval" if q["type"] == "scale" else "nominal"
        kappa = None
        if len(annotators) == 2:
            a, b = annotators
            kappa = agreement.cohen_kappa([(c[a], c[b]) for c in by_unit.values() if a in c and b in c])
        alpha = agreement.krippendorff_alpha(by_unit, metric=metric)
        per_label.append({
            "key": key, "question": q["question"], "type": q["type"], "units": len(by_unit),
            "method": "Cohen's κ" if len(annotators) == 2 else f"Krippendorff's α ({metric})",
            "value": kappa if len(annotators) == 2 else alpha, "alpha": alpha, "kappa": kappa,
        })
        for ex, coders in by_unit.items():
            spread[ex] += agreement.disagreement(list(coders.values()), q["type"], q.get("min", 1), q.get("max", 5))
    worst_ids = [ex for ex, s in sorted(spread.items(), key=lambda kv: (-kv[1], kv[0])) if s > 0][:worst]
    examples = Example.objects.in_bulk(worst_ids)
    return {
        "annotators": len(annotators), "units": len(units), "labels": per_label,
        "worst": [{"example": examples[i], "spread": round(spread[i], 3), "labels": units[i]} for i in worst_ids if i in examples],
    }


# --- step labels ----------------------------------------------------------------------------------
# The step agreement reads the verdicts of this many examples, the most recently step-labelled
# (all of them: 40,000 examples with two annotators took 14 s; benchmarks/curation.py); the page says so.
STEP_AGREEMENT_EXAMPLES = 5000


@dataclass
class _StepVotes:
    """What step agreement is computed from."""

    units: Counter  # {(correct, incorrect, neutral) counts of a step: how many steps}, steps with 2+ verdicts
    pairs: Counter  # with two annotators: {(a's label, b's label): how many steps both labelled}
    sequences: dict  # {example_id: {username: (the steps they labelled (hashes), their first wrong step)}}, when known


def _step_votes(rows, annotators: list[str]) -> _StepVotes:
    """From StepLabel rows (example_id, username, entries) of examples step-labelled by 2+ annotators."""
    units: dict[tuple, dict[str, str]] = defaultdict(dict)
    sequences: dict[int, dict] = defaultdict(dict)
    for ex_id, username, entries in rows:
        seen: Counter = Counter()
        for e in entries or []:
            key = (ex_id, e.get("h"), seen[e.get("h")])
            seen[e.get("h")] += 1
            if e.get("label") in step_rules.LABELS:
                units[key][username] = e["label"]
        first = step_rules.first_wrong_step([e.get("label", "") for e in entries or []])
        if first is not None:
            sequences[ex_id][username] = (tuple(e.get("h") for e in entries), first)
    counts: Counter = Counter()
    pairs: Counter = Counter()
    for coders in units.values():
        if len(coders) >= 2:
            labels = list(coders.values())
            counts[tuple(labels.count(label) for label in step_rules.LABELS)] += 1
            if len(annotators) == 2 and all(a in coders for a in annotators):
                pairs[(coders[annotators[0]], coders[annotators[1]])] += 1
    return _StepVotes(units=counts, pairs=pairs, sequences=sequences)


def step_agreement(*, project: CurationProject, worst: int = 50) -> dict:
    """Agreement on step verdicts over examples step-labelled by 2+ annotators.

    Over the STEP_AGREEMENT_EXAMPLES most recently step-labelled of them. Per step: each step (an
    example's step text, its k-th occurrence) is a unit and the annotators'
    verdicts on it are nominal values: Krippendorff's α (and Cohen's κ with exactly two annotators),
    plus the share of annotator pairs that gave the same verdict. First wrong step: for each pair of
    annotators who labelled the same steps (the same text, cut the same way) and whose first wrong
    step is known, whether it is the same step ("none" counts: both found no mistake); pairs who
    labelled different texts are counted apart, not compared.
    """
    shared = (StepLabel.objects.filter(example__project=project).values("example_id").annotate(n=Count("id"), last=Max("updated_at"))
              .filter(n__gte=2))
    shared_ids = list(shared.order_by("-last", "-example_id").values_list("example_id", flat=True))  # ints: cheap to read all
    examples_count, recent = len(shared_ids), shared_ids[:STEP_AGREEMENT_EXAMPLES]
    rows = list(StepLabel.objects.filter(example_id__in=recent).values_list("example_id", "annotator__username", "entries"))
    annotators = sorted({username for _, username, _ in rows})
    votes = _step_votes(rows, annotators)
    same_fw = pairs_fw = not_comparable = 0
    per_pair: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    disagreements = []
    for ex_id in sorted(votes.sequences):
        known = votes.sequences[ex_id]
        differ = False
        for a, b in combinations(sorted(known), 2):
            if known[a][0] != known[b][0]:
                not_comparable += 1
                continue
            same = known[a][1] == known[b][1]
            same_fw += same
            pairs_fw += 1
            per_pair[(a, b)][0] += same
            per_pair[(a, b)][1] += 1
            differ = differ or not same
        if differ:
            disagreements.append({"example_id": ex_id, "first_wrong": {u: "none" if fw == -1 else fw + 1 for u, (_, fw) in sorted(known.items())}})
    same_steps, step_pairs = agreement.pairs_agreeing_from_counts(votes.units)
    kappa = agreement.cohen_kappa(list(votes.pairs.elements())) if len(annotators) == 2 else None
    examples = Example.objects.only("id", "prompt").in_bulk([d["example_id"] for d in disagreements[:worst]])
    return {
        "examples": examples_count, "compared": len(recent), "annotators": len(annotators), "steps": sum(votes.units.values()),
        "alpha": agreement.nominal_alpha_from_counts(votes.units), "kappa": kappa,
        "percent": same_steps / step_pairs if step_pairs else None,
        "first_wrong": {"same": same_fw, "pairs": pairs_fw, "rate": same_fw / pairs_fw if pairs_fw else None,
                        "not_comparable": not_comparable},
        "pairs": [{"a": a, "b": b, "same": s, "pairs": n, "rate": s / n} for (a, b), (s, n) in sorted(per_pair.items())],
        "disagreements": [{**d, "example": examples[d["example_id"]]} for d in disagreements[:worst] if d["example_id"] in examples],
    }


# --- edits ----------------------------------------------------------------------------------------
# How much text the edits section may compare word by word on one page view (agreement.edit_distance:
# ~0.2 s of CPU per EDIT_WORK_BUDGET); past it, the remaining pairs are compared sentence by sentence.
EDITS_PAGE_WORK_BUDGET = 5 * agreement.EDIT_WORK_BUDGET


def trace_text(revision) -> str:
    """What edit distances compare: the reasoning, then the summary."""
    return f"{revision.reasoning}\n\n{revision.summary}"


def _annotator_revisions(example_ids) -> dict[int, dict]:
    """{example_id: {"original": revision 1, "by": {username: that annotator's last revision}}}: the
    edits of the example's own annotators (assigned to it), not a reviewer's."""
    assigned = Assignment.objects.filter(example_id=OuterRef("example_id"), user_id=OuterRef("author_id"))
    out: dict[int, dict] = {ex_id: {"original": None, "by": {}} for ex_id in example_ids}
    originals = Revision.objects.filter(example_id__in=example_ids, number=1).select_related("author")
    edits = (Revision.objects.filter(example_id__in=example_ids, number__gt=1).filter(Exists(assigned))
             .select_related("author").order_by("example_id", "number"))
    for rev in originals:
        out[rev.example_id]["original"] = rev
    for rev in edits:
        out[rev.example_id]["by"][rev.author.username] = rev  # ordered by number: the last one stays
    return out


def edit_agreement(*, project: CurationProject, limit: int = 100) -> dict:
    """Agreement on how annotators fixed the text: for the `limit` most recently edited examples that
    two or more of their annotators edited, the normalised edit distance between each pair of
    annotators' versions (their last revision) and between each version and the original (revision
    1), per example and averaged per annotator pair. 0 = the same words, 1 = nothing in common."""
    assigned = Assignment.objects.filter(example_id=OuterRef("example_id"), user_id=OuterRef("author_id"))
    edited = (Revision.objects.filter(example__project=project, number__gt=1, author__isnull=False).filter(Exists(assigned))
              .values("example_id").annotate(n=Count("author_id", distinct=True), last=Max("created_at")).filter(n__gte=2))
    ids = list(edited.order_by("-last", "-example_id").values_list("example_id", flat=True)[:limit])
    versions = _annotator_revisions(ids)
    prompts = dict(Example.objects.filter(id__in=ids).values_list("id", "prompt"))
    budget = EDITS_PAGE_WORK_BUDGET
    rows, per_pair = [], defaultdict(lambda: {"between": [], "a_from_original": [], "b_from_original": []})
    sentence_level = 0

    def distance(x, y):
        nonlocal budget, sentence_level
        d = agreement.edit_distance(trace_text(x), trace_text(y), word_budget=max(budget, 0))
        budget -= d.work
        sentence_level += d.unit != "word"
        return d

    for ex_id in ids:
        original, by = versions[ex_id]["original"], versions[ex_id]["by"]
        if original is None or len(by) < 2:
            continue
        from_original = {u: distance(original, rev) for u, rev in sorted(by.items())}
        pairs = []
        for a, b in combinations(sorted(by), 2):
            d = distance(by[a], by[b])
            pairs.append({"a": a, "b": b, "distance": d})
            agg = per_pair[(a, b)]
            agg["between"].append(d.value)
            agg["a_from_original"].append(from_original[a].value)
            agg["b_from_original"].append(from_original[b].value)
        rows.append({"example_id": ex_id, "prompt": prompts.get(ex_id, ""), "pairs": pairs, "from_original": from_original,
                     "widest": max(p["distance"].value for p in pairs)})
    rows.sort(key=lambda r: (-r["widest"], r["example_id"]))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        "examples": edited.count(), "shown": len(rows), "limit": limit, "sentence_level": sentence_level,
        "pairs": [{"a": a, "b": b, "n": len(v["between"]), "between": mean(v["between"]),
                   "a_from_original": mean(v["a_from_original"]), "b_from_original": mean(v["b_from_original"])}
                  for (a, b), v in sorted(per_pair.items())],
        "rows": rows,
    }


def example_edit_versions(*, example: Example) -> dict:
    """One example's original and each of its annotators' last versions, with the distances between
    them (the side-by-side page; the same page budget as the agreement page's edits)."""
    versions = _annotator_revisions([example.pk])[example.pk]
    original, by = versions["original"], dict(sorted(versions["by"].items()))
    budget = EDITS_PAGE_WORK_BUDGET

    def distance(x, y):
        nonlocal budget
        d = agreement.edit_distance(trace_text(x), trace_text(y), word_budget=max(budget, 0))
        budget -= d.work
        return d

    from_original = {u: distance(original, rev) for u, rev in by.items()} if original else {}
    pairs = [{"a": a, "b": b, "distance": distance(by[a], by[b])} for a, b in combinations(by, 2)]
    return {"original": original, "by": by, "from_original": from_original, "pairs": pairs}
