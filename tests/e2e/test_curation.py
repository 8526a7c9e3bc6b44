"""The curation studio in a real browser: the annotator's keyboard day, the reviewer's decisions,
two people saving the same example, and untrusted text that must never run."""
import base64
import re

import pytest
from playwright.sync_api import expect

from r1lab.curation.services.examples import editor_save, example_create
from r1lab.curation.services.projects import project_create, project_set_annotators
from r1lab.curation.models import Example, Label, StepLabel
from tests.e2e.conftest import login
from tests.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _project(lead, *annotators, n=2, overlap=1):
    project = project_create(name=f"E2E {lead.username}", user=lead, overlap=overlap)
    project_set_annotators(project=project, users=list(annotators))
    examples = [
        example_create(
            project=project, user=lead, source="manual", prompt=f"What is ${i} + {i}$?",
            reasoning=f"We add {i} and {i}. 所以 the sum is {2 * i}.", summary=str(2 * i), gold_answer=str(2 * i),
        )
        for i in range(1, n + 1)
    ]
    return project, examples


def test_annotator_labels_with_keyboard_edits_saves_and_submits(page, live_asgi, login_as):
    annotator = login_as("annotator")
    lead = UserFactory(role="reviewer")
    project, (first, second) = _project(lead, annotator)

    page.goto(live_asgi + "/curation/queue/")
    row = page.locator("table.queue tr", has_text=project.name)
    expect(row.locator(".remaining")).to_have_text("2")
    row.get_by_role("link", name="Start →").click()
    expect(page).to_have_url(re.compile(rf"/curation/e/{first.pk}/$"))

    # Live checks ran: the Chinese words of the reasoning are counted and highlighted.
    expect(page.locator("#check-offlang")).to_have_text("2")
    expect(page.locator("#reasoning-highlight mark.offlang").first).to_have_text("所")

    # `?` shows the shortcuts, Escape hides them; 4 sets quality to 4.
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcuts")).to_contain_text("Ctrl")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()
    page.keyboard.press("4")
    expect(page.locator('input[name=label_quality][value="4"]')).to_be_checked()

    # Fix the language mixing by hand: the checks follow the text.
    page.fill("#id_reasoning", "We add 1 and 1, so the sum is 2. Wait, let me check: 1 + 1 = 2.")
    expect(page.locator("#check-offlang")).to_have_text("0")
    expect(page.locator("#check-reflections")).to_have_text("1")
    expect(page.locator("#check-language")).to_have_text("1.00")

    page.keyboard.press("Control+s")
    expect(page.locator(".msg.success")).to_contain_text("Saved: version 2")
    first.refresh_from_db()
    assert first.version == 2 and first.reasoning.startswith("We add 1 and 1, so")
    assert Label.objects.get(example=first, annotator=annotator).values == {"quality": 4}

    # Ctrl+Enter submits from inside the text box, and the queue moves on.
    page.locator("#id_summary").click()
    page.keyboard.press("Control+Enter")
    expect(page).to_have_url(re.compile(rf"/curation/e/{second.pk}/$"))
    expect(page.locator("#queue-counts .done")).to_have_text("1")
    first.refresh_from_db()
    assert first.status == "submitted"

    # K goes back to the previous example (read only now: it waits for review).
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("k")
    expect(page).to_have_url(re.compile(rf"/curation/e/{first.pk}/$"))
    expect(page.locator("#status")).to_have_text("submitted")


def test_reviewer_rejects_with_comment_then_approves(page, live_asgi, login_as, new_page, password):
    reviewer = login_as("reviewer")
    annotator = UserFactory(role="annotator")
    lead = UserFactory(role="reviewer")  # four eyes: the example's author is not the reviewer who approves it
    project, (ex,) = _project(lead, annotator, n=1)
    editor_save(example=ex, user=annotator, based_on=1, changes={}, label_values={"quality": "3"}, submit=True)

    page.goto(live_asgi + "/curation/review/")
    page.get_by_role("link", name=str(ex.pk), exact=True).click()
    page.click("#reject-button")  # no comment: refused, nothing changes
    expect(page.locator(".msg.error")).to_contain_text("Say why")
    page.fill("#review-comment-input", "The answer must be boxed.")
    page.click("#reject-button")
    expect(page.locator(".msg.success")).to_contain_text("rejected")
    ex.refresh_from_db()
    assert ex.status == "rejected"

    # The annotator sees the comment in the editor, fixes the summary and resubmits.
    other = new_page()
    login(other, live_asgi, annotator.username, password)
    other.goto(live_asgi + f"/curation/queue/{project.slug}/next/")
    expect(other.locator("#review-comment")).to_have_text("The answer must be boxed.")
    other.fill("#id_summary", "$\\boxed{2}$")
    other.click("#submit-button")
    expect(other.locator(".msg.success").first).to_contain_text("submitted")

    page.goto(live_asgi + f"/curation/e/{ex.pk}/")
    page.click("#approve-button")
    expect(page.locator(".msg.success")).to_contain_text("approved")
    ex.refresh_from_db()
    assert ex.status == "approved" and ex.summary == "$\\boxed{2}$" and ex.reviewed_by == reviewer
    assert list(ex.status_events.values_list("to_status", flat=True)) == ["submitted", "rejected", "submitted", "approved"]


