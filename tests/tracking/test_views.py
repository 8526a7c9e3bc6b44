"""Run pages, data, CSV, comments and notes, compare, heartbeats, samples selectors, live socket."""
import datetime as dt

import orjson
import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from r1lab.tracking import selectors, store
from r1lab.tracking.ingest import parse_log_body
from r1lab.tracking.models import Comment
from r1lab.tracking.services import tracked_run_create, tracked_run_log, tracked_run_set_status

pytestmark = pytest.mark.django_db


def log(run, body):
    return tracked_run_log(run_id=run.pk, parsed=parse_log_body(orjson.dumps(body)))


@pytest.fixture
def run():
    r, _ = tracked_run_create(name="<i>r</i>", config={"lr": 1e-6, "opt": {"beta": 0.9}})
    log(r, {"metrics": [{"step": s, "key": k, "value": s * 0.1} for s in range(30) for k in ("reward", "kl")]})
    return r


def test_run_page_renders_panels_for_every_role(client_as, run):
    client = client_as("viewer")
    r = client.get(f"/metrics/runs/{run.pk}/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "&lt;i&gt;r&lt;/i&gt;" in html and "<i>r</i>" not in html.split("</title>")[1].split("json")[0]
    assert "live_chart.js" in html and "plotly.min.js" in html
    assert client.get("/metrics/runs/999999/").status_code == 404
    assert b"&lt;i&gt;r&lt;/i&gt;" in client.get("/metrics/").content


def test_page_data_has_panels_series_and_alarms(run):
    data = selectors.run_page_data(run=run)
    assert [p["id"] for p in data["panels"]][:3] == ["reward", "accuracy", "format"]
    assert data["series"]["kl"]["x"] == list(range(30))
    assert data["run"]["status"] == "running"


# A wide RL run: the GRPO keys the first screen draws, and 2,982 others (per-layer, per-GPU, per-task…).
GRPO_KEYS = ["reward", "reward_std", "rewards/accuracy/mean", "rewards/format/mean", "completions/mean_length",
             "completions/min_length", "completions/max_length", "completions/clipped_ratio",
             "reflection/rate_per_1k_tokens", "reflection/frac_responses", "kl", "entropy", "clip_ratio/region_mean",
             "frac_reward_zero_std", "learning_rate", "throughput/tokens_per_s", "eval/pass@1", "eval/cons@k"]
WIDE_KEYS = (GRPO_KEYS + [f"train/layer_{i:04d}/grad_norm" for i in range(2400)] + [f"system/gpu_{i}/util" for i in range(400)]
             + [f"rewards/fn_{i:02d}/mean" for i in range(40)] + [f"eval/task_{i:03d}" for i in range(100)]
             + [f"loss_{i}" for i in range(42)])


def wide_run(steps=2):
    """A run with 3,000 keys, written through the store (as a trainer's batches are)."""
    r, _ = tracked_run_create(name="wide")
    with transaction.atomic():
        sids = store.series_ids(run_id=r.pk, keys=WIDE_KEYS)
        rows = [(sids[k], s, float(s + i)) for s in range(steps) for i, k in enumerate(WIDE_KEYS)]
        store.insert_points(sids=[x[0] for x in rows], steps=[x[1] for x in rows], values=[x[2] for x in rows],
                            tss=[1.7e9 + x[1] for x in rows])
    return r


def test_page_of_a_run_with_3000_keys_ships_the_first_screen_and_lists_the_other_keys(client_as, django_assert_max_num_queries):
    # Issue 15, finding 9: the page shipped every series of the run (and drew a panel per key).
    # Now: data for the first screen's panels, the other keys by name in groups; no query per key.
    assert len(set(WIDE_KEYS)) == 3000
    r = wide_run()
    data = selectors.run_page_data(run=r)
    shipped = set(data["series"])
    # the 18 GRPO keys, 11 rewards/fn_*/mean and 12 eval/task_* (a prefix rule draws MAX_PREFIX_TRACES = 12
    # keys; the reward rule's first one is rewards/accuracy/mean)
    assert set(GRPO_KEYS) <= shipped and len(shipped) == 18 + 11 + 12
    assert all(w["x"] == [0, 1] for w in data["series"].values())
    assert [g["name"] for g in data["groups"]] == ["eval/", "rewards/", "system/", "train/", "other"]
    listed = [k for g in data["groups"] for k in g["keys"]]
    assert len(listed) == 3000 - len(shipped) and not set(listed) & shipped
    assert data["groups"][-1]["keys"][:2] == ["loss_0", "loss_1"]
    client = client_as("viewer")
    with django_assert_max_num_queries(12):
        page = client.get(f"/metrics/runs/{r.pk}/")
    html = page.content.decode()
    chart = orjson.loads(html.split('-data" type="application/json">')[1].split("</script>")[0])
    assert set(chart["series"]) == shipped and sum(len(g["keys"]) for g in chart["groups"]) == len(listed)
    assert len(page.content) < 200_000  # ~110 kB of key names; every series' points were ~2 MB here
    # a group's panel fetches its series when it scrolls into view, several keys per request
    keys = ["train/layer_0007/grad_norm", "system/gpu_3/util"]
    d = client.get(f"/metrics/runs/{r.pk}/data.json?keys={','.join(keys)}&max_points=1000").json()
    assert sorted(d["series"]) == sorted(keys) and d["series"]["system/gpu_3/util"]["y"] == [2418.0 + 3, 2419.0 + 3]
    # a page that lost its socket lists the keys logged meanwhile
    assert client.get(f"/metrics/runs/{r.pk}/keys.json").json() == {"run": r.pk, "keys": sorted(WIDE_KEYS)}
    assert client.get("/metrics/runs/999999/keys.json").status_code == 404


def test_data_json_and_csv(client_as, run):
    client = client_as("viewer")
    d = client.get(f"/metrics/runs/{run.pk}/data.json?keys=kl&min_step=5&max_step=7").json()
    assert d["series"]["kl"]["x"] == [5, 6, 7]
    assert client.get(f"/metrics/runs/{run.pk}/data.json?min_step=x").status_code == 400
    csv = b"".join(client.get(f"/metrics/runs/{run.pk}/points.csv?keys=kl&max_step=1").streaming_content).decode()
    assert csv.splitlines() == ["run,key,step,value,wall_time", *[f"{run.pk},kl,{s},{s * 0.1!r},{l.split(',')[-1]}" for s, l in zip((0, 1), csv.splitlines()[1:])]]


def test_signals_json_finds_the_aha_moment_as_the_run_reports(client_as, run):
    from django.core.cache import cache

    cache.clear()
    client = client_as("viewer")
    url = f"/metrics/runs/{run.pk}/signals.json"
    assert client.get(url).json() == {"aha": None, "alarms": []}
    log(run, {"metrics": [{"step": s, "key": "reflection/rate_per_1k_tokens", "value": 0.5 if s < 20 else 3.0}
                          for s in range(40)]})
    assert client.get(url).json()["aha"] is None  # cached for SIGNALS_CACHE_S: one computation per run
    cache.clear()
    aha = client.get(url).json()["aha"]
    assert aha["step"] == 20 and aha["before"] == pytest.approx(0.5) and aha["after"] == pytest.approx(3.0)
    assert client.get("/metrics/runs/999999/signals.json").status_code == 404
    client.logout()
    assert client.get(url).status_code in (302, 403)


def test_comment_needs_the_comment_action_and_valid_input(client_as, run):
    viewer = client_as("viewer")
    assert viewer.post(f"/metrics/runs/{run.pk}/comments/", {"step": 3, "body": "x"}).status_code == 403
    reviewer = client_as("reviewer")
    r = reviewer.post(f"/metrics/runs/{run.pk}/comments/", {"step": -1, "body": "x"}, follow=True)
    assert b"Comment not saved" in r.content and not Comment.objects.exists()
    reviewer.post(f"/metrics/runs/{run.pk}/comments/", {"step": 3, "body": "spike <here>"})
    c = Comment.objects.get()
    assert (c.step, c.body, c.author) == (3, "spike <here>", reviewer.user)
    assert b"spike &lt;here&gt;" in reviewer.get(f"/metrics/runs/{run.pk}/").content
    reviewer.post(f"/metrics/runs/{run.pk}/notes/", {"notes": "lr too high?"})
    run.refresh_from_db()
    assert run.notes == "lr too high?"


def test_compare_overlays_runs_and_highlights_config_differences(client_as, run):
    other, _ = tracked_run_create(name="b", config={"lr": 3e-6, "opt": {"beta": 0.9}})
    log(other, {"metrics": [{"step": 0, "key": "reward", "value": 1.0}]})
    r = client_as("viewer").get(f"/metrics/compare/?runs={run.pk},{other.pk}&metrics=reward")
    assert r.status_code == 200
    chart = r.context["chart"]
    assert [x["id"] for x in chart["runs"]] == [run.pk, other.pk]
    assert chart["runs"][0]["color"] != chart["runs"][1]["color"]
    rows = {row["key"]: row for row in r.context["config_rows"]}
    assert rows["lr"]["differs"] and not rows["opt.beta"]["differs"]


def test_stale_then_crashed(run):
    run.last_seen_at = timezone.now() - dt.timedelta(hours=1)
    run.save()
    assert run.display_status == "stale"
    run.last_seen_at = timezone.now()
    assert run.display_status == "running"
    tracked_run_set_status(run=run, status="crashed")
    run.refresh_from_db()
    assert run.display_status == "crashed" and run.finished_at is not None


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_memory_channel_layer")
async def test_socket_gets_points_after_commit_and_refuses_anonymous():
    from tests.factories import UserFactory
    from tests.pipelines.test_consumers import _communicator

    user = await database_sync_to_async(UserFactory)(role="viewer")
    run, _ = await database_sync_to_async(tracked_run_create)(name="ws")

    def comm_for(u):
        return _communicator(u, run.pk)

    comm = await comm_for(user)
    comm.path = f"/ws/metrics/runs/{run.pk}/"
    comm.scope["path"] = comm.path
    connected, _ = await comm.connect()
    assert connected
    hello = await comm.receive_json_from(timeout=5)
    assert hello["type"] == "run.status" and hello["run"]["status"] == "running"
    await database_sync_to_async(log)(run, {"metrics": [{"step": 1, "key": "reward", "value": 0.5, "ts": 10.0}]})
    msg = await comm.receive_json_from(timeout=5)
    assert msg["type"] == "metrics.points" and msg["points"] == {"reward": [[1, 0.5, 10.0]]}
    await comm.disconnect()
    anon = await comm_for(None)
    anon.scope["path"] = f"/ws/metrics/runs/{run.pk}/"
    connected, _ = await anon.connect()  # accepted, then closed with the code the browser sees
    assert connected and await anon.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await anon.disconnect()  # the consumer ends its own way, not cancelled at the loop's close
