"""GET /models: what the render workers announced (service/jobs/models.py)."""
from service.jobs.models import ModelsSeen


def test_announced_models_are_listed_without_a_key_and_forgotten_after_the_ttl(make_client, state):
    client = make_client(api_keys="sk-only-key")
    seen = ModelsSeen(state.jobs.redis, state.jobs.prefix, ttl_s=180)
    assert client.get("/models").json() == {"models": []}

    seen.announce("tiny-untrained", untrained=True)
    seen.announce("unianimate-16f-32f", untrained=False)
    seen.announce("tiny-untrained", untrained=True)  # a repeat refreshes, never duplicates
    listed = client.get("/models").json()["models"]  # no Authorization header
    assert [(m["name"], m["untrained"]) for m in listed] == [("tiny-untrained", True), ("unianimate-16f-32f", False)]
    assert 0 < state.jobs.redis.ttl(seen.key) <= 180  # the key expires when no worker repeats it


def test_a_model_not_announced_within_the_ttl_is_dropped(state):
    seen = ModelsSeen(state.jobs.redis, state.jobs.prefix, ttl_s=60)
    seen.announce("old", untrained=False, now=1000.0)
    seen.announce("new", untrained=True, now=1050.0)
    assert [m["name"] for m in seen.current(now=1059.0)] == ["new", "old"]
    assert [m["name"] for m in seen.current(now=1061.0)] == ["new"]
    seen.announce("new", untrained=True, now=1200.0)  # the next announcement also deletes the stale member
    assert state.jobs.redis.zcard(seen.key) == 1