def test_second_save_of_the_same_example_gets_the_conflict_page(page, live_asgi, login_as, new_page, password):
    alice = login_as("annotator")
    bob = UserFactory(role="annotator")
    lead = UserFactory(role="reviewer")
    project, (ex,) = _project(lead, alice, bob, n=1, overlap=2)
    other = new_page()
    login(other, live_asgi, bob.username, password)

    page.goto(live_asgi + f"/curation/e/{ex.pk}/")
    other.goto(live_asgi + f"/curation/e/{ex.pk}/")
    page.fill("#id_reasoning", "Alice's careful rewrite: one plus one is two.")
    other.fill("#id_reasoning", "Bob's rewrite: 1 + 1 = 2.")
    page.click("#save-button")
    expect(page.locator(".msg.success")).to_contain_text("Saved: version 2")

    other.click("#save-button")
    expect(other.locator("#conflict-title")).to_contain_text("Edit conflict")
    reasoning = other.locator(".conflict-field[data-field=reasoning]")
    expect(reasoning.locator("pre.theirs")).to_have_text("Alice's careful rewrite: one plus one is two.")
    expect(reasoning.locator("textarea.mine")).to_have_value("Bob's rewrite: 1 + 1 = 2.")
    expect(reasoning.locator(".diff del").first).to_be_visible()
    expect(reasoning.locator(".diff ins").first).to_be_visible()
    ex.refresh_from_db()
    assert ex.reasoning == "Alice's careful rewrite: one plus one is two." and ex.version == 2

    # Bob decides to keep his: an explicit save on top of version 2, never a silent one.
    other.click("#save-mine")
    expect(other.locator(".msg.success")).to_contain_text("Saved: version 3")
    ex.refresh_from_db()
    assert ex.reasoning == "Bob's rewrite: 1 + 1 = 2." and ex.revisions.count() == 3


def test_script_and_img_onerror_are_shown_as_text_never_run(page, live_asgi, login_as):
    annotator = login_as("annotator")
    lead = UserFactory(role="reviewer")
    project = project_create(name="XSS", user=lead)
    project_set_annotators(project=project, users=[annotator])
    ex = example_create(
        project=project, user=lead, source="rollout",
        prompt='Compute $x^2$ for <script>window.__pwned = "prompt"</script> x = 3.',
        reasoning='Try <img src="x" onerror="window.__pwned = \'img\'"> then **bold** and $$\\frac{1}{2}$$ '
                  '[link](javascript:window.__pwned=1) <svg onload="window.__pwned=\'svg\'"></svg>',
        summary="<script>window.__pwned = 'summary'</script>9",
    )
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(live_asgi + f"/curation/e/{ex.pk}/")
    expect(page.locator("#checks[data-checked]")).to_be_attached()  # the live checks have run
    expect(page.locator("#check-format")).to_have_text("1.0")
    prompt = page.locator("#prompt-rendered")
    expect(prompt).to_contain_text('<script>window.__pwned = "prompt"</script>')
    expect(prompt.locator(".katex")).to_have_count(1)  # LaTeX rendered
    preview = page.locator("#reasoning-preview")
    expect(preview).to_contain_text('<img src="x" onerror=')
    expect(preview.locator("strong")).to_have_text("bold")
    expect(preview.locator(".katex-display")).to_have_count(1)
    assert preview.locator("img, svg[onload], script").count() == 0
    expect(page.locator("#summary-preview")).to_contain_text("<script>")
    expect(page.locator("#reasoning-highlight")).to_contain_text("<img")
    # Editing re-renders; still text.
    page.fill("#id_reasoning", "<img src=y onerror=\"window.__pwned='edit'\"> <b>not bold</b>")
    expect(preview).to_contain_text("<b>not bold</b>")
    page.wait_for_timeout(300)  # let the debounced re-render and checks land before asserting nothing ran
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script:not([src])").evaluate_all("els => els.filter(e => e.textContent.includes('__pwned')).length") == 0
    assert dialogs == []
    assert Example.objects.get(pk=ex.pk).version == 1


PIXEL = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")  # 1x1 PNG


