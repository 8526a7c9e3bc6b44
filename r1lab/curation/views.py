from django.shortcuts import render

from r1lab.accounts.permissions import require_action


@require_action("curation.view")
def index(request):
    return render(request, "curation/index.html", {})


@require_action("curation.annotate")
def queue(request):
    return render(request, "curation/queue.html", {})


@require_action("curation.review")
def review_queue(request):
    return render(request, "curation/review.html", {})
