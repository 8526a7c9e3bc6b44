from django.shortcuts import get_object_or_404, render

from r1lab.accounts.permissions import require_action
from r1lab.pipelines.models import PipelineRun


@require_action("runs.view")
def run_list(request):
    runs = PipelineRun.objects.select_related("created_by")[:200]
    return render(request, "pipelines/run_list.html", {"runs": runs})


@require_action("runs.view")
def run_detail(request, run_id: int):
    run = get_object_or_404(PipelineRun, pk=run_id)
    return render(request, "pipelines/run_detail.html", {"run": run})


@require_action("runs.launch")
def run_new(request):
    return render(request, "pipelines/run_new.html", {})