def test_remote_images_in_the_preview_are_not_fetched_until_clicked(page, live_asgi, login_as):
    """Issue 15: an image in untrusted text would tell its host who opened the example; it is a
    placeholder (its address shown as text) until the user clicks "load image"."""
    annotator = login_as("annotator")
    lead = UserFactory(role="reviewer")
    project = project_create(name="Remote images", user=lead)
    project_set_annotators(project=project, users=[annotator])
    ex = example_create(
        project=project, user=lead, source="rollout", prompt="Look: ![p](//cdn.evil.test/prompt.png)",
        reasoning="Chart ![the chart](https://images.evil.test/track.png?ex=1) and ![dot](http://other.evil.test/dot.png) "
                  "and an inline one ![ok](data:image/png;base64,iVBORw0KGgo=).",
        summary="4",
    )
    remote = []
    page.on("request", lambda r: remote.append(r.url) if ".evil.test" in r.url else None)
    page.route(lambda url: ".evil.test" in url, lambda route: route.fulfill(status=200, content_type="image/png", body=PIXEL))
    page.goto(live_asgi + f"/curation/e/{ex.pk}/")
    preview = page.locator("#reasoning-preview")
    expect(preview).to_contain_text("Chart")  # rendered
    page.wait_for_load_state("networkidle")
    assert remote == [] and preview.locator("img[src*='evil.test']").count() == 0
    expect(preview.locator("[data-remote-image]")).to_have_count(2)
    expect(page.locator("#prompt-rendered [data-remote-image] code")).to_have_text("//cdn.evil.test/prompt.png")
    expect(preview.locator("[data-remote-image] code").first).to_have_text("https://images.evil.test/track.png?ex=1")
    expect(preview.locator("[data-remote-image]").first).to_contain_text("“the chart”")
    expect(preview.locator("img[src^='data:image/png']")).to_have_count(1)  # data: images make no request: shown

    with page.expect_request(lambda r: r.url == "https://images.evil.test/track.png?ex=1"):
        preview.locator("[data-remote-image]").first.get_by_role("button", name="load image").click()
    expect(preview.locator("img[src='https://images.evil.test/track.png?ex=1']")).to_have_count(1)
    # Typing re-renders the preview: the image asked for stays loaded, the others stay held.
    page.fill("#id_reasoning", page.input_value("#id_reasoning") + " More.")
    expect(preview).to_contain_text("More.")
    expect(preview.locator("img[src='https://images.evil.test/track.png?ex=1']")).to_have_count(1)
    expect(preview.locator("[data-remote-image]")).to_have_count(1)
    page.wait_for_load_state("networkidle")
    assert [u for u in remote if "images.evil.test" not in u] == []


def test_first_wrong_step_from_the_keyboard(page, live_asgi, login_as):
    """Issue 18: the reasoning as steps; arrows move, C labels, F marks the first wrong step (the
    unlabelled steps before it become correct), M writes a note; Ctrl+S saves them with the rest."""
    annotator = login_as("annotator")
    lead = UserFactory(role="reviewer")
    project = project_create(name="Steps E2E", user=lead)
    project_set_annotators(project=project, users=[annotator])
    ex = example_create(
        project=project, user=lead, source="manual", prompt="What is 6 × 7 − 2?", summary="40", gold_answer="40",
        reasoning="First, $6 \\times 7 = 42$.\n\nThen subtract: 42 − 2 = 41.\n\nSo the answer is 41.\n\nDone.",
    )
    page.goto(live_asgi + f"/curation/e/{ex.pk}/")
    expect(page.locator("#steps li.step")).to_have_count(4)
    expect(page.locator("#step-rule")).to_contain_text("split by paragraphs")
    expect(page.locator("#step-0 .katex")).to_have_count(1)  # each step rendered like the previews
    expect(page.locator("#first-wrong")).to_have_text("–")

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_contain_text("first wrong step")
    page.keyboard.press("Escape")

    page.keyboard.press("ArrowDown")  # step 1
    page.keyboard.press("c")  # correct, on to step 2
    expect(page.locator("#step-1")).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("ArrowDown")  # step 3
    page.keyboard.press("f")  # the first wrong step: step 2 (unlabelled) becomes correct
    expect(page.locator("#first-wrong")).to_have_text("3")
    expect(page.locator('input[name=step_1][value="correct"]')).to_be_checked()
    expect(page.locator('input[name=step_2][value="incorrect"]')).to_be_checked()
    expect(page.locator("#step-2")).to_have_class(re.compile(r"\bfirst-wrong\b"))
    page.keyboard.press("m")
    expect(page.locator("input[name=step_note_2]")).to_be_focused()
    page.keyboard.type("42 − 2 is 40")
    page.keyboard.press("Escape")
    page.keyboard.press("ArrowDown")  # step 4: F here is refused, step 3 is already wrong
    page.keyboard.press("f")
    expect(page.locator("#first-wrong")).to_contain_text("already incorrect")
    expect(page.locator('input[name=step_3][value=""]')).to_be_checked()

    page.keyboard.press("Control+s")
    expect(page.locator(".msg.success")).to_contain_text("Saved")
    expect(page.locator("#first-wrong")).to_have_text("3")
    saved = StepLabel.objects.get(example=ex, annotator=annotator)
    assert [(e["label"], e["note"]) for e in saved.entries] == [
        ("correct", ""), ("correct", ""), ("incorrect", "42 − 2 is 40"), ("", "")]
