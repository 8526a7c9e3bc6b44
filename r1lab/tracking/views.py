from django.shortcuts import render

from r1lab.accounts.permissions import require_action


@require_action("runs.view")
def run_list(request):
    return render(request, "tracking/run_list.html", {})
